"""Caffe layers as PyTorch modules, with Caffe's (not PyTorch's) semantics.

Every layer is built from its LayerParameter and the shapes of its bottoms (`setup`), holds its
weight blobs in `self.blobs` in Caffe's order and shapes, and maps bottoms to tops in `forward`
without modifying its inputs (in-place layers in a prototxt just rebind the blob name, which is
what Caffe's in-place computation amounts to). Problems are raised as `LayerError(message)`;
facs.caffe.net adds the layer name and prototxt line.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facs.caffe import caffe_pb2
from facs.caffe.lrn import cross_channel_lrn

FLT_MIN = 1.17549435e-38
Shape = tuple[int, ...]


class LayerError(Exception):
    """A wrong parameter or shape in one layer (the net adds where it is)."""


# ---------------------------------------------------------------------------------------------
# Fillers


def fill(shape: Shape, filler: caffe_pb2.FillerParameter) -> Tensor:
    """A tensor drawn as Caffe's filler would (fan rules of Caffe's xavier/msra)."""
    t = torch.empty(shape, dtype=torch.float32)
    kind = filler.type
    count = t.numel()
    fan_in = count // shape[0] if shape and shape[0] else count
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else count
    norm = filler.variance_norm
    if norm == caffe_pb2.FillerParameter.AVERAGE:
        n = (fan_in + fan_out) / 2.0
    elif norm == caffe_pb2.FillerParameter.FAN_OUT:
        n = float(fan_out)
    else:
        n = float(fan_in)
    if kind == "constant":
        t.fill_(filler.value)
    elif kind == "uniform":
        t.uniform_(filler.min, filler.max)
    elif kind == "gaussian":
        t.normal_(filler.mean, filler.std)
        if filler.sparse >= 0:
            # Caffe keeps each weight with probability sparse / num_outputs.
            keep = min(1.0, filler.sparse / max(1, shape[0]))
            t.mul_(torch.bernoulli(torch.full(shape, keep)))
    elif kind == "xavier":
        scale = math.sqrt(3.0 / n)
        t.uniform_(-scale, scale)
    elif kind == "msra":
        t.normal_(0.0, math.sqrt(2.0 / n))
    elif kind == "positive_unitball":
        t.uniform_(0.0, 1.0)
        t /= t.reshape(shape[0], -1).sum(1).reshape((shape[0],) + (1,) * (len(shape) - 1))
    else:
        raise LayerError(f"unsupported filler type '{kind}'")
    return t


def _param(shape: Shape, filler: caffe_pb2.FillerParameter) -> nn.Parameter:
    return nn.Parameter(fill(shape, filler))


# ---------------------------------------------------------------------------------------------
# Base


class Layer(nn.Module):
    """One Caffe layer: `setup(bottom_shapes)` then `forward(*bottoms) -> list[Tensor]`."""

    n_bottoms: tuple[int, int] = (1, 1)  # allowed (min, max) number of bottoms
    n_tops: tuple[int, int] = (1, 1)

    def __init__(self, lp: caffe_pb2.LayerParameter, phase: str):
        super().__init__()
        self.lp = lp
        self.phase = phase
        self.blobs = nn.ParameterList()
        lo, hi = self.n_bottoms
        if not lo <= len(lp.bottom) <= hi:
            raise LayerError(f"needs {_count(lo, hi)} bottom blob(s), has {len(lp.bottom)}")
        lo, hi = self.n_tops
        if not lo <= len(lp.top) <= hi:
            raise LayerError(f"needs {_count(lo, hi)} top blob(s), has {len(lp.top)}")

    def setup(self, bottom_shapes: list[Shape]) -> None:
        """Check parameters against the bottom shapes and create the weight blobs."""

    def forward(self, *bottoms: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def _count(lo: int, hi: int) -> str:
    if lo == hi:
        return str(lo)
    return f"at least {lo}" if hi >= 99 else f"{lo} to {hi}"


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise LayerError(f"axis {axis} out of range for a {ndim}-axis blob")
    return axis % ndim


def _pair(values, h_set: bool, h: int, w_set: bool, w: int, default: int | None, what: str):
    """Caffe's (repeated value | value_h/value_w) geometry fields -> (h, w)."""
    if h_set or w_set:
        if len(values):
            raise LayerError(f"give either {what} or {what}_h/{what}_w, not both")
        return int(h), int(w)
    if len(values) == 0:
        if default is None:
            raise LayerError(f"{what} is required")
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise LayerError(f"{what} needs 1 or 2 values for 2-D blobs, has {len(values)}")


