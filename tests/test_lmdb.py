"""LMDB stage: records decode to the arrays written, order/keys contract, augmentation only on
train, means, and a run killed part-way that re-runs to the same records."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest

from facs.caffe import caffe_pb2
from facs.caffe.io import read_blobproto as read_mean
from facs.caffe.lmdb import read_pair, record_hashes
from facs.datasets.clips import Clip, frame_labels
from facs.preprocess.augment import Transform, apply
from facs.preprocess.records import elliptic_mask, flow_stack, median_reference

CONFIGS = ("faithful", "best")
PARTS = ("train", "val", "test")


def _manifest(work: Path, config: str, name: str) -> dict:
    return json.loads((work / "lmdb" / config / f"{name}.json").read_text())


def _raw_records(path: Path) -> list[tuple[str, caffe_pb2.Datum]]:
    """Decode with lmdb + the project's caffe_pb2 directly (not through facs.lmdb_io)."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    out = []
    with env.begin() as txn:
        for k, v in txn.cursor():
            d = caffe_pb2.Datum()
            d.ParseFromString(v)
            out.append((k.decode(), d))
    env.close()
    return out


def _index_clips(work: Path) -> tuple[dict[str, dict], list[str]]:
    index = json.loads((work / "index.json").read_text())
    return {c["id"]: c for c in index["clips"]}, index["labels"]


def test_val_records_decode_to_the_arrays_written(small_work):
    clips, labels = _index_clips(small_work)
    out = small_work / "lmdb" / "faithful"
    m = _manifest(small_work, "faithful", "val_spatial")
    recs = _raw_records(out / "val_spatial")
    lrecs = _raw_records(out / "val_spatial_labels")
    assert len(recs) == m["count"] == len(m["records"]) > 0
    for (key, d), (lkey, ld), (cid, t, aug) in zip(recs, lrecs, m["records"], strict=True):
        assert key == lkey and aug == "" and key.endswith(f"_{cid}_{t:05d}")
        crop = np.load(small_work / "faces" / f"{cid}.npy", mmap_mode="r")[t]
        assert (d.channels, d.height, d.width) == (3, 72, 72)
        got = np.frombuffer(d.data, np.uint8).reshape(3, 72, 72)
        assert np.array_equal(got, crop.transpose(2, 0, 1))
        y = frame_labels(Clip.from_json(clips[cid]), labels, "span")[t]
        assert (ld.channels, ld.height, ld.width) == (len(labels), 1, 1)
        assert np.array_equal(np.asarray(ld.float_data), y.astype(np.float32))
    # flow: the frame's stride-1 xy stack
    fm = _manifest(small_work, "faithful", "val_flow")
    frecs = _raw_records(out / "val_flow")
    for (_key, d), (cid, t, _aug) in list(zip(frecs, fm["records"], strict=True))[::7]:
        flows = np.load(small_work / "flow" / "s1" / f"{cid}.npy", mmap_mode="r")
        got = np.frombuffer(d.data, np.uint8).reshape(d.channels, d.height, d.width)
        assert np.array_equal(got, flow_stack(flows, t, 1, "xy"))


def test_spatial_and_flow_eval_records_line_up(small_work):
    for config in CONFIGS:
        for part in ("val", "test"):
            s = _manifest(small_work, config, f"{part}_spatial")
            f = _manifest(small_work, config, f"{part}_flow")
            assert s["records"] == f["records"]  # same (clip, frame), same order
            keys, _, ys = read_pair(
                small_work / "lmdb" / config / f"{part}_spatial",
                small_work / "lmdb" / config / f"{part}_spatial_labels",
            )
            fkeys, _, fys = read_pair(
                small_work / "lmdb" / config / f"{part}_flow",
                small_work / "lmdb" / config / f"{part}_flow_labels",
            )
            assert keys == fkeys and np.array_equal(ys, fys)
            # (clip, frame) order: keys sort in record order, frames rise within a clip
            order = [(s["clips"].index(c), t) for c, t, _ in s["records"]]
            assert order == sorted(order)
    assert _manifest(small_work, "best", "val_flow")["shape"] == [20, 72, 72]
    assert _manifest(small_work, "best", "val_spatial")["shape"] == [6, 72, 72]


def test_augmentation_only_on_train(small_work):
    split = json.loads((small_work / "split.json").read_text())
    clips, _ = _index_clips(small_work)
    for config in CONFIGS:
        for part in PARTS:
            for stream in ("spatial", "flow"):
                m = _manifest(small_work, config, f"{part}_{stream}")
                augs = {a for _, _, a in m["records"]}
                if part == "train" and stream == "spatial":
                    assert augs - {""} and augs <= {"", "r-6", "r-3", "r+3", "r+6", "b-40"} | {
                        "b-20",
                        "b+20",
                    }
                    originals = sum(a == "" for _, _, a in m["records"])
                    assert m["count"] == 3 * originals  # quick: per_frame 2 copies each
                else:
                    assert augs == {""}
                subjects = {clips[c]["subject"] for c in m["clips"]}
                assert subjects <= set(split["parts"][part])


def test_train_is_shuffled_and_keys_sort_in_record_order(small_work):
    m = _manifest(small_work, "faithful", "train_spatial")
    keys, _, _ = read_pair(
        small_work / "lmdb/faithful/train_spatial",
        small_work / "lmdb/faithful/train_spatial_labels",
        limit=None,
    )
    assert keys == sorted(keys) and [int(k[:8]) for k in keys] == list(range(len(keys)))
    assert [k.split("_", 1)[1] for k in keys][:20] == [
        f"{c}_{t:05d}" + (f"_{a}" if a else "") for c, t, a in m["records"][:20]
    ]
    clips_in_order = [c for c, _, _ in m["records"]]
    runs = sum(1 for a, b in zip(clips_in_order, clips_in_order[1:], strict=False) if a != b)
    assert runs > len(m["clips"]) * 5  # clips interleave: shuffled, not in clip order


