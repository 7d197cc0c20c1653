"""DISFA reader: per-frame intensities -> events -> the same per-frame labels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from mmi_helpers import facs_cli, write_avi

from facs.datasets import disfa
from facs.datasets.clips import Clip, frame_intensity, frame_labels
from facs.datasets.index import build_index, load_index
from facs.datasets.runs import runs_to_events
from facs.errors import FacsError


def _disfa_tree(root: Path, intensities: dict[str, dict[str, list[int]]], frames: int = 24):
    for subject, aus in intensities.items():
        folder = root / "ActionUnit_Labels" / subject
        folder.mkdir(parents=True, exist_ok=True)
        for code, values in aus.items():
            lines = [f"{i + 1},{v}" for i, v in enumerate(values)]
            (folder / f"{subject}_au{code}.txt").write_text("\n".join(lines) + "\n")
        write_avi(root / "Videos_LeftCamera" / f"LeftVideo{subject}_comp.avi", frames)
    return root


AU12 = [0, 0, 1, 2, 3, 5, 4, 2, 1, 0, 0, 2, 2, 0] + [0] * 10
AU25 = [3] * 5 + [0] * 19


def test_runs_to_events_roundtrip():
    active = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1], bool)
    intensity = np.array([0, 2, 4, 0, 0, 3, 0, 2, 5, 3])
    ev = runs_to_events(active, intensity)
    assert ev == [(1, 2, 2), (5, 5, 5), (7, 8, 9)]
    clip = Clip("c", "s", "s", "v", "x", 20.0, 10, 8, 8, {"1": ev})
    assert np.array_equal(frame_labels(clip, ["1"], "span")[:, 0].astype(bool), active)
    assert runs_to_events(np.zeros(5, bool)) == []


def test_disfa_index_threshold_and_autodetect(tmp_path):
    root = _disfa_tree(
        tmp_path / "disfa", {"SN001": {"12": AU12, "25": AU25}, "SN002": {"1": AU12}}
    )
    index = build_index(root, progress=False)
    assert index.dataset == "disfa" and index.labels == ["1", "12", "25"]
    c = index.clip("SN001-left")
    assert (c.subject, c.frames, c.video) == (
        "SN001",
        24,
        "Videos_LeftCamera/LeftVideoSN001_comp.avi",
    )
    y = index.frame_labels(c)
    assert np.flatnonzero(y[:, 1]).tolist() == [3, 4, 5, 6, 7, 11, 12]  # intensity >= 2
    assert np.flatnonzero(y[:, 2]).tolist() == [0, 1, 2, 3, 4]
    assert c.events["12"][0] == (3, 5, 7)  # apex at the most intense frame

    out = tmp_path / "w" / "index.json"
    res = facs_cli("index", root, "-o", out)
    assert res.returncode == 0, res.stderr
    assert "2 clips, 2 subjects, 3 labels, 48 frames" in res.stdout
    assert load_index(out).clips == index.clips


def test_disfa_bad_input(tmp_path):
    root = _disfa_tree(tmp_path / "d", {"SN001": {"12": AU12 + [2, 2]}})  # 26 labels, 24 frames
    with pytest.raises(FacsError, match=r"SN001_au12.txt: line 25: frame 25 is beyond"):
        build_index(root, progress=False)
    (root / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi").unlink()
    res = facs_cli("index", root, "-o", tmp_path / "i.json")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "no video for these labels" in res.stderr and "SN001" in res.stderr
    bad = root / "ActionUnit_Labels" / "SN001" / "SN001_au12.txt"
    bad.write_text("1,0\n2,x\n")
    with pytest.raises(FacsError, match="line 2: expected 'frame,intensity'"):
        disfa.read_au_file(bad)


def test_disfa_numbering_threshold_and_intensity(tmp_path):
    """DISFA numbers frames from 1; a 0-based copy reads the same. The cut is an option of the
    index, and the 0-5 intensities are kept beside the binary labels."""
    one = tmp_path / "one.txt"
    one.write_text("".join(f"{i + 1},{v}\n" for i, v in enumerate(AU12)))
    zero = tmp_path / "zero.txt"
    zero.write_text("".join(f"{i},{v}\n" for i, v in enumerate(AU12)))
    assert disfa.read_au_file(one, 24).tolist() == disfa.read_au_file(zero, 24).tolist() == AU12
    with pytest.raises(FacsError, match=r"zero.txt: line 25: frame 24 is beyond .* from 0"):
        zero.write_text(zero.read_text() + "24,1\n")
        disfa.read_au_file(zero, 24)
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2.5\n")
    with pytest.raises(FacsError, match=r"bad.txt: line 1: intensity 2.5 \(expected 0..5\)"):
        disfa.read_au_file(bad)

    root = _disfa_tree(tmp_path / "d", {"SN001": {"12": AU12}})
    out = tmp_path / "i.json"
    res = facs_cli("index", root, "-o", out, "--threshold", "3")
    assert res.returncode == 0, res.stderr
    index = load_index(out)
    assert index.options == {"camera": "left", "positive_intensity": 3}
    c = index.clips[0]
    assert np.flatnonzero(index.frame_labels(c)[:, 0]).tolist() == [4, 5, 6]  # intensity >= 3
    assert frame_intensity(c, ["12"])[:, 0].tolist() == AU12  # kept through the JSON


def test_unknown_layouts_bad_input_is_one_line(tmp_path):
    """A BP4D coding without its frame column and a CK+ session without images: exit 2, one
    line naming the file."""
    csv = tmp_path / "b" / "AUCoding" / "AU_OCC" / "F001_T1.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("1,2,12\n0,1,9\n1,0,0\n")
    seq = tmp_path / "b" / "Sequences" / "F001" / "T1"
    seq.mkdir(parents=True)
    cv2.imwrite(str(seq / "1.jpg"), np.zeros((12, 16, 3), np.uint8))
    res = facs_cli("index", tmp_path / "b", "-o", tmp_path / "i.json")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "F001_T1.csv" in res.stderr and "frame column" in res.stderr
    facs = tmp_path / "c" / "FACS" / "S005" / "001" / "S005_001_00000011_facs.txt"
    facs.parent.mkdir(parents=True)
    facs.write_text("   1.0000000e+00   3.0000000e+00\n")
    (tmp_path / "c" / "cohn-kanade-images" / "S005" / "001").mkdir(parents=True)
    res = facs_cli("index", tmp_path / "c", "-o", tmp_path / "j.json", "--format", "ckplus")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "S005_001_00000011_facs.txt" in res.stderr or "S005/001" in res.stderr
    assert not (tmp_path / "i.json").exists() and not (tmp_path / "j.json").exists()


def test_disfa_right_camera_and_empty_corpora(tmp_path):
    root = _disfa_tree(tmp_path / "d", {"SN003": {"12": AU12}})
    write_avi(root / "Videos_RightCamera" / "RightVideoSN003_comp.avi", 24)
    index = build_index(root, progress=False, camera="right")
    assert [c.id for c in index.clips] == ["SN003-right"]
    assert index.clips[0].video == "Videos_RightCamera/RightVideoSN003_comp.avi"
    assert index.options["camera"] == "right"
    for layout, folder in (("bp4d", "AUCoding/AU_OCC"), ("ckplus", "cohn-kanade-images")):
        empty = tmp_path / layout
        (empty / folder).mkdir(parents=True)
        with pytest.raises(FacsError, match=f"{empty}/"):
            build_index(empty, progress=False)