# ---------------------------------------------------------------------------------------------
# Vision layers


class Convolution(Layer):
    def setup(self, bottom_shapes):
        p = self.lp.convolution_param
        shape = bottom_shapes[0]
        if len(shape) != 4:
            raise LayerError(f"needs a 4-D bottom (N, C, H, W), got shape {shape}")
        if p.axis != 1:
            raise LayerError("only axis: 1 is supported")
        if not p.num_output:
            raise LayerError("convolution_param.num_output is required")
        self.kernel = _pair(
            p.kernel_size, p.HasField("kernel_h"), p.kernel_h, p.HasField("kernel_w"),
            p.kernel_w, None, "kernel_size",
        )  # fmt: skip
        self.pad = _pair(
            p.pad, p.HasField("pad_h"), p.pad_h, p.HasField("pad_w"), p.pad_w, 0, "pad"
        )
        self.stride = _pair(
            p.stride, p.HasField("stride_h"), p.stride_h, p.HasField("stride_w"), p.stride_w,
            1, "stride",
        )  # fmt: skip
        self.dilation = _pair(p.dilation, False, 0, False, 0, 1, "dilation")
        if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.dilation) < 1:
            raise LayerError("kernel, stride and dilation must be positive")
        self.group = int(p.group)
        channels = shape[1]
        if self.group < 1 or channels % self.group or p.num_output % self.group:
            raise LayerError(
                f"group {self.group} must divide the input channels ({channels}) "
                f"and num_output ({p.num_output})"
            )
        for i in (0, 1):
            ext = self.dilation[i] * (self.kernel[i] - 1) + 1
            if shape[2 + i] + 2 * self.pad[i] < ext:
                raise LayerError(
                    f"kernel {self.kernel} larger than the padded input {tuple(shape[2:])}"
                )
        wshape = (int(p.num_output), channels // self.group, *self.kernel)
        self.blobs.append(_param(wshape, p.weight_filler))
        if p.bias_term:
            self.blobs.append(_param((int(p.num_output),), p.bias_filler))

    def forward(self, x):
        bias = self.blobs[1] if len(self.blobs) > 1 else None
        w = self.blobs[0]
        if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1:
            # Weights in the input's layout too: oneDNN then skips a reorder (conv1 -20 %).
            w = w.contiguous(memory_format=torch.channels_last)
        return [F.conv2d(x, w, bias, self.stride, self.pad, self.dilation, self.group)]


def pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """Caffe's pooled size: rounded up (or down), minus one if the last window starts in the pad."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _torch_pooled_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """PyTorch's ceil-mode output size (aten pooling_output_shape)."""
    out = (size + 2 * pad - kernel + stride - 1) // stride + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


class Pooling(Layer):
    n_tops = (1, 1)

    def setup(self, bottom_shapes):
        p = self.lp.pooling_param
        shape = bottom_shapes[0]
        if len(shape) != 4:
            raise LayerError(f"needs a 4-D bottom (N, C, H, W), got shape {shape}")
        if p.pool == caffe_pb2.PoolingParameter.STOCHASTIC:
            raise LayerError("STOCHASTIC pooling is not supported")
        self.method = p.pool
        if p.global_pooling:
            if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
                raise LayerError("global_pooling takes no kernel size")
            self.kernel = (shape[2], shape[3])
            self.pad, self.stride = (0, 0), (1, 1)
        else:
            if p.HasField("kernel_size"):
                self.kernel = (p.kernel_size, p.kernel_size)
            elif p.HasField("kernel_h") and p.HasField("kernel_w"):
                self.kernel = (p.kernel_h, p.kernel_w)
            else:
                raise LayerError("pooling_param.kernel_size (or kernel_h and kernel_w) is required")
            self.pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
            if p.HasField("stride_h"):
                self.stride = (p.stride_h, p.stride_w)
            else:
                self.stride = (p.stride, p.stride)
        self.kernel = tuple(int(k) for k in self.kernel)
        self.pad = tuple(int(v) for v in self.pad)
        self.stride = tuple(int(v) for v in self.stride)
        if min(self.kernel) < 1 or min(self.stride) < 1:
            raise LayerError("kernel and stride must be positive")
        if self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]:
            raise LayerError("pad must be smaller than the kernel")
        self.ceil = p.round_mode == caffe_pb2.PoolingParameter.CEIL
        self.global_pooling = p.global_pooling
        self._geoms: dict[tuple[int, int], tuple] = {}
        self.geometry(shape[2], shape[3])

    def geometry(self, h: int, w: int):
        """(out size, extra bottom/right padding, AVE divisors) for an h x w input."""
        if (h, w) not in self._geoms:
            if self.global_pooling:
                self.kernel = (h, w)
            size = (h, w)
            out = tuple(
                pooled_size(size[i], self.kernel[i], self.stride[i], self.pad[i], self.ceil)
                for i in (0, 1)
            )
            if min(out) < 1:
                raise LayerError(f"kernel {self.kernel} larger than the padded input {size}")
            # Padding beyond the input (bottom/right) so that every Caffe window fits.
            extra = tuple(
                max(0, (out[i] - 1) * self.stride[i] + self.kernel[i] - size[i] - self.pad[i])
                for i in (0, 1)
            )
            # AVE divides by the window clipped to [-pad, size + pad), as Caffe does.
            div = [
                [
                    min(o * self.stride[i] - self.pad[i] + self.kernel[i], size[i] + self.pad[i])
                    - (o * self.stride[i] - self.pad[i])
                    for o in range(out[i])
                ]
                for i in (0, 1)
            ]
            # PyTorch's own ceil-mode pooling computes the same windows and AVE divisors
            # (its code descends from Caffe's) whenever it agrees on the output size and
            # allows the pad; it is faster than padding a copy of the input.
            native = self.ceil and all(
                2 * self.pad[i] <= self.kernel[i]
                and _torch_pooled_size(size[i], self.kernel[i], self.stride[i], self.pad[i])
                == out[i]
                for i in (0, 1)
            )
            self._geoms[(h, w)] = (out, extra, div, native)
        return self._geoms[(h, w)]

    def forward(self, x):
        (oh, ow), (eh, ew), divisors, native = self.geometry(x.shape[2], x.shape[3])
        ph, pw = self.pad
        if native:
            if self.method == caffe_pb2.PoolingParameter.MAX:
                return [F.max_pool2d(x, self.kernel, self.stride, self.pad, ceil_mode=True)]
            return [F.avg_pool2d(x, self.kernel, self.stride, self.pad, ceil_mode=True)]
        if self.method == caffe_pb2.PoolingParameter.MAX:
            xp = F.pad(x, (pw, ew, ph, eh), value=-math.inf) if (ph or pw or eh or ew) else x
            y = F.max_pool2d(xp, self.kernel, self.stride)
            return [y[:, :, :oh, :ow]]
        xp = F.pad(x, (pw, ew, ph, eh)) if (ph or pw or eh or ew) else x
        y = F.avg_pool2d(xp, self.kernel, self.stride)[:, :, :oh, :ow]
        area = self.kernel[0] * self.kernel[1]
        dh = torch.tensor(divisors[0], dtype=x.dtype, device=x.device)
        dw = torch.tensor(divisors[1], dtype=x.dtype, device=x.device)
        return [y * (area / (dh[:, None] * dw[None, :]))]


