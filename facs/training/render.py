"""Rendering the prototxt templates a researcher edits into the nets one stream trains.

The templates live in `prototxt/<profile>/<net>_{train_val,solver,deploy}.prototxt`
(net: `alexnet_finetune` for the spatial stream, `onevsall`, `flownet`). Their Data layers name
placeholder LMDBs; rendering points them at the LMDBs of one configuration in WORK, sets the
mean file and crop, sizes the last InnerProduct to the labels, and (one-vs-all) rewrites the
label Slice to pick one column.
"""

from __future__ import annotations

from pathlib import Path

from facs.caffe import caffe_pb2
from facs.caffe.io import read_net_prototxt, read_solver_prototxt
from facs.errors import FacsError

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = {"spatial": "alexnet_finetune", "onevsall": "onevsall", "flow": "flownet"}
TEST = caffe_pb2.TEST


def train_settings(profile: dict, stream: str) -> dict:
    """The profile's `train` section for a stream, with the template paths filled in."""
    t = dict(profile.get("train", {}).get(stream, {}))
    base = t.get("prototxt_dir", f"prototxt/{profile.get('name', 'quick')}")
    for kind in ("train_val", "solver", "deploy"):
        t.setdefault(kind, f"{base}/{TEMPLATES[stream]}_{kind}.prototxt")
    return t


def repo_path(p: str | Path) -> Path:
    """A path as given when it exists (or is absolute), else relative to the repository."""
    p = Path(p)
    return p if p.is_absolute() or p.exists() else ROOT / p


def _phase(layer) -> int | None:
    for rule in layer.include:
        if rule.HasField("phase"):
            return int(rule.phase)
    return None


def is_label_layer(layer) -> bool:
    return any("label" in t for t in layer.top)


def last_inner_product(net: caffe_pb2.NetParameter):
    ips = [layer for layer in net.layer if layer.type == "InnerProduct"]
    if not ips:
        raise FacsError(f"net '{net.name}': no InnerProduct layer to size to the labels")
    return ips[-1]


def set_label_column(net: caffe_pb2.NetParameter, column: int, n_labels: int) -> None:
    """One-vs-all: the Slice layer on the label blob keeps `column` as its top `target`."""
    slices = [la for la in net.layer if la.type == "Slice" and "target" in la.top]
    if not slices:
        raise FacsError(f"net '{net.name}': one-vs-all needs a Slice layer with top 'target'")
    layer = slices[0]
    del layer.top[:]
    layer.slice_param.ClearField("slice_point")
    layer.slice_param.axis = 1
    points, tops = [], []
    if column > 0:
        points.append(column)
        tops.append("label_before")
    tops.append("target")
    if column < n_labels - 1:
        points.append(column + 1)
        tops.append("label_after")
    if n_labels == 1:
        points = []  # nothing to slice: a Slice with one top is Caffe's identity
    layer.slice_param.slice_point.extend(points)
    layer.top.extend(tops)
    # The columns around `target` feed nothing: a Silence layer consumes them, as in Caffe,
    # so they do not become net outputs (and fill the log with one line per label).
    rest = [t for t in tops if t != "target"]
    layers = [la for la in net.layer if la.name != "label_silence"]
    if rest:
        silence = caffe_pb2.LayerParameter(name="label_silence", type="Silence", bottom=rest)
        silence.include.extend(layer.include)
        silence.exclude.extend(layer.exclude)
        layers.insert(layers.index(layer) + 1, silence)
    del net.layer[:]
    net.layer.extend(layers)


def render_train_val(
    template: Path,
    sources: dict[str, tuple[Path, Path]],
    mean_file: Path | None,
    crop: int | None,
    num_output: int,
    batch: dict[str, int] | None = None,
) -> caffe_pb2.NetParameter:
    """Template net with WORK's LMDBs: sources = {"TRAIN": (data, labels), "TEST": (...)}."""
    net = read_net_prototxt(template)
    for layer in net.layer:
        if layer.type != "Data":
            continue
        phase = "TEST" if _phase(layer) == TEST else "TRAIN"
        data, labels = sources[phase]
        layer.data_param.source = str((labels if is_label_layer(layer) else data).resolve())
        layer.data_param.backend = caffe_pb2.DataParameter.LMDB
        if batch and phase in batch:
            layer.data_param.batch_size = int(batch[phase])
        if not is_label_layer(layer):
            tp = layer.transform_param
            if mean_file is not None:
                # Relative paths stay relative: they resolve against the net file's folder.
                tp.mean_file = str(mean_file)
                tp.ClearField("mean_value")
            if crop:
                tp.crop_size = int(crop)
    last_inner_product(net).inner_product_param.num_output = num_output
    return net


def data_scale(net: caffe_pb2.NetParameter) -> float:
    """transform_param.scale of the net's (image) Data layers, 1 when unset."""
    for layer in net.layer:
        if layer.type == "Data" and not is_label_layer(layer):
            if layer.transform_param.HasField("scale"):
                return float(layer.transform_param.scale)
    return 1.0


def render_deploy(template: Path, channels: int, crop: int, num_output: int):
    net = read_net_prototxt(template)
    shape = None
    for layer in net.layer:
        if layer.type == "Input":
            shape = layer.input_param.shape[0]
    if shape is None:
        if not len(net.input_shape):
            raise FacsError(f"{template}: a deploy net needs an Input layer")
        shape = net.input_shape[0]
    del shape.dim[:]
    shape.dim.extend([1, channels, crop, crop])
    last_inner_product(net).inner_product_param.num_output = num_output
    return net


def render_solver(template: Path, net_path: Path, prefix: Path, overrides: dict):
    sp = read_solver_prototxt(template)
    for f in ("train_net", "test_net", "net_param", "train_net_param"):
        sp.ClearField(f)
    sp.net = str(net_path.resolve())
    sp.snapshot_prefix = str(prefix.resolve())
    for key, value in overrides.items():
        field = sp.DESCRIPTOR.fields_by_name.get(key)
        if field is None:
            raise FacsError(f"profile train settings: solver has no field '{key}'")
        if hasattr(getattr(sp, key), "extend"):  # a repeated field
            sp.ClearField(key)
            getattr(sp, key).extend(value if isinstance(value, list) else [value])
        else:
            setattr(sp, key, value)
    return sp
