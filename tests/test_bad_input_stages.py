"""Bad input to every stage, generated here: each case ends in exit status 2, one stderr line
that names the file (or the argument) and the problem, no traceback, and a previous output at
the same path intact. (Index cases: tests/test_bad_input.py.)"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mmi_helpers import facs_cli, write_avi

from facs.cli import main

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = b"a previous output, which must survive\n"


def run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def one_line(err: str, *needles: str) -> None:
    """One error line (a progress bar a stage drew before it failed is not a line of text)."""
    lines = [ln.split("\r")[-1] for ln in err.splitlines() if ln.strip()]
    lines = [ln for ln in lines if ln.strip() and "%|" not in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ----------------------------------------------------------------------------- inputs


def _still_as_mp4(d: Path, examples: Path) -> Path:
    shutil.copy(examples / "single_face.jpg", d / "holiday.mp4")
    return d / "holiday.mp4"


def _truncated_avi(d: Path, examples: Path) -> Path:
    full = write_avi(d / "full.avi", 144, (96, 72))
    data = full.read_bytes()
    (d / "cut.avi").write_bytes(data[: len(data) // 3])
    return d / "cut.avi"


def _text_avi(d: Path, examples: Path) -> Path:
    (d / "notes.avi").write_text("not a video\n" * 50)
    return d / "notes.avi"


def _empty_mp4(d: Path, examples: Path) -> Path:
    (d / "empty.mp4").write_bytes(b"")
    return d / "empty.mp4"


def _corrupt_jpg(d: Path, examples: Path) -> Path:
    (d / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    return d / "photo.jpg"


ANALYZE = {
    "still renamed .mp4": (_still_as_mp4, "not a video: a still image"),
    "video that decodes only in part": (_truncated_avi, "truncated"),
    "text named .avi": (_text_avi, "not a video"),
    "empty file": (_empty_mp4, "empty"),
    "corrupt image": (_corrupt_jpg, "not a readable image"),
}


@pytest.mark.parametrize("case", list(ANALYZE))
def test_analyze_bad_videos(tmp_path, examples_dir, case):
    make, problem = ANALYZE[case]
    bad = make(tmp_path, examples_dir)
    out = tmp_path / "out.csv"
    out.write_bytes(PREVIOUS)
    code, _, err = run(["analyze", bad, "-o", out, "--quiet"])
    assert code == 2
    one_line(err, str(bad), problem)
    assert out.read_bytes() == PREVIOUS


def test_analyze_a_partial_video_when_allowed(tmp_path, examples_dir):
    bad = _truncated_avi(tmp_path, examples_dir)
    code, _, err = run(["analyze", bad, "-o", tmp_path / "o.csv", "--quiet", "--allow-partial"])
    assert code == 0 and "WARNING" in err and "frames" in err and str(bad) in err


def _analyze_case(tmp_path, examples_dir, extra: list, expect: str, name_in_line: str = ""):
    clip = tmp_path / "single_face.mp4"
    shutil.copy(examples_dir / "single_face.mp4", clip)
    code, _, err = run(["analyze", clip, *extra, "--quiet"])
    assert code == 2
    one_line(err, expect, name_in_line)


def test_analyze_output_under_a_file(tmp_path, examples_dir):
    (tmp_path / "blocker").write_bytes(PREVIOUS)
    out = tmp_path / "blocker" / "r.csv"
    _analyze_case(tmp_path, examples_dir, ["-o", out], "is a file", str(out))
    assert (tmp_path / "blocker").read_bytes() == PREVIOUS


def test_analyze_output_is_a_folder(tmp_path, examples_dir):
    (tmp_path / "r.csv").mkdir()
    _analyze_case(tmp_path, examples_dir, ["-o", tmp_path / "r.csv"], "is a folder")


def test_analyze_model_with_a_bad_threshold(tmp_path, examples_dir):
    folder = tmp_path / "m"
    folder.mkdir()
    spec = {"format": "facs-model/2", "labels": ["12"], "thresholds": {"12": "high"},
            "streams": {"g": {"kind": "landmarks", "method": "rules"}}}  # fmt: skip
    (folder / "model.json").write_text(json.dumps(spec))
    _analyze_case(tmp_path, examples_dir, ["--model", folder], "thresholds must be numbers",
                  str(folder / "model.json"))  # fmt: skip


def test_analyze_unknown_model_and_stream(tmp_path, examples_dir):
    _analyze_case(tmp_path, examples_dir, ["--model", tmp_path / "nope"], "not a model folder")
    _analyze_case(tmp_path, examples_dir, ["--streams", "flow"], "no flow stream")


def test_analyze_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(["analyze", tmp_path / "empty", "--quiet"])
    assert code == 2
    one_line(err, str(tmp_path / "empty"), "holds no video")


def test_analyze_full_disk_keeps_the_old_csv(tmp_path, examples_dir, monkeypatch):
    """The write fails (ENOSPC) after the analysis: one line, the old CSV intact, no temp."""
    import errno
    import os

    import facs.fileio

    out = tmp_path / "out" / "r.csv"
    out.parent.mkdir()
    out.write_bytes(PREVIOUS)

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(facs.fileio.os, "replace", full)
    clip = tmp_path / "c.mp4"
    shutil.copy(examples_dir / "single_face.mp4", clip)
    code, _, err = run(["analyze", clip, "-o", out, "--model", "geometry", "--quiet"])
    assert code == 2
    one_line(err, str(out), "No space left on device")
    assert out.read_bytes() == PREVIOUS
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.csv"]


# ----------------------------------------------------------------------------- Caffe files


def _net(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "net.prototxt"
    p.write_text(text)
    return p


NET_INFO = {
    "missing file": (lambda d: d / "none.prototxt", "no such file"),
    "syntax error": (lambda d: _net(d, 'name: "x"\nlayer { name: "a" type: \n'), "net.prototxt:"),
    "unknown layer type": (
        lambda d: _net(
            d,
            'name: "x"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\n'
            'input_dim: 8\nlayer { name: "w" type: "Warp" bottom: "data" top: "y" }\n',
        ),
        "Warp",
    ),  # fmt: skip
    "binary file": (
        lambda d: (d / "b.prototxt").write_bytes(bytes(range(256))) and d / "b.prototxt",
        "not a text prototxt",
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(NET_INFO))
def test_net_info_bad_files(tmp_path, case):
    make, problem = NET_INFO[case]
    bad = make(tmp_path)
    code, _, err = run(["net-info", bad])
    assert code == 2
    one_line(err, problem)
    assert str(bad.name) in err


def _solver(tmp_path: Path, net: str) -> Path:
    p = tmp_path / "solver.prototxt"
    p.write_text(f'net: "{net}"\nbase_lr: 0.01\nmax_iter: 2\nsnapshot_prefix: "snap"\n')
    return p


def test_train_missing_solver_and_net(tmp_path):
    code, _, err = run(["train", "--solver", tmp_path / "none.prototxt"])
    assert code == 2
    one_line(err, "none.prototxt", "does not exist")
    solver = _solver(tmp_path, "missing_net.prototxt")
    code, _, err = run(["train", "--solver", solver])
    assert code == 2
    one_line(err, "missing_net.prototxt", "does not exist")


def test_train_bad_solver_field(tmp_path):
    p = tmp_path / "solver.prototxt"
    p.write_text('net: "n.prototxt"\nbase_learning_rate: 0.1\n')
    code, _, err = run(["train", "--solver", p])
    assert code == 2
    one_line(err, f"{p}:2")


@pytest.fixture(scope="module")
def lmdb_net(small_work, tmp_path_factory) -> dict:
    """A tiny trainable net over the corpus' val LMDB (a Data layer pair) and a previous run's
    log and CSV beside it."""
    d = tmp_path_factory.mktemp("trainnet")
    lm = small_work / "lmdb" / "faithful"
    n_labels = len(json.loads((lm / "val_spatial.json").read_text())["labels"])
    net = d / "net.prototxt"
    net.write_text(
        f'name: "tiny"\n'
        f'layer {{ name: "data" type: "Data" top: "data" data_param {{ source: "{lm}/val_spatial" '
        f"batch_size: 4 backend: LMDB }} transform_param {{ crop_size: 16 }} }}\n"
        f'layer {{ name: "label" type: "Data" top: "label" data_param {{ source: '
        f'"{lm}/val_spatial_labels" batch_size: 4 backend: LMDB }} }}\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
        f'inner_product_param {{ num_output: {n_labels} weight_filler {{ type: "xavier" }} }} }}\n'
        'layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "fc" bottom: "label" '
        'top: "loss" }\n'
    )
    solver = _solver(d, str(net))
    (d / "snap_train.log").write_bytes(PREVIOUS)
    (d / "snap_train.csv").write_bytes(PREVIOUS)
    return {"dir": d, "net": net, "solver": solver, "lmdb": lm}


def test_train_truncated_weights_keep_the_previous_log(lmdb_net):
    d = lmdb_net["dir"]
    bad = d / "half.caffemodel"
    bad.write_bytes(b"\x0a\x05tiny" + b"\xa2\x06\xff\xff\x03" + b"\x00" * 20)
    code, _, err = run(["train", "--solver", lmdb_net["solver"], "--weights", bad])
    assert code == 2
    one_line(err, str(bad))
    assert (d / "snap_train.log").read_bytes() == PREVIOUS
    assert (d / "snap_train.csv").read_bytes() == PREVIOUS


def test_train_missing_solverstate(lmdb_net):
    code, _, err = run(["train", "--solver", lmdb_net["solver"], "--resume", "none.solverstate"])
    assert code == 2
    one_line(err, "none.solverstate")


# ----------------------------------------------------------------------------- test-net


@pytest.fixture
def deploy(tmp_path) -> dict:
    from facs.training.standin import quick_inputs, stand_in_stream

    spec = stand_in_stream(tmp_path / "net", quick_inputs("faithful")["spatial"], 16, 0)
    out = tmp_path / "scores.npz"
    out.write_bytes(PREVIOUS)
    return {"deploy": tmp_path / "net" / spec.deploy, "weights": tmp_path / "net" / spec.weights,
            "out": out}  # fmt: skip


def _test_net(deploy: dict, data: Path, labels: Path, *extra) -> tuple[int, str]:
    files = ["--deploy", deploy["deploy"], "--weights", deploy["weights"]]
    code, _, err = run(
        ["test-net", *files, "--data", data, "--labels", labels, "--out", deploy["out"], *extra]
    )
    assert deploy["out"].read_bytes() == PREVIOUS or code == 0
    return code, err


def test_test_net_not_an_lmdb(small_work, deploy, tmp_path):
    lm = small_work / "lmdb" / "faithful"
    (tmp_path / "folder").mkdir()
    code, err = _test_net(deploy, tmp_path / "folder", lm / "val_spatial_labels")
    assert code == 2
    one_line(err, str(tmp_path / "folder"), "not an LMDB")


def test_test_net_corrupt_lmdb_file(small_work, deploy, tmp_path):
    lm = small_work / "lmdb" / "faithful"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "data.mdb").write_bytes(bytes(range(256)) * 64)
    code, err = _test_net(deploy, bad, lm / "val_spatial_labels")
    assert code == 2
    one_line(err, str(bad))


def test_test_net_lengths_differ(small_work, deploy):
    lm = small_work / "lmdb" / "faithful"
    code, err = _test_net(deploy, lm / "val_spatial", lm / "test_spatial_labels")
    assert code == 2
    one_line(err, "keys differ")


def test_test_net_bad_label_names(small_work, deploy, tmp_path):
    lm = small_work / "lmdb" / "faithful"
    names = tmp_path / "names.json"
    names.write_text("{not json")
    code, err = _test_net(deploy, lm / "val_spatial", lm / "val_spatial_labels",
                          "--label-names", names)  # fmt: skip
    assert code == 2
    one_line(err, str(names), "not valid JSON")


def test_test_net_out_under_a_file(small_work, deploy, tmp_path):
    lm = small_work / "lmdb" / "faithful"
    (tmp_path / "blocker").write_bytes(PREVIOUS)
    deploy = {**deploy, "out": tmp_path / "blocker" / "s.npz"}
    code, _, err = run(["test-net", "--deploy", deploy["deploy"], "--weights", deploy["weights"],
                        "--data", lm / "val_spatial", "--labels", lm / "val_spatial_labels",
                        "--out", deploy["out"]])  # fmt: skip
    assert code == 2
    one_line(err, str(deploy["out"]))
    assert (tmp_path / "blocker").read_bytes() == PREVIOUS


def test_a_corrupted_record_is_an_error_not_a_wrong_score(small_work, deploy, tmp_path):
    """One byte flipped inside a record's pixels: the checksum says so."""
    import lmdb

    src = small_work / "lmdb" / "faithful" / "val_spatial"
    copy = tmp_path / "val_spatial"
    shutil.copytree(src, copy)
    env = lmdb.open(str(copy), map_size=1 << 30)
    with env.begin(write=True) as txn:
        key, value = next(iter(txn.cursor()))
        value = bytearray(value)
        value[-100] ^= 0xFF
        txn.put(key, bytes(value))
    env.close()
    code, err = _test_net(deploy, copy, small_work / "lmdb" / "faithful" / "val_spatial_labels")
    assert code == 2
    one_line(err, str(copy), "corrupt")