class LRN(Layer):
    def setup(self, bottom_shapes):
        p = self.lp.lrn_param
        if len(bottom_shapes[0]) != 4:
            raise LayerError(f"needs a 4-D bottom (N, C, H, W), got {bottom_shapes[0]}")
        if p.local_size % 2 == 0:
            raise LayerError(f"local_size must be odd, got {p.local_size}")
        self.size, self.alpha, self.beta, self.k = int(p.local_size), p.alpha, p.beta, p.k
        self.across = p.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS

    def forward(self, x):
        half = (self.size - 1) // 2
        if self.across:
            # Caffe: x / (k + alpha/n * sum of squares over n neighbouring channels)^beta
            # (torch's local_response_norm for odd n), with Caffe's closed-form backward.
            return [cross_channel_lrn(x, self.size, self.alpha, self.beta, self.k)]
        else:
            # Caffe's WITHIN_CHANNEL: (1 + alpha * mean over an n x n window)^-beta; k unused.
            mean = F.avg_pool2d(x * x, self.size, stride=1, padding=half, count_include_pad=True)
            scale = 1.0 + self.alpha * mean
        return [x * scale.pow(-self.beta)]


# ---------------------------------------------------------------------------------------------
# Common layers


class InnerProduct(Layer):
    def setup(self, bottom_shapes):
        p = self.lp.inner_product_param
        shape = bottom_shapes[0]
        if not p.num_output:
            raise LayerError("inner_product_param.num_output is required")
        self.axis = _axis(p.axis, len(shape))
        k = math.prod(shape[self.axis :])
        n = int(p.num_output)
        self.transpose = p.transpose
        self.blobs.append(_param((k, n) if p.transpose else (n, k), p.weight_filler))
        if p.bias_term:
            self.blobs.append(_param((n,), p.bias_filler))

    def forward(self, x):
        x2 = x.flatten(self.axis) if self.axis < x.dim() - 1 else x
        if self.axis == 0:
            x2 = x2.reshape(1, -1)
        w = self.blobs[0].t() if self.transpose else self.blobs[0]
        bias = self.blobs[1] if len(self.blobs) > 1 else None
        y = F.linear(x2, w, bias)
        return [y.reshape(*x.shape[: self.axis], -1)]


