"""A Caffe NetParameter as a PyTorch module (the Engine API shared by all of facs).

    net = Net.from_prototxt("deploy.prototxt", "TEST")
    out = net.forward(data=batch)            # every blob no later layer consumes
    net.loss(out)                            # sum of loss tops times loss_weight

Layers are kept or dropped for the phase by their include/exclude NetStateRules, built in
order with their bottom shapes known (shapes are propagated on PyTorch's "meta" device, so
building AlexNet costs no compute), and run functionally: an in-place layer (top == bottom)
rebinds the blob name, and a blob read by several layers is simply read several times, which
is what Caffe's automatic Split layers amount to (autograd sums the gradients).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from facs.caffe import caffe_pb2
from facs.caffe.data_layer import make_data_layer
from facs.caffe.io import (
    array_to_blob,
    blob_shape,
    blob_to_array,
    layer_lines,
    read_caffemodel,
    read_net_prototxt,
    upgrade_net,
    write_caffemodel_blobs,
)
from facs.caffe.layers import LAYERS, Layer, LayerError, Shape
from facs.errors import FacsError

PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST}
DATA_TYPES = ("Data",)


@dataclass
class LearnableBlob:
    """One weight blob: `layer` name, `index` in the layer's blobs, its ParamSpec multipliers."""

    layer: str
    index: int
    param: nn.Parameter
    lr_mult: float
    decay_mult: float


def state_meets_rule(state: caffe_pb2.NetState, rule: caffe_pb2.NetStateRule) -> bool:
    """Caffe's Net::StateMeetsRule."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    return not any(s in stages for s in rule.not_stage)


def layer_included(lp: caffe_pb2.LayerParameter, state: caffe_pb2.NetState) -> bool:
    """Caffe's FilterNet: any include rule met, or (without includes) no exclude rule met."""
    if len(lp.include):
        return any(state_meets_rule(state, r) for r in lp.include)
    return not any(state_meets_rule(state, r) for r in lp.exclude)


