"""A tiny end-to-end run through the real stages: corpus -> index/split -> faces -> flow ->
LMDB -> the three trained streams -> fusion -> model folder -> evaluation and figures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from facs.cli import main
from facs.profile import load_profile

ITERS = 12


def _tiny_profile(tmp: Path) -> Path:
    """The quick profile, with fewer frames and a few SGD iterations per net."""
    p = load_profile("quick")
    p.pop("_path", None)
    p["name"] = "tiny"
    p["lmdb"]["train_frame_stride"] = 6
    p["lmdb"]["eval_frame_stride"] = 6
    p["lmdb"]["augment"]["per_frame"] = 1
    over = {"max_iter": ITERS, "test_interval": 0, "snapshot": 0, "display": 4, "stepsize": 1000}
    p["train"] = {
        s: {
            "prototxt_dir": "prototxt/quick",
            "batch": {"TRAIN": 16, "TEST": 16},
            "solver_overrides": dict(over),
        }
        for s in ("spatial", "onevsall", "flow")
    }
    p["train"]["onevsall"]["init_from"] = "spatial"
    p["train"]["onevsall"]["labels"] = 2  # the two most frequent labels: enough to test it
    p["train"]["onevsall"]["solver_overrides"]["max_iter"] = 3
    path = tmp / "tiny.json"
    path.write_text(json.dumps(p, indent=1))
    return path


def _cli(*args: str) -> None:
    assert main(list(args)) == 0, args


@pytest.fixture(scope="module")
def tiny_run(small_corpus: Path, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("pipeline")
    work, models = tmp / "work", tmp / "models"
    profile = str(_tiny_profile(tmp))
    common = ["--profile", profile, "--work", str(work)]
    _cli("index", str(small_corpus), "-o", str(work / "index.json"), "--quiet")
    _cli(
        "split",
        str(work / "index.json"),
        "-o",
        str(work / "split.json"),
        "--val",
        "0.25",
        "--test",
        "0.25",
    )
    _cli("faces", *common, "--workers", "2")
    _cli("flow", *common, "--workers", "2")
    _cli("lmdb", *common, "--workers", "2")
    for config in ("faithful", "best"):
        for stream in ("spatial", "flow", "onevsall"):
            _cli(
                "train-stream",
                *common,
                "--config",
                config,
                "--stream",
                stream,
                "--models",
                str(models),
            )
        _cli("fuse", *common, "--config", config, "--models", str(models))
    _cli("evaluate", *common, "--models", str(models))
    return {"work": work, "models": models, "profile": profile, "common": common}


def test_split_never_shares_a_subject(tiny_run):
    """The test records' subjects are never in the training split, nor in the training LMDB."""
    work = tiny_run["work"]
    split = json.loads((work / "split.json").read_text())["parts"]
    assert not set(split["train"]) & set(split["test"])
    assert not set(split["train"]) & set(split["val"])
    from facs.evaluation.scores import load_scores

    test = load_scores(work / "scores" / "best" / "spatial_test.npz")
    assert set(test.subjects) and set(test.subjects) <= set(split["test"])
    manifest = json.loads((work / "lmdb" / "best" / "train_spatial.json").read_text())
    index = json.loads((work / "index.json").read_text())
    subject = {c["id"]: str(c["subject"]) for c in index["clips"]}
    train_subjects = {subject[r[0]] for r in manifest["records"]}
    assert train_subjects <= set(split["train"])
    assert not train_subjects & set(test.subjects)


