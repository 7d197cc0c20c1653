"""`facs analyze` on real video: OpenFace-style CSV, face presence, errors, several videos."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from facs.cli import main
from facs.video import probe, read_frames


@pytest.fixture(scope="module")
def analysed(examples_dir, tmp_path_factory):
    """One call on a folder of three clips plus a corrupt file: (exit code, stdout, out dir)."""
    src = tmp_path_factory.mktemp("videos")
    for name in ("single_face.mp4", "no_face.mp4", "face_noface.mov"):
        shutil.copy(examples_dir / name, src / name)
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    out = tmp_path_factory.mktemp("out")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        # the built-in landmark model: what a checkout without trained models uses, and the
        # one whose AU12 on this real smile the test checks (models/ may hold nets trained on
        # drawn faces)
        code = main(["analyze", str(src), "-o", str(out), "--model", "geometry", "--quiet"])
    return code, buf.getvalue(), out, src


def _decoded(path) -> int:
    return sum(1 for _ in read_frames(path))


def test_csv_layout_rows_and_timestamps(analysed):
    code, _, out, src = analysed
    df = pd.read_csv(out / "single_face.csv")
    assert list(df.columns[:4]) == ["frame", "timestamp", "confidence", "success"]
    p_cols = [c for c in df.columns if c.endswith("_p")]
    c_cols = [c for c in df.columns if c.endswith("_c")]
    assert "AU12_p" in p_cols and "AU25_p" in p_cols and "AU01_p" in p_cols
    assert [c[:-2] for c in p_cols] == [c[:-2] for c in c_cols]
    assert len(df) == _decoded(src / "single_face.mp4") == 72
    fps = probe(src / "single_face.mp4").fps
    np.testing.assert_allclose(df["timestamp"], df["frame"] / fps, atol=1e-4)
    assert (df["frame"] == np.arange(len(df))).all()
    assert df[p_cols].min().min() >= 0 and df[p_cols].max().max() <= 1
    assert set(np.unique(df[c_cols].to_numpy())) <= {0, 1}
    assert (df["AU12_c"] == (df["AU12_p"] >= 0.5)).all()
    assert df["success"].all()
    assert df.loc[25:60, "AU12_c"].mean() > 0.9 and df.loc[0:11, "AU12_c"].mean() < 0.1


def test_no_face_every_row_unsuccessful_with_message(analysed):
    code, stdout, out, src = analysed
    df = pd.read_csv(out / "no_face.csv")
    assert len(df) == _decoded(src / "no_face.mp4")
    assert (df["success"] == 0).all() and (df["confidence"] == 0).all()
    assert (df.filter(like="_p") == 0).all().all()
    assert "no_face.mp4" in stdout and "no face was found" in stdout


def test_success_follows_the_face(analysed):
    _, _, out, src = analysed
    df = pd.read_csv(out / "face_noface.csv")
    assert len(df) == _decoded(src / "face_noface.mov") == 169
    s = df["success"].to_numpy()
    # The face is there for the first 72 frames, then leaves (DESIGN.md §5).
    assert abs(int(s.sum()) - 72) <= 3
    assert s[:65].all() and not s[80:].any()
    assert np.count_nonzero(np.diff(s)) == 1


def test_corrupt_video_named_others_processed_exit_nonzero(analysed, capsys):
    code, stdout, out, _ = analysed
    assert code == 2
    assert "broken.mp4" in stdout  # the closing line lists the failed videos
    assert sorted(p.name for p in out.iterdir()) == [
        ".facs-analyze.json",  # the batch's manifest (resumable runs)
        "face_noface.csv",
        "facs-summary.csv",  # one row per input, the broken one with its error
        "no_face.csv",
        "single_face.csv",
    ]
    rows = (out / "facs-summary.csv").read_text().splitlines()
    assert len(rows) == 5 and any("broken.mp4" in r and "broken" in r.split(",")[6] for r in rows)


def test_json_format_and_single_output_file(examples_dir, tmp_path, capsys):
    target = tmp_path / "result.json"
    code = main(
        [
            "analyze",
            str(examples_dir / "single_face.mp4"),
            "-o",
            str(target),
            "--format",
            "json",
            "--streams",
            "geometry",
            "--quiet",
        ]
    )
    assert code == 0
    r = json.loads(target.read_text())
    assert r["frames"] == len(r["per_frame"]) == 72
    assert r["streams"] == ["geometry"]
    f = r["per_frame"][40]
    assert set(f) >= {"index", "time", "face", "probs", "top5"}
    assert len(f["probs"]) == len(r["labels"])
    assert f["top5"][0]["code"] in ("12", "25")


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing.mp4")]) == 2
    assert "missing.mp4" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path), "--streams", "spatial"]) == 2  # empty folder
    video = tmp_path / "x.mp4"
    video.write_bytes(b"x")
    assert main(["analyze", str(video), "--model", "geometry", "--streams", "flow"]) == 2
    assert "no flow stream" in capsys.readouterr().err
    assert main(["analyze", str(video), str(video), "-o", str(tmp_path / "a.csv")]) == 2
    assert "output folder" in capsys.readouterr().err
