"""Caffe files: prototxt parsing and errors, caffemodel V2/V1, binaryproto, solverstate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from facs.caffe import caffe_pb2, io
from facs.caffe.net import Net
from facs.errors import FacsError

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "prototxt" / "paper"
QUICK = ROOT / "prototxt" / "quick"


def test_every_shipped_prototxt_parses_and_round_trips(tmp_path):
    files = sorted(PAPER.glob("*.prototxt")) + sorted(QUICK.glob("*.prototxt"))
    assert len(files) == 18
    for f in files:
        reader = io.read_solver_prototxt if f.stem.endswith("solver") else io.read_net_prototxt
        msg = reader(f)
        out = tmp_path / f.name
        io.write_prototxt(out, msg)
        assert reader(out) == msg, f


def test_paper_solver_hyper_parameters():
    sp = io.read_solver_prototxt(PAPER / "alexnet_finetune_solver.prototxt")
    assert (sp.base_lr, sp.lr_policy, sp.gamma) == (pytest.approx(1e-4), "step", pytest.approx(0.1))
    assert (sp.stepsize, sp.max_iter) == (10000, 35000)
    assert (sp.momentum, sp.weight_decay) == (pytest.approx(0.9), pytest.approx(5e-4))
    sp = io.read_solver_prototxt(PAPER / "flownet_solver.prototxt")
    assert (sp.base_lr, sp.stepsize, sp.max_iter) == (pytest.approx(1e-3), 10000, 20000)
    net = io.read_net_prototxt(PAPER / "flownet_train_val.prototxt")
    assert {la.data_param.batch_size for la in net.layer if la.type == "Data"} == {15}


def test_parse_error_names_file_and_line(tmp_path):
    p = tmp_path / "bad.prototxt"
    p.write_text('name: "x"\nlayer {\n  name: "a"\n  type: "ReLU"\n  bottum: "data"\n}\n')
    with pytest.raises(FacsError, match=r"bad\.prototxt:5: .*no field named \"bottum\""):
        io.read_net_prototxt(p)
    with pytest.raises(FacsError, match="no such file"):
        io.read_net_prototxt(tmp_path / "missing.prototxt")
    (tmp_path / "bin.prototxt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(FacsError, match="not a text prototxt"):
        io.read_net_prototxt(tmp_path / "bin.prototxt")
    (tmp_path / "junk.caffemodel").write_bytes(b"\xff" * 64)
    with pytest.raises(FacsError, match="not a valid caffemodel"):
        io.read_caffemodel(tmp_path / "junk.caffemodel")


def test_layer_lines_skips_comments_and_strings():
    text = (
        "# layer { in a comment\n"
        'name: "n { }"\n'
        "layer {\n"
        '  name: "a" # layer {\n'
        "  param { lr_mult: 1 }\n"
        "}\n"
        "\n"
        "layer{ name: 'b{' }\n"
        "layers {\n}\n"
    )
    assert io.layer_lines(text) == [3, 8, 9]


def test_legacy_input_fields_become_an_input_layer():
    net = text_format.Parse(
        'input: "data" input_dim: 2 input_dim: 3 input_dim: 8 input_dim: 8\n'
        'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }',
        caffe_pb2.NetParameter(),
    )
    io.upgrade_net(net)
    assert [la.type for la in net.layer] == ["Input", "ReLU"]
    assert list(net.layer[0].input_param.shape[0].dim) == [2, 3, 8, 8]
    assert Net(net).blob_shapes["r"] == (2, 3, 8, 8)


def _v1_model(w: np.ndarray, b: np.ndarray, fw: np.ndarray) -> caffe_pb2.NetParameter:
    """An old-style (2014) caffemodel: V1 `layers`, type enums, legacy 4-D blob fields."""
    net = caffe_pb2.NetParameter(name="old")
    conv = net.layers.add(name="conv1", type=caffe_pb2.V1LayerParameter.CONVOLUTION)
    conv.bottom.append("data")
    conv.top.append("conv1")
    conv.blobs_lr.extend([1, 2])
    conv.weight_decay.extend([1, 0])
    conv.convolution_param.num_output = 4
    conv.convolution_param.kernel_size.append(3)
    for arr, blob in ((w, conv.blobs.add()), (b, conv.blobs.add())):
        dims = (1,) * (4 - arr.ndim) + arr.shape
        blob.num, blob.channels, blob.height, blob.width = dims
        blob.data.extend(arr.ravel().tolist())
    relu = net.layers.add(name="relu1", type=caffe_pb2.V1LayerParameter.RELU)
    relu.bottom.append("conv1")
    relu.top.append("conv1")
    fc = net.layers.add(name="fc", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    fc.bottom.append("conv1")
    fc.top.append("fc")
    fc.inner_product_param.num_output = 5
    fc.inner_product_param.bias_term = False
    blob = fc.blobs.add()
    blob.num, blob.channels, blob.height, blob.width = 1, 1, *fw.shape  # IP weights as 1x1xNxK
    blob.data.extend(fw.ravel().tolist())
    return net


def test_v1_caffemodel_is_upgraded_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    fw = rng.normal(size=(5, 4 * 4 * 4)).astype(np.float32)
    path = tmp_path / "old.caffemodel"
    io.write_caffemodel(path, _v1_model(w, b, fw))

    model = io.read_caffemodel(path)
    assert len(model.layers) == 0
    assert [(la.name, la.type) for la in model.layer] == [
        ("conv1", "Convolution"),
        ("relu1", "ReLU"),
        ("fc", "InnerProduct"),
    ]
    conv = model.layer[0]
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    assert io.blob_shape(conv.blobs[0]) == (4, 2, 3, 3)

    deploy = text_format.Parse(
        'layer { name: "data" type: "Input" top: "data" '
        "input_param { shape { dim: 1 dim: 2 dim: 6 dim: 6 } } }\n"
        'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
        "convolution_param { num_output: 4 kernel_size: 3 } }\n"
        'layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" '
        "inner_product_param { num_output: 5 bias_term: false } }",
        caffe_pb2.NetParameter(),
    )
    net = Net(deploy)
    assert net.load_caffemodel(path) == ["conv1", "fc"]
    np.testing.assert_array_equal(net.layer("conv1").blobs[0].detach().numpy(), w)
    np.testing.assert_array_equal(net.layer("conv1").blobs[1].detach().numpy(), b)
    np.testing.assert_array_equal(net.layer("fc").blobs[0].detach().numpy(), fw)


def test_v1_text_prototxt_parses():
    text = (
        'input: "data" input_shape { dim: 1 dim: 1 dim: 4 dim: 4 }\n'
        'layers { name: "p" type: POOLING bottom: "data" top: "p" '
        "pooling_param { pool: AVE kernel_size: 2 stride: 2 } }\n"
    )
    net = io.upgrade_net(text_format.Parse(text, caffe_pb2.NetParameter()))
    assert [la.type for la in net.layer] == ["Input", "Pooling"]
    out = Net(net)(data=torch.arange(16.0).reshape(1, 1, 4, 4))
    assert out["p"].flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


def test_caffemodel_round_trip_and_shape_mismatch(tmp_path):
    torch.manual_seed(0)
    net = Net.from_prototxt(QUICK / "flownet_deploy.prototxt")
    path = tmp_path / "w.caffemodel"
    net.save_caffemodel(path)
    model = io.read_caffemodel(path)
    assert model.layer[1].name == "conv1" and len(model.layer[1].blobs) == 2
    torch.manual_seed(1)
    other = Net.from_prototxt(QUICK / "flownet_deploy.prototxt")
    copied = other.load_caffemodel(path)
    assert "conv1" in copied and "fc8" in copied
    for a, b in zip(net.learnable, other.learnable, strict=True):
        assert torch.equal(a.param, b.param), a.layer
    # Same net with other input channels: conv1's weights no longer fit.
    param = io.read_net_prototxt(QUICK / "flownet_deploy.prototxt")
    channels = param.layer[0].input_param.shape[0].dim[1]
    param.layer[0].input_param.shape[0].dim[1] = channels + 1
    shape = tuple(model.layer[1].blobs[0].shape.dim)
    with pytest.raises(
        FacsError, match=rf"layer 'conv1' blob 0 has shape \({', '.join(map(str, shape))}\)"
    ):
        Net(param).load_caffemodel(path)


def test_binaryproto_round_trip_and_legacy_fields(tmp_path):
    mean = np.random.default_rng(0).uniform(0, 255, size=(1, 3, 5, 4)).astype(np.float32)
    path = tmp_path / "mean.binaryproto"
    io.write_blobproto(path, mean)
    np.testing.assert_array_equal(io.read_blobproto(path), mean)
    blob = caffe_pb2.BlobProto.FromString(path.read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 5, 4)
    # A mean written by Caffe's old compute_image_mean: only the 4-D fields.
    old = caffe_pb2.BlobProto(num=1, channels=3, height=5, width=4)
    old.data.extend(mean.ravel().tolist())
    (tmp_path / "old.binaryproto").write_bytes(old.SerializeToString())
    np.testing.assert_array_equal(io.read_blobproto(tmp_path / "old.binaryproto"), mean)
    short = caffe_pb2.BlobProto(num=1, channels=3, height=5, width=5)
    short.data.extend(mean.ravel().tolist())
    (tmp_path / "short.binaryproto").write_bytes(short.SerializeToString())
    with pytest.raises(FacsError, match="short.binaryproto: blob of shape"):
        io.read_blobproto(tmp_path / "short.binaryproto")


def test_solverstate_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    history = [rng.normal(size=s).astype(np.float32) for s in [(4, 3, 2, 2), (4,), (7, 12)]]
    path = tmp_path / "snap_iter_40.solverstate"
    io.write_solverstate(path, 40, "snap_iter_40.caffemodel", history, current_step=2)
    state = io.read_solverstate(path)
    assert (state.iter, state.learned_net, state.current_step) == (
        40,
        "snap_iter_40.caffemodel",
        2,
    )
    for h, bp in zip(history, state.history, strict=True):
        np.testing.assert_array_equal(io.blob_to_array(bp), h)


def test_substitute_work():
    net = io.read_net_prototxt(QUICK / "alexnet_finetune_train_val.prototxt")
    io.substitute_work(net, "work/quick")
    sources = sorted(la.data_param.source for la in net.layer if la.type == "Data")
    # The layout `facs lmdb` writes (docs/formats.md): WORK/lmdb/<config>/{train,test}_<stream>.
    assert sources == [
        "work/quick/lmdb/best/test_spatial",
        "work/quick/lmdb/best/test_spatial_labels",
        "work/quick/lmdb/best/train_spatial",
        "work/quick/lmdb/best/train_spatial_labels",
    ]
    means = {la.transform_param.mean_file for la in net.layer if la.transform_param.mean_file}
    assert means == {"work/quick/lmdb/best/spatial_mean.binaryproto"}
    sp = io.substitute_work(io.read_solver_prototxt(QUICK / "flownet_solver.prototxt"), "/w")
    assert sp.snapshot_prefix == "/w/snapshots/flownet"


def test_field_numbers_are_caffes():
    """The numbers DESIGN.md section 3 lists: files stay interchangeable with BVLC Caffe."""
    want = {
        caffe_pb2.NetParameter: dict(
            name=1, layers=2, input=3, input_dim=4, input_shape=8, layer=100
        ),
        caffe_pb2.LayerParameter: dict(
            name=1,
            type=2,
            bottom=3,
            top=4,
            loss_weight=5,
            param=6,
            blobs=7,
            include=8,
            exclude=9,
            phase=10,
            transform_param=100,
            loss_param=101,
            accuracy_param=102,
            concat_param=104,
            convolution_param=106,
            data_param=107,
            dropout_param=108,
            eltwise_param=110,
            hdf5_data_param=112,
            image_data_param=115,
            inner_product_param=117,
            lrn_param=118,
            pooling_param=121,
            relu_param=123,
            sigmoid_param=124,
            slice_param=126,
            input_param=143,
        ),  # fmt: skip
        caffe_pb2.V1LayerParameter: dict(bottom=2, top=3, name=4, type=5, blobs=6),
        caffe_pb2.ParamSpec: dict(name=1, lr_mult=3, decay_mult=4),
        caffe_pb2.SolverState: dict(iter=1, learned_net=2, history=3, current_step=4),
    }
    for message, fields in want.items():
        got = {f: message.DESCRIPTOR.fields_by_name[f].number for f in fields}
        assert got == fields, message.DESCRIPTOR.name