def test_model_folder_and_figures(tiny_run):
    folder = tiny_run["models"] / "tiny-best"
    spec = json.loads((folder / "model.json").read_text())
    assert set(spec["streams"]) == {"spatial", "flow"}
    assert spec["trained_on"]["config"] == "best"
    assert spec["trained_on"]["faces"] == "synthetic drawn faces (facs synth)"
    assert spec["format"] == "facs-model/2"
    assert spec["streams"]["spatial"]["input"]["reference"] == "median"  # frame + frame - median
    assert spec["streams"]["flow"]["input"]["stride"] == 3
    assert set(spec["thresholds"]) == set(spec["labels"])
    assert spec["fusion"]["method"] in ("average", "weighted", "logreg", "svm", "temporal")
    assert spec["onevsall"] and all(n["kind"] == "cnn" for n in spec["onevsall"].values())
    assert "fused" in spec["metrics"] and "baseline" in spec["metrics"]
    from facs.analysis.model import load_model

    model = load_model(folder)
    assert model.labels == spec["labels"]
    assert model.streams["spatial"].input.channels == 6
    report = tiny_run["work"] / "report"
    for config in ("best",):
        for fig in (
            "fig1_label_distribution",
            "fig5_precision",
            "fig6_recall",
            "fig7_summary",
            "f1",
        ):
            png = report / config / f"{fig}.png"
            assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
        m = json.loads((report / config / "metrics.json").read_text())
        assert set(m["streams"]) == {"spatial", "onevsall", "flow", "fused", "average"}
        for s in m["streams"].values():
            assert 0.0 <= s["fixed"]["summary"]["hamming_score"] <= 1.0
        # the plain-average row is the mean of the two streams' test probabilities at 0.5
        from facs.evaluation.metrics import evaluate_scores
        from facs.evaluation.scores import load_scores

        sp, fl = (
            load_scores(tiny_run["work"] / "scores" / config / f"{s}_test.npz")
            for s in ("spatial", "flow")
        )
        avg = evaluate_scores(sp.labels, (sp.probs + fl.probs) / 2, m["labels"], 0.5)
        assert m["streams"]["average"]["fixed"]["summary"] == avg["summary"]
    table = (report / "table.md").read_text()
    assert "(iv) Fusion" in table and "Frequency baseline" in table
    assert "(iv) Fusion by plain averaging" in table


def test_same_seed_same_metrics(tiny_run, tmp_path):
    """Retraining from scratch with the same seed gives a byte-identical metrics JSON (the
    one-vs-all scores of the first run stay in WORK/scores: its nets are the slow part)."""
    work = tiny_run["work"]
    before = (work / "report" / "best" / "metrics.json").read_bytes()
    models2 = tmp_path / "models"
    for stream in ("spatial", "flow"):
        _cli(
            "train-stream",
            *tiny_run["common"],
            "--config",
            "best",
            "--stream",
            stream,
            "--models",
            str(models2),
        )
    _cli("fuse", *tiny_run["common"], "--config", "best", "--models", str(models2))
    out = tmp_path / "report"
    _cli(
        "evaluate",
        *tiny_run["common"],
        "--config",
        "best",
        "--models",
        str(models2),
        "--out",
        str(out),
    )
    assert (out / "best" / "metrics.json").read_bytes() == before  # small: a readable diff
    w1 = (tiny_run["models"] / "tiny-best" / "spatial" / "weights.caffemodel").read_bytes()
    w2 = (models2 / "tiny-best" / "spatial" / "weights.caffemodel").read_bytes()
    # Compare digests: pytest's diff of two large unequal byte strings takes hours.
    assert hashlib.sha256(w1).hexdigest() == hashlib.sha256(w2).hexdigest()


def test_model_runs_the_streams_its_fusion_was_fitted_on(tiny_run, tmp_path):
    """A stream folder left from an earlier run (here geometry/) is not put in model.json, so
    prediction runs the streams the learned fusion expects."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_run["models"] / "tiny-best", models / "tiny-best")
    stale = models / "tiny-best" / "geometry"
    stale.mkdir()
    (stale / "stream.json").write_text(json.dumps({"kind": "landmarks", "method": "rules"}))
    _cli("fuse", *tiny_run["common"], "--config", "best", "--models", str(models))
    spec = json.loads((models / "tiny-best" / "model.json").read_text())
    assert list(spec["streams"]) == spec["fusion"]["streams"] == ["spatial", "flow"]


def test_a_model_of_drawn_faces_says_so(tiny_run, examples_dir, tmp_path, capsys):
    """Named explicitly, a model trained on the synthetic corpus runs, and the summary and the
    JSON say it learned drawn faces."""
    import cv2

    from facs.video import probe, read_frames

    src = examples_dir / "single_face.mp4"
    clip = tmp_path / "short.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), probe(src).fps, (640, 360))
    for i, frame in enumerate(read_frames(src)):
        if i < 20:
            vw.write(frame)
    vw.release()
    out = tmp_path / "r.json"
    folder = str(tiny_run["models"] / "tiny-best")
    _cli("analyze", str(clip), "--model", folder, "-o", str(out), "--format", "json", "--quiet")
    printed = capsys.readouterr().out
    assert "trained on synthetic drawn faces" in printed
    assert "WARNING: this model learned synthetic drawn faces" in printed
    r = json.loads(out.read_text())
    assert r["trained_on"].startswith("synthetic drawn faces") and r["frames"] == 20
