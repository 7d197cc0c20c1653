"""`facs net-info NET.prototxt [--phase TEST]`: the blob shapes and parameter counts of a net.

Shapes come from building the net exactly as training and prediction do (facs.caffe.net), so
what this prints is what runs. Data layers read their LMDB for the shapes; without the LMDBs,
give the shapes of their tops with --shape (e.g. --shape data=50,3,227,227 --shape label=50,37).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facs.caffe import caffe_pb2
from facs.caffe.io import layer_lines, read_net_prototxt, substitute_work
from facs.caffe.lmdb import iter_records, parse_datum
from facs.caffe.net import Net
from facs.errors import FacsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("net", type=Path, help="net prototxt (train_val or deploy)")
    parser.add_argument("--phase", choices=["TRAIN", "TEST"], default="TEST", help="default TEST")
    parser.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="BLOB=N,C,H,W",
        help="shape of a Data layer's top (replaces the layer by an Input; repeatable)",
    )
    parser.add_argument("--stage", action="append", default=None, help="NetState stage")
    parser.add_argument(
        "--work", type=Path, help="work directory to put in place of the WORK/ path prefix"
    )


def parse_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise FacsError(f"--shape {item}: expected BLOB=N,C,H,W (positive integers)")
        shapes[name] = shape
    return shapes


def stub_data_layers(net: caffe_pb2.NetParameter, shapes: dict[str, tuple[int, ...]]) -> None:
    """Replace each Data layer whose tops all have a given shape by an equivalent Input layer."""
    for layer in net.layer:
        if layer.type == "Data" and len(layer.top) and all(t in shapes for t in layer.top):
            layer.type = "Input"
            layer.ClearField("data_param")
            layer.ClearField("transform_param")
            for t in layer.top:
                layer.input_param.shape.add().dim.extend(shapes[t])


def describe(net) -> list[str]:
    """Table lines: layer, type, top, shape (without the batch axis), parameters, lr_mult."""
    rows = [("layer", "type", "top", "shape", "params", "lr_mult")]
    lrs = {}
    for b in net.learnable:
        lrs.setdefault(b.layer, []).append(f"{b.lr_mult:g}")
    total = frozen = 0
    batch = None
    for lp in net.layer_params:
        count = 0
        try:
            count = sum(p.numel() for p in net.layer(lp.name).blobs)
        except KeyError:
            pass
        total += count
        if lp.name in lrs and all(float(v) == 0 for v in lrs[lp.name]):
            frozen += count
        tops = list(lp.top) or ["-"]
        for i, top in enumerate(tops):
            shape = net.blob_shapes.get(top)
            if shape and batch is None and len(shape) > 1:
                batch = shape[0]
            text = "x".join(str(d) for d in shape[1:]) if shape and len(shape) > 1 else "scalar"
            if shape is not None and len(shape) == 1:
                text = str(shape[0])
            if top == "-":
                text = ""
            first = i == 0
            rows.append(
                (
                    lp.name if first else "",
                    lp.type if first else "",
                    top,
                    text,
                    f"{count:,}" if first and count else "",
                    "/".join(lrs.get(lp.name, [])) if first else "",
                )
            )
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(
        f"batch {batch}; {len(net.layer_params)} layers; {total:,} parameters "
        f"({total - frozen:,} trainable, {frozen:,} with lr_mult 0); "
        f"outputs: {', '.join(net.output_names)}"
    )
    if net.loss_weights:
        losses = ", ".join(f"{k} x {v:g}" for k, v in net.loss_weights.items())
        lines.append(f"losses: {losses}")
    return lines


def match_label_width(param: caffe_pb2.NetParameter, base: Path) -> str | None:
    """With real LMDBs, a multi-label net's last InnerProduct gets as many outputs as the label
    LMDB has labels (what `facs train-stream` renders); a note saying so, or None."""
    losses = [la for la in param.layer if "Loss" in la.type and "label" in la.bottom]
    ips = [la for la in param.layer if la.type == "InnerProduct"]
    if not losses or not ips or ips[-1].top[0] not in losses[0].bottom:
        return None  # e.g. one-vs-all: a Slice picks one label for a 2-way output
    for la in param.layer:
        if la.type == "Data" and la.top[0] == "label":
            src = Path(la.data_param.source)
            src = src if src.is_absolute() else base / src
            if not src.is_dir():
                continue
            for _, raw in iter_records(src):
                width = len(parse_datum(raw, src, "first").float_data)
                break
            else:
                continue
            ip = ips[-1].inner_product_param
            if width and ip.num_output != width:
                old, ip.num_output = ip.num_output, width
                return f"{ips[-1].name}: num_output {old} -> {width}, the labels in {src}"
            return None
    return None


def run(args: argparse.Namespace) -> int:
    path = args.net
    param = read_net_prototxt(path)
    note = None
    if args.work is not None:
        substitute_work(param, args.work.resolve())
        note = match_label_width(param, path.resolve().parent)
    stub_data_layers(param, parse_shapes(args.shape))
    lines = layer_lines(path.read_text(encoding="utf-8"))
    try:
        net = Net(
            param,
            args.phase,
            base_dir=path.resolve().parent,
            stages=args.stage,
            source=path,
            lines=lines,
        )
    except FacsError as exc:
        if any(la.type == "Data" for la in param.layer):
            raise FacsError(f"{exc} (without the LMDBs, give --shape BLOB=N,C,H,W)") from None
        raise
    print(f"{path} ({net.name or 'unnamed'}), phase {args.phase}")
    if note:
        print(f"note: {note}")
    for line in describe(net):
        print(line)
    return 0