def test_augmented_records_keep_the_mask(small_work):
    m = _manifest(small_work, "best", "train_spatial")
    keys, x, _ = read_pair(
        small_work / "lmdb/best/train_spatial", small_work / "lmdb/best/train_spatial_labels"
    )
    mask = elliptic_mask(72).astype(bool)
    seen = set()
    for i, (cid, t, aug) in enumerate(m["records"]):
        if aug[:1] in seen or not aug:
            continue
        seen.add(aug[0])
        crops = np.load(small_work / "faces" / f"{cid}.npy", mmap_mode="r")
        base = np.concatenate(
            [crops[t], np.clip(crops[t] - median_reference(crops).astype(int) + 128, 0, 255)],
            axis=2,
        ).astype(np.uint8)
        want = apply(base, Transform("rot" if aug[0] == "r" else "bright", float(aug[1:])), mask)
        got = x[i].transpose(1, 2, 0)
        assert np.array_equal(got, want)
        assert np.all(got[~mask][:, :3] == 0) and np.all(got[~mask][:, 3:] == 128)
        if aug[0] == "b":  # brightness: colour shifted inside the mask, reference unchanged
            diff = got[mask][:, :3].astype(int) - base[mask][:, :3].astype(int)
            unclipped = (base[mask][:, :3] > 45) & (base[mask][:, :3] < 210)
            assert np.all(diff[unclipped] == int(aug[1:]))
            assert np.array_equal(got[..., 3:], base[..., 3:])
    assert seen == {"r", "b"}


def test_means_match_numpy(small_work):
    for config in CONFIGS:
        for stream in ("spatial", "flow"):
            out = small_work / "lmdb" / config
            _, x, _ = read_pair(out / f"train_{stream}", out / f"train_{stream}_labels")
            direct = x.astype(np.float64).mean(axis=(0, 2, 3))
            mean = read_mean(out / f"{stream}_mean.binaryproto")
            c = x.shape[1]
            assert mean.shape == (1, c, 72, 72)
            assert np.allclose(mean[0, :, 5, 7], direct, atol=1e-3)
            m = _manifest(small_work, config, f"train_{stream}")
            assert np.allclose(m["mean_per_channel"], direct, atol=1e-5)


def _copy_inputs(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for name in ("index.json", "split.json"):
        shutil.copy(src / name, dst / name)
    for name in ("faces", "flow"):
        os.symlink(src / name, dst / name)


def _lmdb_cmd(work: Path) -> list[str]:
    return [sys.executable, "-m", "facs.cli", "lmdb", "--profile", "quick", "--work", str(work)]


def test_killed_run_leaves_nothing_finished_and_reruns_identically(small_work, tmp_path):
    work = tmp_path / "killed"
    _copy_inputs(small_work, work)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _lmdb_cmd(work),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    target = work / "lmdb" / "faithful" / "train_spatial.tmp"
    deadline = time.time() + 60
    while not (target / "data.mdb").exists() and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.exists(), "the stage finished before it could be killed"
    assert not (work / "lmdb/faithful/train_spatial.json").exists()
    assert not (work / "lmdb/faithful/train_spatial").exists()

    res = subprocess.run(_lmdb_cmd(work), capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert re.search(r"removed [12] unfinished", res.stdout), res.stdout
    assert not list((work / "lmdb").glob("*/*.tmp"))
    for config in CONFIGS:
        for part in PARTS:
            for stream in ("spatial", "flow"):
                for suffix in ("", "_labels"):
                    name = f"{part}_{stream}{suffix}"
                    a = record_hashes(small_work / "lmdb" / config / name)
                    b = record_hashes(work / "lmdb" / config / name)
                    assert a == b, f"{config}/{name}"
    # a third run finds everything finished and writes nothing
    res = subprocess.run(_lmdb_cmd(work), capture_output=True, text=True, env=env)
    assert "0 databases built, 12 already done" in res.stdout


@pytest.mark.parametrize("bad", ["no_split", "no_faces"])
def test_missing_inputs_are_clean_errors(small_work, tmp_path, bad):
    from facs.cli import main

    work = tmp_path / "w"
    work.mkdir()
    shutil.copy(small_work / "index.json", work / "index.json")
    if bad == "no_faces":
        shutil.copy(small_work / "split.json", work / "split.json")
        # faces exist but the flow stage never ran
        os.symlink(small_work / "faces", work / "faces")
    code = main(["lmdb", "--profile", "quick", "--work", str(work), "--stream", "flow"])
    assert code == 2


def test_flow_only_config_with_layout_x(small_work):
    from facs.preprocess.lmdb import build
    from facs.profile import load_profile

    profile = load_profile("quick")
    profile["lmdb"]["configs"]["flow_x"] = {"spatial": None, "flow": {"stride": 1, "layout": "x"}}
    results = build(small_work, profile, configs=["flow_x"])
    assert sorted(r["name"] for r in results) == [f"flow_x/{p}_flow" for p in sorted(PARTS)]
    out = small_work / "lmdb"
    keys_x, x, _ = read_pair(out / "flow_x/val_flow", out / "flow_x/val_flow_labels")
    keys_xy, xy, _ = read_pair(out / "faithful/val_flow", out / "faithful/val_flow_labels")
    assert keys_x == keys_xy and x.shape[1] == 10
    assert np.array_equal(x, xy[:, 0::2])  # the x channels of the interleaved xy stack
