"""Bad input through the real `facs` command: exit 2, one stderr line naming the file, no
traceback (unless --debug), and nothing already written is lost."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from mmi_helpers import FIXTURES, add_clip, facs_cli, write_avi

from facs.datasets.index import build_index, write_index

GOOD = {"12": [(3, 1), (6, 2), (9, 3)]}


def _corpus(root: Path) -> Path:
    add_clip(root, "1", "1", "S001-001", 20, GOOD)
    add_clip(root, "2", "2", "S002-002", 20, {"4": [(2, 1), (5, 3)]})
    return root


def _malformed(root: Path) -> Path:
    folder = add_clip(root, "3", "3", "S003-003", 20, None)
    shutil.copy(FIXTURES / "malformed.xml", folder / "S003-003-oao_aucs.xml")
    return folder / "S003-003-oao_aucs.xml"


def _beyond(root: Path) -> Path:
    folder = add_clip(root, "3", "3", "S003-003", 20, {"12": [(5, 1), (21, 3)]})
    return folder / "S003-003-oao_aucs.xml"


def _no_video(root: Path) -> Path:
    folder = add_clip(root, "3", "3", "S003-003", 20, GOOD, video=False)
    return folder / "S003-003-oao_aucs.xml"


def _corrupt_video(root: Path) -> Path:
    folder = add_clip(root, "3", "3", "S003-003", 20, GOOD, video=False)
    (folder / "S003-003.avi").write_bytes(b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(range(256)) * 8)
    return folder / "S003-003.avi"


def _empty_video(root: Path) -> Path:
    folder = add_clip(root, "3", "3", "S003-003", 20, GOOD, video=False)
    (folder / "S003-003.avi").write_bytes(b"")
    return folder / "S003-003.avi"


def _no_subject(root: Path) -> Path:
    folder = add_clip(root, "3", None, "S003-003", 20, GOOD)
    return folder / "session.xml"


def _no_session_xml(root: Path) -> Path:
    folder = add_clip(root, "3", "3", "S003-003", 20, GOOD)
    (folder / "session.xml").unlink()
    return folder / "session.xml"


def _bad_type(root: Path) -> Path:
    folder = add_clip(root, "3", "3", "S003-003", 20, {"12": [(5, 7)]})
    return folder / "S003-003-oao_aucs.xml"


CASES = {
    "malformed XML": (_malformed, "malformed XML"),
    "marker beyond last frame": (_beyond, r"Marker Frame=21 is beyond the clip's last frame \(20"),
    "XML without video": (_no_video, "no video for this annotation"),
    "corrupt video": (_corrupt_video, "no frame could be decoded|no video stream|not a readable"),
    "empty video": (_empty_video, "empty file"),
    "session.xml without subject": (_no_subject, "no subject"),
    "missing session.xml": (_no_session_xml, "missing"),
    "marker type": (_bad_type, "Marker Type=7"),
}


def _one_error_line(res, path: Path, problem: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert lines[0].startswith("facs index: error: ")
    assert str(path) in lines[0] and re.search(problem, lines[0]), lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_line_and_nothing_lost(tmp_path, case):
    make, problem = CASES[case]
    root = _corpus(tmp_path / "data")
    out = tmp_path / "work" / "index.json"
    write_index(build_index(root, progress=False), out)
    before = out.read_bytes()
    bad = make(root)
    res = facs_cli("index", root, "-o", out)
    _one_error_line(res, bad, problem)
    assert out.read_bytes() == before  # the previous good index survives
    assert sorted(p.name for p in out.parent.iterdir()) == ["index.json"]  # no temp file left


def test_missing_sessions_folder(tmp_path):
    (tmp_path / "data").mkdir()
    res = facs_cli("index", tmp_path / "data", "-o", tmp_path / "i.json")
    _one_error_line(res, tmp_path / "data", "no Sessions/ folder")
    assert not (tmp_path / "i.json").exists()


def test_debug_shows_traceback(tmp_path):
    root = _corpus(tmp_path / "data")
    _beyond(root)
    res = facs_cli("index", root, "-o", tmp_path / "i.json", "--debug")
    assert res.returncode == 2 and "Traceback" in res.stderr and "FacsError" in res.stderr


def test_skip_bad_keeps_the_good_clips(tmp_path):
    root = _corpus(tmp_path / "data")
    bad = _beyond(root)
    out = tmp_path / "i.json"
    res = facs_cli("index", root, "-o", out, "--skip-bad")
    assert res.returncode == 0, res.stderr
    assert "skipped Sessions/3/S003-003-oao_aucs.xml" in res.stdout and str(bad) in res.stdout
    assert "2 clips, 2 subjects, 2 labels" in res.stdout


def test_truncated_video_is_probed_or_named(tmp_path):
    # a video cut in the middle still indexes (the frames that decode), or fails naming the file
    root = _corpus(tmp_path / "data")
    folder = add_clip(root, "3", "3", "S003-003", 20, GOOD, video=False)
    full = write_avi(tmp_path / "full.avi", 20)
    data = full.read_bytes()
    (folder / "S003-003.avi").write_bytes(data[: len(data) // 2])
    res = facs_cli("index", root, "-o", tmp_path / "i.json")
    if res.returncode:
        _one_error_line(res, folder / "S003-003.avi", "")
    else:
        assert "3 clips" in res.stdout


def test_split_of_a_bad_index(tmp_path):
    (tmp_path / "index.json").write_text('{"root": "x"}')
    res = facs_cli("split", tmp_path / "index.json")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert str(tmp_path / "index.json") in res.stderr and "not a facs index" in res.stderr
    (tmp_path / "index.json").write_text("{not json")
    res = facs_cli("split", tmp_path / "index.json")
    assert res.returncode == 2 and "not valid JSON" in res.stderr
    res = facs_cli("split", tmp_path / "nope.json")
    assert res.returncode == 2 and "no such index file" in res.stderr


def test_duplicate_clip_id(tmp_path):
    root = _corpus(tmp_path / "data")
    folder = add_clip(root, "3", "3", "S001-001", 20, GOOD)  # same name as session 1's clip
    res = facs_cli("index", root, "-o", tmp_path / "i.json")
    _one_error_line(res, folder / "S001-001-oao_aucs.xml", "used twice")