class Net(nn.Module):
    """A Caffe net for one phase, executable by PyTorch on any device."""

    def __init__(
        self,
        net_param: caffe_pb2.NetParameter,
        phase: str = "TEST",
        base_dir: Path | None = None,
        *,
        stages: list[str] | None = None,
        level: int = 0,
        source: str | Path | None = None,
        lines: list[int] | None = None,
    ):
        super().__init__()
        if phase not in PHASES:
            raise FacsError(f"phase must be TRAIN or TEST, not {phase!r}")
        param = caffe_pb2.NetParameter()
        param.CopyFrom(net_param)
        upgrade_net(param)
        self.phase = phase
        self.name = param.name
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        # 4-D blobs in channels-last memory (NHWC; the logical NCHW shape is unchanged): oneDNN's
        # convolutions skip their reorders and max pooling runs ~10x faster on CPU.
        # FACS_CHANNELS_LAST=0 keeps PyTorch's default layout.
        self.channels_last = os.environ.get("FACS_CHANNELS_LAST", "1") != "0" and any(
            lp.type == "Convolution" for lp in param.layer
        )
        self._source = str(source) if source is not None else f"net '{param.name or 'unnamed'}'"
        if (
            lines is not None
            and len(lines) == len(param.layer) - 1
            and param.layer[0].type == "Input"
        ):
            lines = [None, *lines]  # the Input layer made from legacy `input:` fields
        all_lines = lines if lines is not None and len(lines) == len(param.layer) else None
        state = caffe_pb2.NetState(phase=PHASES[phase], level=level)
        state.stage.extend(stages if stages is not None else param.state.stage)

        self.layer_params: list[caffe_pb2.LayerParameter] = []
        self.layer_lines: list[int | None] = []
        self.layer_names: list[str] = []
        self.layers = nn.ModuleList()  # compute layers; None-free, see self._kinds
        self._kinds: list[tuple[str, int]] = []  # per layer: ("compute"|"input"|"data", index)
        self.data_layers: list = []
        self.blob_shapes: dict[str, Shape] = {}
        self.input_names: list[str] = []
        self.loss_weights: dict[str, float] = {}
        self.learnable: list[LearnableBlob] = []
        self.blobs: dict[str, Tensor] = {}
        try:
            self._build(param, state, all_lines)
        except BaseException:
            self.close()  # a net that cannot be built leaves no open database or thread
            raise
        self.train(phase == "TRAIN")

    def close(self) -> None:
        """Stop the Data layers' prefetching and release their databases."""
        for layer in self.data_layers:
            layer.close()

    def _build(self, param, state, all_lines) -> None:
        shared: dict[str, tuple[nn.Parameter, str]] = {}
        available: dict[str, None] = {}  # ordered set of blobs no later layer consumed yet
        for i, lp in enumerate(param.layer):
            line = all_lines[i] if all_lines else None
            if not layer_included(lp, state):
                continue
            if len(lp.include) and len(lp.exclude):
                self._fail(lp, line, "give either include or exclude rules, not both")
            if lp.name in self.layer_names:
                self._fail(lp, line, "a layer of this name exists already")
            for b in lp.bottom:
                if b not in self.blob_shapes:
                    self._fail(lp, line, f"unknown bottom blob '{b}'")
            bottom_shapes = [self.blob_shapes[b] for b in lp.bottom]
            try:
                top_shapes = self._build_layer(lp, bottom_shapes)
            except LayerError as exc:
                self._fail(lp, line, str(exc))
            except FacsError as exc:  # from a Data layer: add where the layer is
                where = f"{self._source}:{line}" if line else self._source
                raise FacsError(f"{where}: {exc}") from None
            except (RuntimeError, ValueError) as exc:
                self._fail(lp, line, f"cannot run on bottoms of shape {bottom_shapes}: {exc}")
            self.layer_params.append(lp)
            self.layer_lines.append(line)
            self.layer_names.append(lp.name)
            for b in lp.bottom:
                available.pop(b, None)
            for t, s in zip(lp.top, top_shapes, strict=True):
                self.blob_shapes[t] = tuple(int(d) for d in s)
                available[t] = None
            self._setup_loss(lp, line)
            self._register_blobs(lp, line, shared)
        self.output_names = list(available)

    # -- construction ------------------------------------------------------------------------
    def _fail(self, lp: caffe_pb2.LayerParameter, line: int | None, msg: str):
        where = f"{self._source}:{line}" if line else self._source
        raise FacsError(f"{where}: layer '{lp.name}' ({lp.type or 'no type'}): {msg}")

    def _build_layer(self, lp: caffe_pb2.LayerParameter, bottom_shapes: list[Shape]):
        if lp.type == "Input":
            shapes = [tuple(int(d) for d in s.dim) for s in lp.input_param.shape]
            if len(shapes) not in (1, len(lp.top)) or not len(lp.top):
                raise LayerError("input_param needs one shape, or one shape per top")
            if len(shapes) == 1:
                shapes = shapes * len(lp.top)
            self._kinds.append(("input", -1))
            self.input_names.extend(lp.top)
            return shapes
        if lp.type in DATA_TYPES:
            data = make_data_layer(lp, self.phase, self.base_dir)
            self._kinds.append(("data", len(self.data_layers)))
            self.data_layers.append(data)
            return [tuple(s) for s in data.top_shapes]
        cls = LAYERS.get(lp.type)
        if cls is None:
            known = ", ".join(sorted([*LAYERS, "Input", *DATA_TYPES]))
            raise LayerError(f"unsupported layer type (supported: {known})")
        layer: Layer = cls(lp, self.phase)
        layer.setup(bottom_shapes)
        # Shapes on the meta device: no memory, no compute, same shape rules as the real run.
        meta = {n: torch.empty(p.shape, device="meta") for n, p in layer.named_parameters()}
        bottoms = tuple(torch.empty(s, device="meta") for s in bottom_shapes)
        with torch.no_grad():
            tops = functional_call(layer, meta, bottoms)
        if len(tops) != len(lp.top):
            raise LayerError(f"makes {len(tops)} top blob(s), the prototxt names {len(lp.top)}")
        self._kinds.append(("compute", len(self.layers)))
        self.layers.append(layer)
        return [tuple(t.shape) for t in tops]

    def _setup_loss(self, lp: caffe_pb2.LayerParameter, line: int | None) -> None:
        weights = list(lp.loss_weight)
        if not weights and lp.type.endswith("Loss") and len(lp.top):
            weights = [1.0] + [0.0] * (len(lp.top) - 1)
        if weights and len(weights) != len(lp.top):
            self._fail(lp, line, f"{len(weights)} loss_weight values for {len(lp.top)} tops")
        for top, w in zip(lp.top, weights, strict=False):
            if w:
                self.loss_weights[top] = float(w)

    def _register_blobs(self, lp, line, shared) -> None:
        kind, idx = self._kinds[-1]
        if kind != "compute":
            if len(lp.param):
                self._fail(lp, line, "has param specs but no weight blobs")
            return
        layer = self.layers[idx]
        n = len(layer.blobs)
        if len(lp.param) > n:
            self._fail(lp, line, f"{len(lp.param)} param specs for {n} weight blobs")
        for k in range(n):
            spec = lp.param[k] if k < len(lp.param) else caffe_pb2.ParamSpec()
            if spec.name:
                if spec.name in shared:
                    owner, owner_layer = shared[spec.name]
                    if owner.shape != layer.blobs[k].shape:
                        self._fail(
                            lp, line, f"shared param '{spec.name}' has shape "
                            f"{tuple(layer.blobs[k].shape)} here, {tuple(owner.shape)} in "
                            f"'{owner_layer}'",
                        )  # fmt: skip
                    layer.blobs[k] = owner
                else:
                    shared[spec.name] = (layer.blobs[k], lp.name)
            self.learnable.append(
                LearnableBlob(
                    lp.name, k, layer.blobs[k], float(spec.lr_mult), float(spec.decay_mult)
                )
            )

    @classmethod
    def from_prototxt(
        cls, path: str | Path, phase: str = "TEST", base_dir: Path | None = None, **kwargs
    ) -> Net:
        """Build from a prototxt file; relative Data sources and mean files resolve against
        `base_dir` (default: the prototxt's folder, as `facs train` does for solver nets)."""
        param = read_net_prototxt(path)
        lines = layer_lines(Path(path).read_text(encoding="utf-8"))
        base = base_dir if base_dir is not None else Path(path).resolve().parent
        return cls(param, phase, base, source=path, lines=lines, **kwargs)

    # -- running -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def layer(self, name: str) -> nn.Module:
        """The compute layer called `name` (its `.blobs` hold Caffe's weight blobs)."""
        for lname, (kind, idx) in zip(self.layer_names, self._kinds, strict=True):
            if lname == name and kind == "compute":
                return self.layers[idx]
        raise KeyError(name)

    def forward(self, inputs: dict | None = None, **kw) -> dict[str, Tensor]:
        """Run the net. Input blobs are fed by name (tensors or arrays); Data layers pull their
        next batch unless all their tops are given. Returns the blobs no layer consumed."""
        feed = dict(inputs or {}, **kw)
        device = self.device
        cl = self.channels_last
        blobs: dict[str, Tensor] = {}
        known = set(self.blob_shapes)
        for name in feed:
            if name not in known:
                raise FacsError(f"{self._source}: no blob named '{name}' to feed")
        for lp, (kind, idx) in zip(self.layer_params, self._kinds, strict=True):
            if kind == "compute":
                tops = self.layers[idx](*[blobs[b] for b in lp.bottom])
            elif kind == "input":
                missing = [t for t in lp.top if t not in feed]
                if missing:
                    raise FacsError(f"{self._source}: input blob(s) {missing} not given")
                tops = [_as_tensor(feed[t], device, cl) for t in lp.top]
            elif all(t in feed for t in lp.top):
                tops = [_as_tensor(feed[t], device, cl) for t in lp.top]
            else:
                tops = [_as_tensor(t, device, cl) for t in self.data_layers[idx].next()]
            for t, v in zip(lp.top, tops, strict=True):
                blobs[t] = v
        self.blobs = blobs
        return {name: blobs[name] for name in self.output_names}

    def loss(self, outputs: dict[str, Tensor]) -> Tensor:
        """Sum of the loss blobs in `outputs`, each summed and times its loss_weight."""
        total: Tensor | float = 0.0
        for name, w in self.loss_weights.items():
            value = outputs.get(name, self.blobs.get(name))
            if value is not None:
                total = total + w * value.sum()
        return total if isinstance(total, Tensor) else torch.tensor(total, device=self.device)

    # -- weights -----------------------------------------------------------------------------
    def to_proto(self) -> caffe_pb2.NetParameter:
        """The net's layers (for its phase) with their weight blobs, as in a .caffemodel."""
        out = caffe_pb2.NetParameter(name=self.name)
        for lp, (kind, idx) in zip(self.layer_params, self._kinds, strict=True):
            layer = out.layer.add()
            layer.CopyFrom(lp)
            layer.ClearField("blobs")
            if kind == "compute":
                for p in self.layers[idx].blobs:
                    array_to_blob(p.detach().cpu().numpy(), layer.blobs.add())
        return out

    def save_caffemodel(self, path: str | Path) -> None:
        """Write the weights as a V2 .caffemodel (readable by Caffe and OpenCV)."""
        layers = []
        for lp, (kind, idx) in zip(self.layer_params, self._kinds, strict=True):
            blobs = self.layers[idx].blobs if kind == "compute" else []
            layers.append((lp, [p.detach().cpu().numpy() for p in blobs]))
        write_caffemodel_blobs(path, self.name, layers)

    def load_caffemodel(self, path: str | Path | caffe_pb2.NetParameter) -> list[str]:
        """Copy weight blobs by layer name (layers only in the file are ignored, as in Caffe's
        fine-tuning). Returns the names of the layers copied."""
        src = path if isinstance(path, caffe_pb2.NetParameter) else read_caffemodel(path)
        where = "caffemodel" if isinstance(path, caffe_pb2.NetParameter) else str(path)
        by_name = {lp.name: lp for lp in src.layer if len(lp.blobs)}
        copied = []
        for lp, (kind, idx) in zip(self.layer_params, self._kinds, strict=True):
            if kind != "compute" or lp.name not in by_name:
                continue
            targets = self.layers[idx].blobs
            blobs = by_name[lp.name].blobs
            if len(blobs) != len(targets):
                raise FacsError(
                    f"{where}: layer '{lp.name}' has {len(blobs)} blobs, the net expects "
                    f"{len(targets)}"
                )
            for k, (bp, p) in enumerate(zip(blobs, targets, strict=True)):
                want = tuple(p.shape)
                got = blob_shape(bp)
                if not _shape_matches(got, want, bp):
                    raise FacsError(
                        f"{where}: layer '{lp.name}' blob {k} has shape {got}, "
                        f"the net expects {want}"
                    )
                arr = blob_to_array(bp).reshape(want)
                with torch.no_grad():
                    p.copy_(torch.from_numpy(np.ascontiguousarray(arr)))
            copied.append(lp.name)
        return copied


def _shape_matches(got: tuple[int, ...], want: tuple[int, ...], bp: caffe_pb2.BlobProto) -> bool:
    if got == want:
        return True
    # Old blobs only have num/channels/height/width: compare with the shape padded to 4-D.
    if not bp.HasField("shape") and len(want) <= 4:
        return got == (1,) * (4 - len(want)) + want
    return False


def _as_tensor(value, device: torch.device, channels_last: bool = False) -> Tensor:
    t = value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    if not t.is_floating_point():
        t = t.float()
    t = t.to(device)
    if channels_last and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t
