"""`facs geometry` on a small synthetic corpus: dlib finds the drawn faces, per-AU F1 of the
rules and the learned classifier, scores aligned with the CNN streams' records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facs.cli import main


@pytest.fixture(scope="module")
def gwork(small_corpus, tmp_path_factory) -> Path:
    from facs.datasets.index import build_index, write_index
    from facs.datasets.split import make_split
    from facs.fileio import write_json

    work = tmp_path_factory.mktemp("gwork")
    index = build_index(small_corpus, mode="span", progress=False)
    write_index(index, work / "index.json")
    write_json(work / "split.json", make_split(index, seed=0))
    return work


def test_report_scores_and_model_stream(gwork, capsys):
    from facs.datasets.index import load_index
    from facs.datasets.split import load_split
    from facs.evaluation.scores import Scores, load_scores, save_scores
    from facs.preprocess.workdir import parse_record_key
    from facs.training.landmark_stream import part_scores

    index, split = load_index(gwork / "index.json"), load_split(gwork / "split.json")
    test_clips = [c for c in index.clips if c.subject in set(split["parts"]["test"])]
    # a CNN stream's scores for some test frames (every 3rd frame, LMDB key format)
    recs = [(c.id, t) for c in test_clips for t in range(0, c.frames, 3)]
    keys = [f"{i:08d}_{c}_{t:05d}" for i, (c, t) in enumerate(recs)]
    L = len(index.labels)
    zeros = np.zeros((len(keys), L))
    save_scores(gwork / "scores/best/spatial_test.npz", Scores(keys, zeros, zeros, index.labels))

    assert (
        main(
            [
                "geometry",
                "--work",
                str(gwork),
                "--config",
                "best",
                "--models",
                str(gwork / "models"),
                "--profile",
                "quick",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "rules" in out and "learned" in out and "macro" in out

    # dlib found the drawn faces on (nearly) every frame
    pts = [np.load(p) for p in (gwork / "geometry").glob("*.landmarks.npy")]
    found = np.mean([np.isfinite(p).all(axis=(1, 2)).mean() for p in pts])
    assert found > 0.95

    rep = json.loads((gwork / "geometry/report.json").read_text())
    assert set(rep["methods"]) == {"rules", "learned"}
    for m in rep["methods"].values():
        assert set(m["per_label"]) == set(index.labels)
        assert 0 <= (m["summary"]["f1_macro"] or 0) <= 1

    geo = load_scores(gwork / "scores/best/geometry_test.npz")
    assert geo.keys == keys  # same records, same order
    all_keys, all_probs, _ = part_scores(index, split, "test", gwork, classifier=_clf(gwork))
    row = {k: i for i, k in enumerate(all_keys)}
    want = all_probs[[row[parse_record_key(k)[:2]] for k in keys]]
    np.testing.assert_allclose(geo.probs, want)
    assert geo.probs.shape == (len(keys), L) and geo.probs.max() > 0.5
    assert (gwork / "scores/best/geometry_val.npz").is_file()

    stream = json.loads((gwork / "models/quick-best/geometry/stream.json").read_text())
    assert stream["kind"] == "landmarks" and stream["method"] == "learned"
    assert (gwork / "models/quick-best/geometry" / stream["classifier"]).is_file()


def _clf(work: Path):
    from facs.analysis.geometry import LearnedGeometry

    return LearnedGeometry.load(work / "geometry/classifier.json")


def test_parse_key():
    from facs.preprocess.workdir import parse_record_key

    assert parse_record_key("00000012_S001-002_00045") == ("S001-002", 45, "")
    assert parse_record_key("00000012_my_clip_00045_r-6") == ("my_clip", 45, "r-6")