# ----------------------------------------------------------------------------- stages on WORK


def _work(tmp_path: Path, small_work: Path, keep: tuple[str, ...]) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    for name in keep:
        src = small_work / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    return work


def test_flow_without_faces(tmp_path, small_work):
    work = _work(tmp_path, small_work, ("index.json", "split.json"))
    code, _, err = run(["flow", "--work", work])
    assert code == 2
    one_line(err, str(work / "faces"), "facs faces")


def test_lmdb_without_faces_builds_nothing(tmp_path, small_work):
    work = _work(tmp_path, small_work, ("index.json", "split.json"))
    code, _, err = run(["lmdb", "--work", work])
    assert code == 2
    one_line(err, str(work / "faces"), "facs faces")
    assert not (work / "lmdb").exists() or not any((work / "lmdb").rglob("data.mdb"))


def test_lmdb_without_flow(tmp_path, small_work):
    work = _work(tmp_path, small_work, ("index.json", "split.json", "faces"))
    code, _, err = run(["lmdb", "--work", work, "--stream", "flow"])
    assert code == 2
    one_line(err, str(work / "flow"), "facs flow")


@pytest.mark.parametrize(
    "args, expect",
    [
        (["lmdb", "--profile", "nonesuch"], "no such profile"),
        (["lmdb", "--config", "nonesuch"], "no lmdb config"),
        (["flow", "--strides", "a,b"], "--strides"),
        (["faces"], "no such split file"),
    ],
)
def test_stage_arguments(tmp_path, small_work, args, expect):
    keep = ("index.json",) if args[0] == "faces" else ("index.json", "split.json")
    work = _work(tmp_path, small_work, keep)
    if args[0] == "faces":
        (work / "index.json").unlink()
        expect = "no such index file"
    code, _, err = run([*args, "--work", work])
    assert code == 2
    one_line(err, expect)


