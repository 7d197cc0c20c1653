"""Caffe Data layer on real LMDBs: crop/mirror/mean semantics, lockstep of image + label LMDBs."""

from __future__ import annotations

import itertools
from pathlib import Path

import lmdb
import numpy as np
import pytest
from google.protobuf import text_format

from facs.caffe import caffe_pb2
from facs.caffe.data_layer import make_data_layer
from facs.errors import FacsError

N, C, H, W, L = 10, 3, 6, 8, 3
# Random pixels: every crop/flip of every record is unique, so `identify` can invert it.
IMAGES = np.random.default_rng(1).integers(0, 256, (N, C, H, W), dtype=np.uint8)


def write_lmdbs(root: Path) -> tuple[Path, Path]:
    """Image LMDB (record i = IMAGES[i]) and its label LMDB (float_data = [i, 2i, 3i])."""
    img, lab = root / "img_lmdb", root / "lab_lmdb"
    for path, make in ((img, _image_datum), (lab, _label_datum)):
        env = lmdb.open(str(path), map_size=1 << 24)
        with env.begin(write=True) as txn:
            for i in range(N):
                txn.put(f"{i:08d}_clip_{i:05d}".encode(), make(i).SerializeToString())
        env.close()
    return img, lab


def _image_datum(i: int) -> caffe_pb2.Datum:
    return caffe_pb2.Datum(channels=C, height=H, width=W, data=IMAGES[i].tobytes(), label=i)


def _label_datum(i: int) -> caffe_pb2.Datum:
    return caffe_pb2.Datum(channels=L, height=1, width=1, float_data=[i, 2 * i, 3 * i])


def layer(text: str) -> caffe_pb2.LayerParameter:
    return text_format.Parse(text, caffe_pb2.LayerParameter())


def data_layer(source: Path, phase: str, transform: str = "", batch: int = 4, tops=("data",)):
    tops_txt = " ".join(f'top: "{t}"' for t in tops)
    p = layer(
        f'name: "d_{source.name}" type: "Data" {tops_txt} '
        f'data_param {{ source: "{source.name}" batch_size: {batch} backend: LMDB }} '
        f"transform_param {{ {transform} }}"
    )
    return make_data_layer(p, phase, source.parent)


def identify(y: np.ndarray, crop: int, mean: np.ndarray | None, scale: float = 1.0):
    """Which (record, h offset, w offset, flip) produced the transformed image y."""
    hits = []
    for i, ho, wo, flip in itertools.product(range(N), range(H - crop + 1), range(W - crop + 1),
                                             (False, True)):  # fmt: skip
        x = IMAGES[i][:, ho : ho + crop, wo : wo + crop].astype(np.float32)
        if mean is not None:
            x = x - (mean if mean.shape[1] == 1 else mean[:, ho : ho + crop, wo : wo + crop])
        x = x * np.float32(scale)
        if flip:
            x = x[:, :, ::-1]
        if np.array_equal(x, y):
            hits.append((i, ho, wo, flip))
    assert len(hits) == 1, hits
    return hits[0]


def test_train_crop_mirror_lockstep_and_wraparound(tmp_path):
    img, lab = write_lmdbs(tmp_path)
    d = data_layer(img, "TRAIN", "crop_size: 4 mirror: true", tops=("data", "label"))
    y = data_layer(lab, "TRAIN")
    assert d.top_shapes == [(4, C, 4, 4), (4,)]
    assert y.top_shapes == [(4, L, 1, 1)]
    seen_offsets, seen_flips, order = set(), set(), []
    for _ in range(5):  # 20 records: two passes over the 10
        data, label = d.next()
        (ylab,) = y.next()
        assert tuple(data.shape) == (4, C, 4, 4) and tuple(ylab.shape) == (4, L, 1, 1)
        for j in range(4):
            i, ho, wo, flip = identify(data[j].numpy(), 4, None)
            order.append(i)
            seen_offsets.add((ho, wo))
            seen_flips.add(flip)
            assert label[j].item() == i  # Datum.label on the second top
            assert ylab[j, :, 0, 0].tolist() == [i, 2 * i, 3 * i]  # label LMDB in lockstep
    assert order == list(range(N)) * 2  # key order, wrapping around
    assert seen_flips == {False, True}
    assert len(seen_offsets) > 3  # random crops, not one fixed offset