class ReLU(Layer):
    def forward(self, x):
        slope = self.lp.relu_param.negative_slope
        return [F.leaky_relu(x, slope) if slope else F.relu(x)]


class Sigmoid(Layer):
    def forward(self, x):
        return [torch.sigmoid(x)]


class TanH(Layer):
    def forward(self, x):
        return [torch.tanh(x)]


class AbsVal(Layer):
    def forward(self, x):
        return [x.abs()]


class Power(Layer):
    def forward(self, x):
        p = self.lp.power_param
        return [(p.shift + p.scale * x).pow(p.power)]


class Dropout(Layer):
    def setup(self, bottom_shapes):
        self.ratio = self.lp.dropout_param.dropout_ratio
        if not 0.0 <= self.ratio < 1.0:
            raise LayerError(f"dropout_ratio must be in [0, 1), got {self.ratio}")

    def forward(self, x):
        # Caffe scales the kept units by 1/(1-ratio) at train time, as torch does.
        active = self.phase == "TRAIN" and self.training
        return [F.dropout(x, self.ratio, training=active)]


class Split(Layer):
    n_tops = (1, 99)

    def forward(self, x):
        return [x] * len(self.lp.top)


class Silence(Layer):
    n_bottoms = (1, 99)
    n_tops = (0, 0)

    def forward(self, *xs):
        return []


class Concat(Layer):
    n_bottoms = (1, 99)

    def setup(self, bottom_shapes):
        p = self.lp.concat_param
        nd = len(bottom_shapes[0])
        self.axis = _axis(p.concat_dim if p.HasField("concat_dim") else p.axis, nd)
        for s in bottom_shapes[1:]:
            if len(s) != nd or any(
                a != b
                for i, (a, b) in enumerate(zip(s, bottom_shapes[0], strict=True))
                if i != self.axis
            ):
                raise LayerError(f"bottom shapes {bottom_shapes} differ outside axis {self.axis}")

    def forward(self, *xs):
        return [torch.cat(xs, self.axis)]