def test_faces_of_a_truncated_clip_is_named_with_its_frame_counts(tmp_path, small_corpus):
    from facs.datasets.index import build_index, write_index
    from facs.datasets.split import make_split
    from facs.fileio import write_json

    root = tmp_path / "data"
    shutil.copytree(small_corpus / "Sessions" / "1", root / "Sessions" / "1")
    index = build_index(root, progress=False)  # probes the whole clip
    video = next((root / "Sessions" / "1").glob("*.avi"))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 3])
    work = tmp_path / "work"
    write_index(index, work / "index.json")
    write_json(work / "split.json", make_split(index, val=0, test=0))
    code, out, err = run(["faces", "--work", work])
    assert f"of the {index.clips[0].frames} frames the index expects" in out, out
    assert code == 2
    one_line(err, str(work), "no clip gave a face crop")


# ----------------------------------------------------------------------------- evaluate, fuse


def test_evaluate_truncated_scores(tmp_path, small_work):
    work = _work(tmp_path, small_work, ("index.json", "split.json"))
    scores = work / "scores" / "best"
    scores.mkdir(parents=True)
    np.savez(scores / "spatial_test.npz", keys=np.array(["a"]), probs=np.zeros((1, 1)))
    data = (scores / "spatial_test.npz").read_bytes()
    (scores / "spatial_test.npz").write_bytes(data[: len(data) // 2])
    code, _, err = run(["evaluate", "--work", work, "--config", "best"])
    assert code == 2
    one_line(err, str(scores / "spatial_test.npz"), "not a readable scores file")


def test_evaluate_fusion_json_not_json(tmp_path, small_work):
    from facs.evaluation.scores import Scores, save_scores

    work = _work(tmp_path, small_work, ("index.json", "split.json"))
    scores = work / "scores" / "best"
    y = np.zeros((4, 2), np.uint8)
    y[0] = 1
    save_scores(scores / "spatial_test.npz", Scores(list("abcd"), y * 0.9, y, ["1", "2"]))
    (scores / "fusion.json").write_text("{not json")
    code, _, err = run(["evaluate", "--work", work, "--config", "best"])
    assert code == 2
    one_line(err, str(scores / "fusion.json"), "not valid JSON")


def test_fuse_missing_scores(tmp_path, small_work):
    work = _work(tmp_path, small_work, ("index.json", "split.json"))
    code, _, err = run(["fuse", "--work", work, "--config", "best"])
    assert code == 2
    one_line(err, "spatial_val.npz", "no such scores file")


def test_the_real_command_in_a_subprocess(tmp_path, examples_dir):
    """The installed entry point behaves the same: exit 2, one line, no traceback."""
    bad = _still_as_mp4(tmp_path, examples_dir)
    res = facs_cli("analyze", bad, "-o", tmp_path / "o.csv", "--quiet")
    assert res.returncode == 2
    one_line(res.stderr, str(bad), "a still image")


def test_an_unexpected_failure_says_what_to_report(monkeypatch):
    import facs.datasets.split as split

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(split, "run", boom)
    code, _, err = run(["split", "index.json"])
    assert code == 1
    one_line(err, "internal error: ZeroDivisionError", "--debug")