def test_test_phase_centre_crop_no_mirror(tmp_path):
    img, _ = write_lmdbs(tmp_path)
    d = data_layer(img, "TEST", "crop_size: 4 mirror: true", batch=5)
    for _ in range(2):
        (data,) = d.next()
        for j in range(5):
            _, ho, wo, flip = identify(data[j].numpy(), 4, None)
            assert (ho, wo, flip) == ((H - 4) // 2, (W - 4) // 2, False)


def test_mean_file_is_cropped_like_the_image(tmp_path):
    from facs.caffe.io import write_blobproto

    img, _ = write_lmdbs(tmp_path)
    mean = np.random.default_rng(0).uniform(0, 30, (1, C, H, W)).astype(np.float32)
    write_blobproto(tmp_path / "mean.binaryproto", mean)
    d = data_layer(img, "TRAIN", 'crop_size: 5 mirror: true mean_file: "mean.binaryproto"')
    flips = set()
    for _ in range(3):
        (data,) = d.next()
        for j in range(4):
            flips.add(identify(data[j].numpy(), 5, mean[0])[3])
    assert flips == {False, True}


def test_mean_value_and_scale(tmp_path):
    img, _ = write_lmdbs(tmp_path)
    d = data_layer(img, "TEST", "mean_value: 10 mean_value: 20 mean_value: 30 scale: 0.5")
    (data,) = d.next()
    mv = np.array([10, 20, 30], np.float32).reshape(C, 1, 1)
    expect = (IMAGES[2].astype(np.float32) - mv) * np.float32(0.5)
    np.testing.assert_array_equal(data[2].numpy(), expect)


def test_batches_repeat_under_the_same_seed_and_seek(tmp_path):
    import torch

    img, _ = write_lmdbs(tmp_path)
    torch.manual_seed(3)
    a = data_layer(img, "TRAIN", "crop_size: 4 mirror: true")
    first = [a.next()[0] for _ in range(4)]
    torch.manual_seed(3)
    b = data_layer(img, "TRAIN", "crop_size: 4 mirror: true")
    b.seek(2)  # resume: batch 2 without reading 0 and 1
    assert torch.equal(b.next()[0], first[2])
    assert torch.equal(b.next()[0], first[3])
    torch.manual_seed(4)
    c = data_layer(img, "TRAIN", "crop_size: 4 mirror: true")
    assert not all(torch.equal(c.next()[0], f) for f in first)


def test_missing_source_names_layer_and_path(tmp_path):
    with pytest.raises(FacsError, match=r"layer 'd_nowhere_lmdb'.*nowhere_lmdb"):
        data_layer(tmp_path / "nowhere_lmdb", "TRAIN")


def test_mean_of_crop_size_is_subtracted_after_cropping(tmp_path):
    from facs.caffe.io import write_blobproto

    img, _ = write_lmdbs(tmp_path)
    mean = np.random.default_rng(2).uniform(0, 30, (1, C, 4, 4)).astype(np.float32)
    write_blobproto(tmp_path / "mean4.binaryproto", mean)
    d = data_layer(img, "TEST", 'crop_size: 4 mean_file: "mean4.binaryproto"')
    (data,) = d.next()
    ho, wo = (H - 4) // 2, (W - 4) // 2
    expect = IMAGES[0][:, ho : ho + 4, wo : wo + 4].astype(np.float32) - mean[0]
    np.testing.assert_array_equal(data[0].numpy(), expect)
    bad = np.zeros((1, C, 5, 5), np.float32)
    write_blobproto(tmp_path / "bad.binaryproto", bad)
    with pytest.raises(FacsError, match="bad.binaryproto has shape"):
        data_layer(img, "TEST", 'crop_size: 4 mean_file: "bad.binaryproto"')
