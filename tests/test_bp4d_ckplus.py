"""BP4D and CK+ readers: image-sequence corpora whose codings leave frames unknown."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facs.aus import UNKNOWN
from facs.datasets import bp4d, ckplus
from facs.datasets.clips import ALL, Clip, Skipped, frame_labels
from facs.errors import FacsError

U = UNKNOWN
W, H = 16, 12


def _images(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        img = np.full((H, W, 3), 40 + 10 * i, np.uint8)
        assert cv2.imwrite(str(folder / name), img)
    return folder


# --------------------------------------------------------------------------- BP4D


def _bp4d_clip(root: Path, name: str, csv: str, images: list[str] | None) -> Path:
    subject, task = name.split("_")
    path = root / "AUCoding" / "AU_OCC" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(csv)
    if images is not None:
        _images(root / "Sequences" / subject / task, images)
    return path


# 12 images 1.jpg..12.jpg (unpadded: 10.jpg sorts after 9.jpg by number, not by name); the
# coding covers frames 5..12; AU 15's column is 9 throughout (not coded).
F001_T1 = """0,1,AU2,12,15
5,0,0,0,9
6,1,0,1,9
7,1,9,1,9
8,1,9,0,9
9,0,0,1,9
10,0,0,1,9
11,9,0,0,9
12,0,1,0,9
"""
F001_T1_LABELS = np.array(
    # 1  2  12 15 25
    [[U, U, U, U, U]] * 4
    + [
        [0, 0, 0, U, U],  # frame 5
        [1, 0, 1, U, U],
        [1, U, 1, U, U],
        [1, U, 0, U, U],
        [0, 0, 1, U, U],  # 9.jpg
        [0, 0, 1, U, U],  # 10.jpg
        [U, 0, 0, U, U],
        [0, 1, 0, U, U],  # frame 12
    ],
    np.int8,
)
LABELS = ["1", "2", "12", "15", "25"]


def _bp4d_tree(root: Path) -> Path:
    _bp4d_clip(
        root, "M002_T3", "frame,AU01\n1,1\n2,1\n3,0\n4,0\n", [f"{i:04d}.jpg" for i in (1, 2, 3, 4)]
    )
    _bp4d_clip(root, "F001_T2", ",1\n1,0\n2,0\n", ["1.jpg", "2.jpg"])
    _bp4d_clip(root, "F001_T1", F001_T1, [f"{i}.jpg" for i in range(1, 13)])
    return root


def test_bp4d_scan_labels(tmp_path):
    root = _bp4d_tree(tmp_path / "BP4D")
    assert bp4d.is_bp4d(root) and not bp4d.is_bp4d(tmp_path)
    assert not ckplus.is_ckplus(root)
    skipped: list[Skipped] = []
    clips = bp4d.scan(root, progress=False, skipped=skipped)
    assert [c.id for c in clips] == ["F001_T1", "F001_T2", "M002_T3"]  # by subject, task
    assert skipped == []
    c = clips[0]
    assert (c.session, c.subject, c.video, c.xml) == (
        "F001_T1",
        "F001",
        "Sequences/F001/T1",
        "AUCoding/AU_OCC/F001_T1.csv",
    )
    assert (c.fps, c.frames, c.width, c.height) == (25.0, 12, W, H)
    assert c.coded == ["1", "2", "12"]  # "AU2" normalised; AU 15 (all 9) says nothing
    assert c.events == {"1": [(5, 6, 7)], "2": [(11, 11, 11)], "12": [(5, 5, 6), (8, 8, 9)]}
    assert c.unknown == {ALL: [(0, 3)], "2": [(6, 7)], "1": [(10, 10)]}
    assert np.array_equal(frame_labels(c, LABELS), F001_T1_LABELS)
    assert Clip.from_json(c.to_json()) == c

    m = clips[2]  # zero-padded names, header "frame", fully coded
    assert (m.subject, m.frames, m.coded, m.unknown) == ("M002", 4, ["1"], {})
    assert frame_labels(m, ["1", "2"]).tolist() == [[1, U], [1, U], [0, U], [0, U]]
    assert frame_labels(clips[1], ["1"]).tolist() == [[0], [0]]  # empty first header cell


def test_bp4d_occ_csv(tmp_path):
    path = _bp4d_clip(tmp_path, "F001_T1", F001_T1, None)
    occ = bp4d.read_occ_csv(path)
    assert occ.codes == ["1", "2", "12", "15"]
    assert occ.frames.tolist() == list(range(5, 13))
    assert occ.lines == list(range(2, 10))
    assert occ.values[2].tolist() == [1, 9, 1, 9]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,2,12\n0,1,0\n", r"F001_T1\.csv: no frame column \(the first header cell '1'"),
        ("AU1,AU2\n0,1\n", r"F001_T1\.csv: no frame column"),
        (",1,2\n0,1,0\n1,0,0\n0,0,9\n", r"F001_T1\.csv: line 4: no frame column"),
        ("0,1\nx,1\n", r"F001_T1\.csv: line 2: no frame column \(the first cell 'x'"),
        ("0,1,2\n5,0,0\n6,1,x\n", r"F001_T1\.csv: line 3: AU 2: value 'x' \(expected 0"),
        ("0,1,2\n5,0,2\n", r"F001_T1\.csv: line 2: AU 2: value '2'"),
        ("0,1,2\n5,0\n", r"F001_T1\.csv: line 2: 2 cells, the header has 3"),
        ("0,1,nose\n5,0,0\n", r"F001_T1\.csv: line 1: column 3 header 'nose' is not an AU"),
        ("0,1\n5,0\n5,1\n", r"F001_T1\.csv: line 3: frame 5 is listed twice \(also line 2\)"),
        ("", r"F001_T1\.csv: empty file"),
    ],
)
def test_bp4d_bad_csv(tmp_path, text, message):
    path = _bp4d_clip(tmp_path, "F001_T1", text, None)
    with pytest.raises(FacsError, match=message):
        bp4d.read_occ_csv(path)


def test_bp4d_bad_tree(tmp_path):
    root = tmp_path / "BP4D"
    frames = [f"{i}.jpg" for i in range(1, 13)]
    bad = _bp4d_clip(root, "F002_T1", "0,1\n12,0\n13,1\n", frames)
    with pytest.raises(FacsError, match=r"F002_T1\.csv: line 3: frame 13 is beyond the sequence"):
        bp4d.scan(root, progress=False)
    bad.write_text("0,1\n5,0\n")
    (root / "Sequences" / "F002" / "T1" / "5.jpg").unlink()
    with pytest.raises(FacsError, match=r"F002_T1\.csv: line 2: frame 5 is missing from"):
        bp4d.read_clip(bad, root)
    bad.unlink()

    _bp4d_clip(root, "F003_T1", "0,1\n1,0\n", None)
    with pytest.raises(FacsError, match=r"F003_T1\.csv: no image sequence .*Sequences/F003/T1"):
        bp4d.scan(root, progress=False)
    (root / "Sequences" / "F003" / "T1").mkdir(parents=True)
    with pytest.raises(FacsError, match=r"Sequences/F003/T1: no images \(the frames coded in F003"):
        bp4d.scan(root, progress=False)

    _bp4d_clip(root, "F001_T1", F001_T1, frames)
    skipped: list[Skipped] = []
    clips = bp4d.scan(root, progress=False, skip_bad=True, skipped=skipped)
    assert [c.id for c in clips] == ["F001_T1"]
    assert [s.path for s in skipped] == ["AUCoding/AU_OCC/F003_T1.csv"]
    assert "no images" in skipped[0].reason


# --------------------------------------------------------------------------- CK+


def _ck_session(root, subject, session, frames, facs=None, peak=None, flat=False, images=True):
    """One CK+ session of `frames` PNGs; `facs` (text) written as the _facs.txt of `peak`
    (default: the last frame), under FACS/ or (flat) beside the images."""
    folder = root / "cohn-kanade-images" / subject / session
    if images:
        _images(folder, [f"{subject}_{session}_{i:08d}.png" for i in range(1, frames + 1)])
    if facs is None:
        return None
    where = folder if flat else root / "FACS" / subject / session
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{subject}_{session}_{peak or frames:08d}_facs.txt"
    path.write_text(facs)
    return path


S005_001 = "   1.0000000e+00   3.0000000e+00\n   1.2000000e+01   0.0000000e+00\n"


def _ck_tree(root: Path) -> Path:
    _ck_session(root, "S005", "001", 11, S005_001)
    _ck_session(root, "S005", "002", 6)  # not coded
    _ck_session(root, "S010", "001", 2, "", flat=True)  # empty: no AU at the peak
    return root


def test_ckplus_scan_labels(tmp_path):
    root = _ck_tree(tmp_path / "CK+")
    assert ckplus.is_ckplus(root) and not ckplus.is_ckplus(tmp_path)
    assert not bp4d.is_bp4d(root)
    skipped: list[Skipped] = []
    clips = ckplus.scan(root, progress=False, skipped=skipped)
    assert [c.id for c in clips] == ["S005_001", "S010_001"]
    assert skipped == [Skipped("cohn-kanade-images/S005/002", ckplus.NO_FACS)]
    c = clips[0]
    assert (c.session, c.subject, c.video, c.xml) == (
        "S005_001",
        "S005",
        "cohn-kanade-images/S005/001",
        "FACS/S005/001/S005_001_00000011_facs.txt",
    )
    assert (c.fps, c.frames, c.width, c.height) == (30.0, 11, W, H)
    assert c.coded is None and c.unknown == {ALL: [(1, 9)]}
    assert c.events == {"1": [(10, 10, 10)], "12": [(10, 10, 10)]}
    y = frame_labels(c, ["1", "2", "12"])
    assert y[0].tolist() == [0, 0, 0]  # neutral first frame
    assert (y[1:10] == U).all()  # not coded between
    assert y[10].tolist() == [1, 0, 1]  # peak: the listed AUs, every other label absent
    assert Clip.from_json(c.to_json()) == c

    flat = clips[1]
    assert flat.xml == "cohn-kanade-images/S010/001/S010_001_00000002_facs.txt"
    assert (flat.frames, flat.events, flat.unknown) == (2, {}, {})
    assert frame_labels(flat, ["1", "2"]).tolist() == [[0, 0], [0, 0]]


def test_ckplus_facs_file(tmp_path):
    path = tmp_path / "S005_001_00000011_facs.txt"
    path.write_text(S005_001 + "\n   2.5000000e+01   0.0000000e+00\n")
    assert ckplus.read_facs_file(path) == {"1": 3, "12": 0, "25": 0}
    assert ckplus.peak_frame(path) == 11
    path.write_text("")
    assert ckplus.read_facs_file(path) == {}
    for text, message in [
        ("   1.0e+00   3.0e+00\n   abc   1.0\n", r"line 2: expected two numbers 'AU intensity'"),
        ("   1.0e+00\n", r"line 1: expected two numbers"),
        ("   1.0 2.0 3.0\n", r"line 1: expected two numbers"),
        ("   1.5e+00   0.0e+00\n", r"line 1: AU number 1.5e\+00 is not an AU"),
    ]:
        path.write_text(text)
        with pytest.raises(FacsError, match=r"S005_001_00000011_facs\.txt: " + message):
            ckplus.read_facs_file(path)


def test_ckplus_bad_tree(tmp_path):
    root = _ck_tree(tmp_path / "CK+")
    _ck_session(root, "S099", "001", 5, S005_001, images=False)
    with pytest.raises(FacsError, match=r"S099_001_00000005_facs\.txt: no images in .*S099/001"):
        ckplus.scan(root, progress=False)
    skipped: list[Skipped] = []
    clips = ckplus.scan(root, progress=False, skip_bad=True, skipped=skipped)
    assert [c.id for c in clips] == ["S005_001", "S010_001"]
    assert [s.path for s in skipped] == [
        "cohn-kanade-images/S005/002",
        "FACS/S099/001/S099_001_00000005_facs.txt",
    ]
    assert skipped[1].reason.endswith(f"no images in {root / 'cohn-kanade-images/S099/001'}")

    root = tmp_path / "CK2"
    _ck_session(root, "S005", "001", 11, S005_001, peak=12)
    with pytest.raises(
        FacsError,
        match=r"S005_001_00000012_facs\.txt: names frame 12 as the peak \(the last image\), "
        r"but .* has 11 images, the last S005_001_00000011\.png",
    ):
        ckplus.scan(root, progress=False)

    root = tmp_path / "CK3"
    _ck_session(root, "S005", "001", 11, "   1.0e+00   x\n")
    with pytest.raises(FacsError, match=r"S005_001_00000011_facs\.txt: line 1: expected two"):
        ckplus.scan(root, progress=False)
