"""Reading and writing Caffe's files: prototxt, .caffemodel, .binaryproto, .solverstate.

Text files are parsed with protobuf's text_format against facs' own caffe.proto; parse errors
become `FacsError("<file>:<line>: ...")`. Old-style nets (V1 `layers`, legacy `input:` fields)
are upgraded on read, so the rest of facs only ever sees V2 `layer` messages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from facs.caffe import caffe_pb2
from facs.errors import FacsError
from facs.fileio import atomic_path, write_bytes, write_text

# V1 enum value -> V2 type string (Caffe's UpgradeV1LayerType).
V1_TYPES: dict[int, str] = {
    caffe_pb2.V1LayerParameter.ABSVAL: "AbsVal",
    caffe_pb2.V1LayerParameter.ACCURACY: "Accuracy",
    caffe_pb2.V1LayerParameter.ARGMAX: "ArgMax",
    caffe_pb2.V1LayerParameter.BNLL: "BNLL",
    caffe_pb2.V1LayerParameter.CONCAT: "Concat",
    caffe_pb2.V1LayerParameter.CONTRASTIVE_LOSS: "ContrastiveLoss",
    caffe_pb2.V1LayerParameter.CONVOLUTION: "Convolution",
    caffe_pb2.V1LayerParameter.DATA: "Data",
    caffe_pb2.V1LayerParameter.DECONVOLUTION: "Deconvolution",
    caffe_pb2.V1LayerParameter.DROPOUT: "Dropout",
    caffe_pb2.V1LayerParameter.DUMMY_DATA: "DummyData",
    caffe_pb2.V1LayerParameter.EUCLIDEAN_LOSS: "EuclideanLoss",
    caffe_pb2.V1LayerParameter.ELTWISE: "Eltwise",
    caffe_pb2.V1LayerParameter.EXP: "Exp",
    caffe_pb2.V1LayerParameter.FLATTEN: "Flatten",
    caffe_pb2.V1LayerParameter.HDF5_DATA: "HDF5Data",
    caffe_pb2.V1LayerParameter.HDF5_OUTPUT: "HDF5Output",
    caffe_pb2.V1LayerParameter.HINGE_LOSS: "HingeLoss",
    caffe_pb2.V1LayerParameter.IM2COL: "Im2col",
    caffe_pb2.V1LayerParameter.IMAGE_DATA: "ImageData",
    caffe_pb2.V1LayerParameter.INFOGAIN_LOSS: "InfogainLoss",
    caffe_pb2.V1LayerParameter.INNER_PRODUCT: "InnerProduct",
    caffe_pb2.V1LayerParameter.LRN: "LRN",
    caffe_pb2.V1LayerParameter.MEMORY_DATA: "MemoryData",
    caffe_pb2.V1LayerParameter.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss",
    caffe_pb2.V1LayerParameter.MVN: "MVN",
    caffe_pb2.V1LayerParameter.POOLING: "Pooling",
    caffe_pb2.V1LayerParameter.POWER: "Power",
    caffe_pb2.V1LayerParameter.RELU: "ReLU",
    caffe_pb2.V1LayerParameter.SIGMOID: "Sigmoid",
    caffe_pb2.V1LayerParameter.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss",
    caffe_pb2.V1LayerParameter.SILENCE: "Silence",
    caffe_pb2.V1LayerParameter.SOFTMAX: "Softmax",
    caffe_pb2.V1LayerParameter.SOFTMAX_LOSS: "SoftmaxWithLoss",
    caffe_pb2.V1LayerParameter.SPLIT: "Split",
    caffe_pb2.V1LayerParameter.SLICE: "Slice",
    caffe_pb2.V1LayerParameter.TANH: "TanH",
    caffe_pb2.V1LayerParameter.WINDOW_DATA: "WindowData",
    caffe_pb2.V1LayerParameter.THRESHOLD: "Threshold",
}

# Fields V1 and V2 layers share by name and meaning (copied verbatim on upgrade).
_SHARED_V1_FIELDS = [
    f.name
    for f in caffe_pb2.V1LayerParameter.DESCRIPTOR.fields
    if f.name.endswith("_param") or f.name in ("bottom", "top", "name", "include", "exclude")
    if f.name in caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
]


def _read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise FacsError(f"{path}: no such file") from None
    except OSError as exc:
        raise FacsError(f"{path}: cannot read ({exc.strerror})") from None


def _parse_text(path: str | Path, message):
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FacsError(f"{path}: not a text prototxt (is it a binary .caffemodel?)") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        line = exc.GetLine()
        msg = str(exc)
        # protobuf prefixes "line:col : "; keep only what is wrong.
        if " : " in msg[:16]:
            msg = msg.split(" : ", 1)[1]
        where = f"{path}:{line}" if line else str(path)
        raise FacsError(f"{where}: {msg}") from None
    return message


def _parse_binary(path: str | Path, message, what: str):
    data = _read_bytes(path)
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError) as exc:
        raise FacsError(f"{path}: not a valid {what} ({exc})") from None
    return message


# ---------------------------------------------------------------------------------------------
# Upgrades of old nets


def upgrade_v1_layer(v1: caffe_pb2.V1LayerParameter) -> caffe_pb2.LayerParameter:
    """One V1 `layers` entry as a V2 `layer` (type enum -> string, blobs_lr -> ParamSpec)."""
    layer = caffe_pb2.LayerParameter()
    for name in _SHARED_V1_FIELDS:
        if name in ("bottom", "top", "include", "exclude"):
            getattr(layer, name).extend(getattr(v1, name))
        elif name == "name":
            layer.name = v1.name
        elif v1.HasField(name):
            getattr(layer, name).CopyFrom(getattr(v1, name))
    if v1.type not in V1_TYPES:
        raise FacsError(f"V1 layer '{v1.name}': unknown layer type {v1.type}")
    layer.type = V1_TYPES[v1.type]
    layer.blobs.extend(v1.blobs)
    layer.loss_weight.extend(v1.loss_weight)
    n = max(len(v1.param), len(v1.blobs_lr), len(v1.weight_decay), len(v1.blob_share_mode))
    for i in range(n):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    return layer


def upgrade_net(net: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    """Upgrade in place: V1 `layers` -> `layer`; legacy `input`/`input_dim` -> an Input layer."""
    if len(net.layers):
        if len(net.layer):
            raise FacsError(f"net '{net.name}': has both V1 'layers' and V2 'layer' entries")
        upgraded = [upgrade_v1_layer(v1) for v1 in net.layers]
        net.ClearField("layers")
        net.layer.extend(upgraded)
    if len(net.input):
        shapes: list[caffe_pb2.BlobShape] = []
        if len(net.input_shape):
            shapes = list(net.input_shape)
        elif len(net.input_dim):
            if len(net.input_dim) != 4 * len(net.input):
                raise FacsError(
                    f"net '{net.name}': input_dim needs 4 values per input "
                    f"({len(net.input)} inputs, {len(net.input_dim)} values)"
                )
            for i in range(len(net.input)):
                shapes.append(caffe_pb2.BlobShape(dim=net.input_dim[4 * i : 4 * i + 4]))
        if len(shapes) != len(net.input):
            raise FacsError(f"net '{net.name}': each input needs a shape")
        layer = caffe_pb2.LayerParameter(name="input", type="Input", top=list(net.input))
        layer.input_param.shape.extend(shapes)
        layers = [layer, *net.layer]
        net.ClearField("layer")
        net.layer.extend(layers)
        for field in ("input", "input_shape", "input_dim"):
            net.ClearField(field)
    return net


# ---------------------------------------------------------------------------------------------
# Text files


def read_net_prototxt(path: str | Path) -> caffe_pb2.NetParameter:
    """Parse a net prototxt (train_val or deploy), upgraded to V2 layers."""
    return upgrade_net(_parse_text(path, caffe_pb2.NetParameter()))


def read_solver_prototxt(path: str | Path) -> caffe_pb2.SolverParameter:
    """Parse a solver prototxt (paths inside it stay as written; resolve them yourself)."""
    return _parse_text(path, caffe_pb2.SolverParameter())


def write_prototxt(path: str | Path, message) -> None:
    """Write any message (net, solver) in protobuf text format."""
    write_text(path, text_format.MessageToString(message))


WORK_PREFIX = "WORK/"


def substitute_work(message, work: str | Path):
    """Replace the leading `WORK/` of Data sources, mean files and snapshot prefixes.

    The prototxts in prototxt/<profile>/ name their LMDBs `WORK/lmdb/...`; this makes them
    point into a real work directory (e.g. work/quick). Works on nets and solvers; in place.
    """
    work = str(work).rstrip("/") + "/"

    def sub(value: str) -> str:
        return work + value[len(WORK_PREFIX) :] if value.startswith(WORK_PREFIX) else value

    if isinstance(message, caffe_pb2.SolverParameter):
        message.snapshot_prefix = sub(message.snapshot_prefix)
        nets = [message.net_param, message.train_net_param, *message.test_net_param]
        for net in nets:
            substitute_work(net, work)
        return message
    for layer in message.layer:
        if layer.HasField("data_param"):
            layer.data_param.source = sub(layer.data_param.source)
        if layer.transform_param.mean_file:
            layer.transform_param.mean_file = sub(layer.transform_param.mean_file)
    return message


def layer_lines(text: str) -> list[int]:
    """1-based line of each top-level `layer {` / `layers {` in a net prototxt, in order.

    A small scanner (comments and strings aware) so that errors found while building a net
    can name the line where the offending layer starts.
    """
    lines: list[int] = []
    depth = 0
    line = 1
    word = ""
    last_word = ""
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                if text[j] == "\\":
                    j += 1
                elif text[j] == "\n":
                    line += 1
                j += 1
            i = j + 1
            word, last_word = "", ""
            continue
        if c.isalnum() or c == "_":
            word += c
        else:
            if word:
                last_word, word = word, ""
            if c == "{":
                if depth == 0 and last_word in ("layer", "layers"):
                    lines.append(line)
                depth += 1
                last_word = ""
            elif c == "}":
                depth -= 1
                last_word = ""
            elif c not in " \t\r\n:":
                last_word = ""
        i += 1
    return lines


# ---------------------------------------------------------------------------------------------
# Binary files


def read_caffemodel(path: str | Path) -> caffe_pb2.NetParameter:
    """Read a .caffemodel (V2 `layer` or V1 `layers`, upgraded) with its weight blobs."""
    return upgrade_net(_parse_binary(path, caffe_pb2.NetParameter(), "caffemodel"))


def write_caffemodel(path: str | Path, net_param: caffe_pb2.NetParameter) -> None:
    """Write a NetParameter whose layers carry `blobs` as a binary .caffemodel."""
    write_bytes(path, net_param.SerializeToString())


def write_caffemodel_blobs(
    path: str | Path,
    name: str,
    layers: list[tuple[caffe_pb2.LayerParameter, list[np.ndarray]]],
) -> None:
    """Write a .caffemodel from layer definitions and their weight arrays, streaming.

    The bytes are exactly those of a NetParameter with `layer { ... blobs { shape data } }`,
    but each array goes from memory to the file once: no protobuf copy of AlexNet's 60 M
    (or the flow net's 100 M) floats.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if name:
            f.write(caffe_pb2.NetParameter(name=name).SerializeToString())
        for lp, arrays in layers:
            head = caffe_pb2.LayerParameter()
            head.CopyFrom(lp)
            head.ClearField("blobs")
            head_bytes = head.SerializeToString()
            parts = []
            for arr in arrays:
                arr = np.ascontiguousarray(arr, dtype="<f4")
                meta = caffe_pb2.BlobProto()
                meta.shape.dim.extend(int(d) for d in arr.shape)
                if arr.ndim == 4:
                    meta.num, meta.channels, meta.height, meta.width = (int(d) for d in arr.shape)
                data_head = meta.SerializeToString() + b"\x2a" + _varint(arr.nbytes)
                parts.append((data_head, arr))
            blob_lens = [len(h) + a.nbytes for h, a in parts]
            layer_len = len(head_bytes) + sum(1 + len(_varint(n)) + n for n in blob_lens)
            f.write(b"\xa2\x06" + _varint(layer_len) + head_bytes)  # field 100, length-delimited
            for (data_head, arr), n in zip(parts, blob_lens, strict=True):
                f.write(b"\x3a" + _varint(n) + data_head)  # LayerParameter.blobs (7)
                f.write(memoryview(arr.reshape(-1)).cast("B"))


def blob_shape(blob: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """A BlobProto's shape: `shape.dim`, else the legacy num/channels/height/width."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if blob.num or blob.channels or blob.height or blob.width:
        return (blob.num, blob.channels, blob.height, blob.width)
    n = len(blob.data) or len(blob.double_data)
    return (n,) if n else ()


def blob_to_array(blob: caffe_pb2.BlobProto) -> np.ndarray:
    """BlobProto -> float32 array of its shape (double_data is used when data is empty)."""
    shape = blob_shape(blob)
    if len(blob.data):
        arr = np.asarray(blob.data, dtype=np.float32)
    else:
        arr = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    count = int(np.prod(shape)) if shape else arr.size
    if arr.size != count:
        raise FacsError(f"blob of shape {shape} holds {arr.size} values, expected {count}")
    return arr.reshape(shape)


def array_to_blob(
    array: np.ndarray, blob: caffe_pb2.BlobProto | None = None
) -> caffe_pb2.BlobProto:
    """float array -> BlobProto with `shape` (and legacy 4-D fields when the array is 4-D).

    Pass `blob` (e.g. `layer.blobs.add()`) to fill it in place: appending a finished 150 MB
    blob to a repeated field would copy it."""
    arr = np.ascontiguousarray(array, dtype=np.float32)
    blob = caffe_pb2.BlobProto() if blob is None else blob
    blob.Clear()
    blob.shape.dim.extend(int(d) for d in arr.shape)
    if arr.ndim == 4:
        # Old readers (and some tools) only look at the 4-D fields.
        blob.num, blob.channels, blob.height, blob.width = (int(d) for d in arr.shape)
    # Append the packed `data` field (5) as raw bytes: protobuf parses it at memcpy speed,
    # where extend() from a Python list takes seconds for AlexNet's fc6.
    raw = memoryview(arr.astype("<f4", copy=False).reshape(-1)).cast("B")
    head = b"\x2a" + _varint(raw.nbytes)
    buf = bytearray(len(head) + raw.nbytes)  # one copy of the values, not three
    buf[: len(head)] = head
    buf[len(head) :] = raw
    blob.MergeFromString(buf)
    return blob


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def read_blobproto(path: str | Path) -> np.ndarray:
    """Read a .binaryproto (e.g. mean.binaryproto, 1xCxHxW) as a float32 array."""
    blob = _parse_binary(path, caffe_pb2.BlobProto(), "binaryproto")
    try:
        return blob_to_array(blob)
    except FacsError as exc:
        raise FacsError(f"{path}: {exc}") from None


def write_blobproto(path: str | Path, array: np.ndarray) -> None:
    """Write an array as a .binaryproto (BlobProto with shape and legacy 4-D fields)."""
    write_bytes(path, array_to_blob(array).SerializeToString())


def read_solverstate(path: str | Path) -> caffe_pb2.SolverState:
    """Read a .solverstate (iteration, learned_net path, momentum history blobs)."""
    return _parse_binary(path, caffe_pb2.SolverState(), "solverstate")


def write_solverstate(
    path: str | Path,
    iteration: int,
    learned_net: str,
    history: list[np.ndarray],
    current_step: int = 0,
    loss_window: list[float] | None = None,
) -> None:
    """Write a .solverstate as Caffe does: iter, learned_net, one history blob per learnable
    (plus facs' own field: the recent losses behind the displayed smoothed loss)."""
    state = caffe_pb2.SolverState(iter=iteration, learned_net=learned_net)
    state.current_step = current_step
    state.facs_loss_window.extend(float(v) for v in loss_window or [])
    state.history.extend(array_to_blob(h) for h in history)
    write_bytes(path, state.SerializeToString())
