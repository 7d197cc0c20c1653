"""The MMI reader on hand-written fixtures that model MMI's quirks, and the index file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from mmi_helpers import FIXTURES, add_clip, facs_cli

from facs.datasets import mmi
from facs.datasets.clips import Clip, event_spans, frame_labels, label_list
from facs.datasets.index import build_index, load_index, write_index
from facs.datasets.mmi import read_oao_xml, read_session_xml


def _clip(events: dict, frames: int = 30, subject: str = "1", cid: str = "c") -> Clip:
    return Clip(cid, "1", subject, f"{cid}.avi", f"{cid}.xml", 25.0, frames, 48, 36, events)


def _active(y: np.ndarray, j: int) -> list[int]:
    return np.flatnonzero(y[:, j]).tolist()


def test_several_events_per_au_are_zero_based():
    ev = read_oao_xml(FIXTURES / "several_events.xml", frames=30)
    assert ev == {"12": [(4, 8, 13), (20, 23, 29)], "25": [(5, 9, 11)]}


def test_markers_out_of_order_read_like_sorted_ones():
    a = read_oao_xml(FIXTURES / "several_events.xml", frames=30)
    b = read_oao_xml(FIXTURES / "out_of_order.xml", frames=30)
    assert a == b


def test_missing_offset_and_onset_rules():
    ev = read_oao_xml(FIXTURES / "missing_markers.xml", frames=30)
    assert ev["1"] == [(2, 5, None), (14, 17, None)]
    assert ev["4"] == [(None, 3, 7), (11, None, 15), (None, None, 21)]
    clip = _clip(ev, frames=30)
    y = frame_labels(clip, ["1", "4"], "span")
    # missing offset: runs to the frame before the next onset, the last one to the clip end
    assert _active(y, 0) == list(range(2, 30))
    # missing onset: from the clip start, or from the frame after the previous event
    assert _active(y, 1) == list(range(0, 8)) + list(range(11, 22))
    assert event_spans(ev["1"], 30) == [(2, 13), (14, 29)]
    assert event_spans(ev["4"], 30) == [(0, 7), (11, 15), (16, 21)]


def test_markers_mode_marks_only_marker_frames():
    ev = read_oao_xml(FIXTURES / "missing_markers.xml", frames=30)
    y = frame_labels(_clip(ev), ["1", "4"], "markers")
    assert _active(y, 0) == [2, 5, 14, 17]
    assert _active(y, 1) == [3, 7, 11, 15, 21]
    assert y.dtype == np.int8 and y.shape == (30, 2)


def test_span_mode_covers_onset_to_offset():
    ev = read_oao_xml(FIXTURES / "several_events.xml", frames=30)
    y = frame_labels(_clip(ev), ["12", "25"], "span")
    assert _active(y, 0) == list(range(4, 14)) + list(range(20, 30))
    assert _active(y, 1) == list(range(5, 12))


def test_lettered_codes_and_never_active_unit():
    ev = read_oao_xml(FIXTURES / "lettered_and_silent.xml", frames=25)
    assert ev["9"] == []  # annotated, never active
    assert set(ev) == {"2", "9", "28", "28B", "46L", "46R"}
    labels = label_list([_clip(ev, 25)])
    assert labels == ["2", "28", "28B", "46L", "46R"]  # sorted by number, letters after; no 9
    # a code silent in one clip but active in another does enter the list
    other = _clip({"9": [(1, 2, 3)], "12": [(0, None, 4)]}, cid="d")
    assert label_list([_clip(ev, 25), other]) == ["2", "9", "12", "28", "28B", "46L", "46R"]
    y = frame_labels(_clip(ev, 25), ["9", "28B"], "span")
    assert y[:, 0].sum() == 0 and _active(y, 1) == [9, 10, 11]


def test_label_list_sorts_numerically_and_normalises(tmp_path):
    xml = tmp_path / "x-oao_aucs.xml"
    xml.write_text(
        "<ActionUnits>"
        + "".join(
            f'<ActionUnit Number="{c}"><Marker Frame="1" Type="1"/></ActionUnit>'
            for c in ["46r", "AU012", "2", "10", "46", "1", "28T", "28B", "28"]
        )
        + "</ActionUnits>"
    )
    ev = read_oao_xml(xml, frames=5)
    assert label_list([_clip(ev, 5)]) == ["1", "2", "10", "12", "28", "28B", "28T", "46", "46R"]


def test_codes_not_in_labels_are_ignored_and_missing_labels_are_zero():
    clip = _clip({"12": [(1, 2, 3)]}, frames=6)
    y = frame_labels(clip, ["1", "12"], "span")
    assert y[:, 0].sum() == 0 and _active(y, 1) == [1, 2, 3]
    assert frame_labels(clip, ["4"], "markers").sum() == 0
    # a hand-edited index with an empty event does not break the span rules
    assert event_spans([(None, None, None), (3, None, None)], 10) == [(3, 9)]


def test_session_xml(tmp_path):
    p = tmp_path / "session.xml"
    p.write_text('<session sessionId="17" mediaFile="S005-017.avi"><subject id="5"/></session>')
    info = read_session_xml(p)
    assert (info.session, info.subject, info.media_file) == ("17", "5", "S005-017.avi")


def _tree(root):
    add_clip(root, "2", "7", "S007-002", 30, {"12": [(5, 1), (9, 2), (14, 3)], "9": []})
    add_clip(root, "10", "8", "S008-010", 20, {"46L": [(2, 1), (4, 3)], "1": [(3, 2)]})
    add_clip(root, "3", "7", "S007-003", 25, {"2": [(20, 3)]})
    add_clip(root, "4", "8", "S008-004", 22, None)  # video, no per-frame annotation
    # AUs listed without any marker: a clip-level coding, skipped too
    add_clip(root, "5", "9", "S009-005", 22, {"12": [], "25": []})
    # no ActionUnit at all: per-frame annotated, nothing active (kept)
    add_clip(root, "6", "9", "S009-006", 10, {})
    return root


def test_scan_tree(tmp_path):
    root = _tree(tmp_path / "data")
    skipped = []
    clips = mmi.scan(root, progress=False, skipped=skipped)
    # numeric session order
    assert [c.id for c in clips] == ["S007-002", "S007-003", "S009-006", "S008-010"]
    assert clips[2].events == {}
    c = clips[0]
    assert (c.session, c.subject, c.frames, c.width, c.height) == ("2", "7", 30, 48, 36)
    assert c.fps == pytest.approx(25.0)
    assert c.video == "Sessions/2/S007-002.avi" and c.xml == "Sessions/2/S007-002-oao_aucs.xml"
    assert [(s.path, s.reason) for s in skipped] == [
        ("Sessions/4/S008-004.avi", mmi.NO_OAO),
        ("Sessions/5/S009-005-oao_aucs.xml", mmi.NO_MARKERS),
    ]
    assert label_list(clips) == ["1", "2", "12", "46L"]
    # the Sessions folder itself is accepted as DATA
    assert [c.id for c in mmi.scan(root / "Sessions", progress=False)] == [x.id for x in clips]


def test_index_roundtrip_and_cli(tmp_path):
    root = _tree(tmp_path / "data")
    index = build_index(root, mode="markers", progress=False)
    path = write_index(index, tmp_path / "work" / "index.json")
    back = load_index(path)
    assert back.labels == index.labels == ["1", "2", "12", "46L"]
    assert back.clips == index.clips and back.label_mode == "markers"
    assert back.root == root.resolve()
    for a, b in zip(index.clips, back.clips, strict=True):
        assert np.array_equal(index.frame_labels(a), back.frame_labels(b))
    assert back.video_path(back.clips[0]).is_file()
    d = json.loads(path.read_text())
    assert d["clips"][0]["events"]["12"] == [[4, 8, 13]]
    assert [s["path"] for s in d["skipped"]] == [
        "Sessions/4/S008-004.avi",
        "Sessions/5/S009-005-oao_aucs.xml",
    ]

    out = tmp_path / "work2" / "index.json"
    res = facs_cli("index", root, "-o", out, "--mode", "span")
    assert res.returncode == 0, res.stderr
    assert "4 clips, 3 subjects, 4 labels, 85 frames (span mode); 2 clips skipped" in res.stdout
    assert "skipped Sessions" not in res.stdout  # clips without per-frame coding are not errors
    cli = load_index(out)
    assert cli.label_mode == "span" and cli.clips == index.clips
    y = cli.frame_labels(cli.clip("S007-003"))
    # AU2 has only an offset at frame 20: on from the clip start
    assert _active(y, cli.labels.index("2")) == list(range(0, 20))


def test_index_of_fixture_copy_keeps_relative_layout(tmp_path):
    # the fixtures double as a corpus: copy one XML next to a video in a session folder
    root = tmp_path / "d"
    folder = add_clip(root, "1", "3", "S003-001", 30, None)
    shutil.copy(FIXTURES / "missing_markers.xml", folder / "S003-001-oao_aucs.xml")
    index = build_index(root, progress=False)
    assert index.labels == ["1", "4"]
    assert index.clips[0].events["4"][0] == (None, 3, 7)


def test_index_of_synthetic_corpus_matches_its_truth(small_corpus, tmp_path):
    """span-mode labels from the XML markers == the generator's per-frame truth (> 0)."""
    index = build_index(small_corpus, mode="span", progress=False)
    assert len(index.clips) == 16 and len(index.subjects) == 8
    assert index.skipped == []
    checked = 0
    for clip in index.clips:
        truth = json.loads((index.video_path(clip).parent / f"{clip.id}-truth.json").read_text())
        assert (clip.frames, clip.width, clip.height) == (truth["frames"], 192, 144)
        assert clip.fps == pytest.approx(truth["fps"])
        assert clip.subject == truth["subject"]
        y = index.frame_labels(clip)
        for code, values in truth["aus"].items():
            active = np.asarray(values) > 0
            if not active.any():
                assert code not in clip.events or not clip.events[code]
                continue
            assert code in index.labels
            assert np.array_equal(y[:, index.labels.index(code)].astype(bool), active), code
            checked += 1
        # no label active in the index that the truth does not have
        for code in index.labels:
            if code not in truth["aus"]:
                assert y[:, index.labels.index(code)].sum() == 0
    assert checked >= 16
    markers = build_index(small_corpus, mode="markers", progress=False)
    c = markers.clips[0]
    assert 0 < markers.frame_labels(c).sum() < index.frame_labels(index.clips[0]).sum()