class Slice(Layer):
    n_tops = (1, 99)

    def setup(self, bottom_shapes):
        p = self.lp.slice_param
        shape = bottom_shapes[0]
        self.axis = _axis(p.slice_dim if p.HasField("slice_dim") else p.axis, len(shape))
        total = shape[self.axis]
        tops = len(self.lp.top)
        if len(p.slice_point):
            points = [int(v) for v in p.slice_point]
            if len(points) != tops - 1:
                raise LayerError(
                    f"{tops} tops need {tops - 1} slice_point values, has {len(points)}"
                )
            bounds = [0, *points, total]
            if any(b <= a for a, b in zip(bounds[:-1], bounds[1:], strict=True)):
                raise LayerError(f"slice_point {points} must increase within (0, {total})")
            self.sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        else:
            if total % tops:
                raise LayerError(f"axis size {total} does not split evenly into {tops} tops")
            self.sizes = [total // tops] * tops

    def forward(self, x):
        return list(torch.split(x, self.sizes, self.axis))


class Eltwise(Layer):
    n_bottoms = (2, 99)

    def setup(self, bottom_shapes):
        p = self.lp.eltwise_param
        if any(s != bottom_shapes[0] for s in bottom_shapes):
            raise LayerError(f"bottoms must have equal shapes, got {bottom_shapes}")
        self.op = p.operation
        self.coeff = list(p.coeff)
        if self.coeff and len(self.coeff) != len(bottom_shapes):
            raise LayerError(f"needs one coeff per bottom ({len(bottom_shapes)})")
        if self.coeff and self.op != caffe_pb2.EltwiseParameter.SUM:
            raise LayerError("coeff is only for operation SUM")

    def forward(self, *xs):
        if self.op == caffe_pb2.EltwiseParameter.SUM:
            coeff = self.coeff or [1.0] * len(xs)
            y = xs[0] * coeff[0] if coeff[0] != 1.0 else xs[0]
            for c, x in zip(coeff[1:], xs[1:], strict=True):
                y = y + (x * c if c != 1.0 else x)
            return [y]
        y = xs[0]
        for x in xs[1:]:
            y = y * x if self.op == caffe_pb2.EltwiseParameter.PROD else torch.maximum(y, x)
        return [y]


class Flatten(Layer):
    def setup(self, bottom_shapes):
        p = self.lp.flatten_param
        nd = len(bottom_shapes[0])
        self.start, self.end = _axis(p.axis, nd), _axis(p.end_axis, nd)

    def forward(self, x):
        return [x.flatten(self.start, self.end)]


def reshaped(bottom: Shape, p: caffe_pb2.ReshapeParameter) -> Shape:
    """Caffe's Reshape: dims 0 copy, one -1 inferred, replacing axes [axis, axis+num_axes)."""
    bottom = list(bottom)
    nd = len(bottom)
    start = p.axis + nd + 1 if p.axis < 0 else p.axis
    if not 0 <= start <= nd:
        raise LayerError(f"axis {p.axis} out of range for a {nd}-axis blob")
    end = nd if p.num_axes == -1 else start + p.num_axes
    if p.num_axes < -1 or end > nd:
        raise LayerError(f"num_axes {p.num_axes} out of range")
    new: list[int] = []
    infer = None
    for i, d in enumerate(int(d) for d in p.shape.dim):
        if d == 0:
            if start + i >= nd:
                raise LayerError(f"dim {i} is 0 (copy) but the bottom has no axis {start + i}")
            new.append(bottom[start + i])
        elif d == -1:
            if infer is not None:
                raise LayerError("at most one dim may be -1")
            infer = i
            new.append(1)
        elif d < 0:
            raise LayerError(f"invalid dim {d}")
        else:
            new.append(d)
    shape = bottom[:start] + new + bottom[end:]
    count = math.prod(bottom)
    if infer is not None:
        known = math.prod(shape)
        if known == 0 or count % known:
            raise LayerError(f"cannot infer a dim: {count} values into {shape}")
        shape[start + infer] = count // known
    if math.prod(shape) != count:
        raise LayerError(f"cannot reshape {tuple(bottom)} ({count} values) to {tuple(shape)}")
    return tuple(shape)


class Reshape(Layer):
    def setup(self, bottom_shapes):
        reshaped(bottom_shapes[0], self.lp.reshape_param)

    def forward(self, x):
        return [x.reshape(reshaped(tuple(x.shape), self.lp.reshape_param))]


class Softmax(Layer):
    def setup(self, bottom_shapes):
        self.axis = _axis(self.lp.softmax_param.axis, len(bottom_shapes[0]))

    def forward(self, x):
        return [torch.softmax(x, self.axis)]


# ---------------------------------------------------------------------------------------------
# Losses and accuracy


def _normalization(lp: caffe_pb2.LayerParameter, default: int) -> int:
    lossp = lp.loss_param
    if lossp.HasField("normalization"):
        return lossp.normalization
    if lossp.HasField("normalize"):
        return (
            caffe_pb2.LossParameter.VALID if lossp.normalize else caffe_pb2.LossParameter.BATCH_SIZE
        )
    return default


def _normalizer(mode: int, outer: int, inner: int, valid: Tensor | None) -> Tensor | float:
    P = caffe_pb2.LossParameter
    if mode == P.FULL:
        return float(max(1, outer * inner))
    if mode == P.VALID:
        return valid.clamp(min=1.0) if valid is not None else float(max(1, outer * inner))
    if mode == P.BATCH_SIZE:
        return float(max(1, outer))
    return 1.0


class SoftmaxWithLoss(Layer):
    n_bottoms = (2, 2)
    n_tops = (1, 2)

    def setup(self, bottom_shapes):
        shape, lshape = bottom_shapes
        self.axis = _axis(self.lp.softmax_param.axis, len(shape))
        self.outer = math.prod(shape[: self.axis])
        self.inner = math.prod(shape[self.axis + 1 :])
        if math.prod(lshape) != self.outer * self.inner:
            raise LayerError(
                f"label count {math.prod(lshape)} must be outer*inner = {self.outer * self.inner} "
                f"(scores {shape}, labels {lshape})"
            )
        lossp = self.lp.loss_param
        self.ignore = lossp.ignore_label if lossp.HasField("ignore_label") else None
        self.mode = _normalization(self.lp, caffe_pb2.LossParameter.VALID)

    def forward(self, x, label):
        # Caffe's forward clamps the picked probability at FLT_MIN (loss <= 87.34 per sample),
        # but its backward is `prob - onehot` whatever the clamp: a saturated sample keeps its
        # full gradient. So the clamp acts on the value only (its gradient passes straight
        # through); a plain clamp would zero the gradient of exactly the worst samples.
        logp = torch.log_softmax(x, self.axis)
        floor = math.log(FLT_MIN)
        logp = torch.where(logp < floor, logp - logp.detach() + floor, logp)
        # (outer, C, inner) so the label indexes the class axis.
        outer = math.prod(x.shape[: self.axis])
        logp3 = logp.reshape(outer, x.shape[self.axis], self.inner)
        lab = label.reshape(outer, 1, self.inner).long()
        valid = None
        if self.ignore is not None:
            keep = lab != self.ignore
            lab = torch.where(keep, lab, torch.zeros_like(lab))
            valid = keep.to(x.dtype).sum()
        picked = logp3.gather(1, lab)
        if self.ignore is not None:
            picked = picked * keep.to(x.dtype)
        loss = -picked.sum() / _normalizer(self.mode, outer, self.inner, valid)
        tops = [loss]
        if len(self.lp.top) > 1:
            tops.append(torch.softmax(x, self.axis))
        return tops


class SigmoidCrossEntropyLoss(Layer):
    n_bottoms = (2, 2)
    n_tops = (1, 1)

    def setup(self, bottom_shapes):
        shape, tshape = bottom_shapes
        if math.prod(shape) != math.prod(tshape):
            raise LayerError(f"scores {shape} and targets {tshape} need the same count")
        lossp = self.lp.loss_param
        self.ignore = lossp.ignore_label if lossp.HasField("ignore_label") else None
        # Caffe keeps BATCH_SIZE as this layer's default for backward compatibility.
        self.mode = _normalization(self.lp, caffe_pb2.LossParameter.BATCH_SIZE)
        self.outer = shape[0] if shape else 1
        self.inner = math.prod(shape) // max(1, self.outer)

    def forward(self, x, target):
        t = target.reshape(x.shape).to(x.dtype)
        # Numerically stable: max(x,0) - x*t + log(1 + exp(-|x|)), Caffe's formulation.
        per = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        valid = None
        if self.ignore is not None:
            keep = (target.reshape(x.shape) != self.ignore).to(x.dtype)
            per = per * keep
            valid = keep.sum()
        outer = x.shape[0] if x.dim() else 1
        return [per.sum() / _normalizer(self.mode, outer, self.inner, valid)]


class EuclideanLoss(Layer):
    n_bottoms = (2, 2)

    def setup(self, bottom_shapes):
        a, b = bottom_shapes
        if math.prod(a) != math.prod(b):
            raise LayerError(f"bottoms {a} and {b} need the same count")

    def forward(self, a, b):
        d = a - b.reshape(a.shape)
        return [(d * d).sum() / a.shape[0] / 2.0]


class Accuracy(Layer):
    n_bottoms = (2, 2)
    n_tops = (1, 1)

    def setup(self, bottom_shapes):
        shape, lshape = bottom_shapes
        p = self.lp.accuracy_param
        self.axis = _axis(p.axis, len(shape))
        self.top_k = int(p.top_k)
        self.ignore = p.ignore_label if p.HasField("ignore_label") else None
        self.outer = math.prod(shape[: self.axis])
        self.inner = math.prod(shape[self.axis + 1 :])
        if self.top_k > shape[self.axis]:
            raise LayerError(f"top_k {self.top_k} exceeds the {shape[self.axis]} classes")
        if math.prod(lshape) != self.outer * self.inner:
            raise LayerError(f"label count {math.prod(lshape)} != {self.outer * self.inner}")

    def forward(self, x, label):
        with torch.no_grad():
            outer = math.prod(x.shape[: self.axis])
            s = x.reshape(outer, x.shape[self.axis], self.inner)
            lab = label.reshape(outer, 1, self.inner).long()
            keep = torch.ones_like(lab, dtype=torch.bool)
            if self.ignore is not None:
                keep = lab != self.ignore
                lab = torch.where(keep, lab, torch.zeros_like(lab))
            true = s.gather(1, lab)
            # Caffe: correct if fewer than top_k classes score strictly higher than the truth.
            better = (s > true).sum(1, keepdim=True)
            correct = ((better < self.top_k) & keep).sum().to(x.dtype)
            return [correct / keep.sum().clamp(min=1).to(x.dtype)]


LAYERS: dict[str, type[Layer]] = {
    "Convolution": Convolution,
    "Pooling": Pooling,
    "LRN": LRN,
    "InnerProduct": InnerProduct,
    "ReLU": ReLU,
    "Sigmoid": Sigmoid,
    "TanH": TanH,
    "AbsVal": AbsVal,
    "Power": Power,
    "Dropout": Dropout,
    "Split": Split,
    "Silence": Silence,
    "Concat": Concat,
    "Slice": Slice,
    "Eltwise": Eltwise,
    "Flatten": Flatten,
    "Reshape": Reshape,
    "Softmax": Softmax,
    "SoftmaxWithLoss": SoftmaxWithLoss,
    "SigmoidCrossEntropyLoss": SigmoidCrossEntropyLoss,
    "EuclideanLoss": EuclideanLoss,
    "Accuracy": Accuracy,
}
