"""Split by subject: disjoint parts, k folds covering every subject once, determinism."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from mmi_helpers import facs_cli

from facs.datasets.clips import Clip, label_list
from facs.datasets.index import Index, write_index
from facs.datasets.split import (
    PARTS,
    clips_in,
    k_folds,
    load_split,
    make_split,
    split_subjects,
    subject_labels,
)
from facs.errors import FacsError

COMMON = ["1", "2", "4", "12", "25", "26"]


def _index(n_subjects: int = 40, seed: int = 3, rare: bool = True) -> Index:
    """Subjects with 1-3 clips each; AU 28B only in subject 'S7', 46L only in 'S12'."""
    rng = random.Random(seed)
    clips = []
    for s in range(n_subjects):
        for k in range(rng.randint(1, 3)):
            codes = rng.sample(COMMON, 2)
            if rare and (s, k) == (7, 0):
                codes.append("28B")
            if rare and (s, k) == (12, 0):
                codes.append("46L")
            events = {c: [(2, 5, 9)] for c in codes}
            cid = f"S{s}-{k}"
            clips.append(
                Clip(cid, cid, f"S{s}", f"{cid}.avi", f"{cid}.xml", 25.0, 20, 8, 6, events)
            )
    return Index(Path("/nonexistent"), "span", label_list(clips), clips)


def _parts_ok(index: Index, parts: dict[str, list[str]]) -> None:
    sets = [set(parts[p]) for p in ("train", "val", "test")]
    assert all(sets), "every part gets subjects"
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == {c.subject for c in index.clips}


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_no_subject_in_two_parts_and_rare_labels_in_train(seed):
    index = _index()
    parts = split_subjects(index, val=0.15, test=0.2, seed=seed)
    _parts_ok(index, parts)
    assert len(parts["test"]) == 8 and len(parts["val"]) == 6 and len(parts["train"]) == 26
    train_labels = set().union(*(subject_labels(index)[s] for s in parts["train"]))
    assert train_labels == set(index.labels)  # 28B and 46L each live in one subject only
    assert {"S7", "S12"} <= set(parts["train"])


def test_deterministic_and_seed_dependent():
    index = _index()
    a = make_split(index, folds=4, seed=5)
    b = make_split(index, folds=4, seed=5)
    assert a == b
    c = make_split(index, folds=4, seed=6)
    assert c["parts"] != a["parts"]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_k_folds_cover_every_subject_once(k):
    index = _index()
    folds = k_folds(index, k, seed=0)
    assert len(folds) == k
    flat = [s for f in folds for s in f]
    assert sorted(flat) == sorted({c.subject for c in index.clips})
    assert len(flat) == len(set(flat))
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    # subjects that carry a unique label cannot be in every fold's train set; all others can
    labels = subject_labels(index)
    for f in folds:
        train = set(flat) - set(f)
        have = set().union(*(labels[s] for s in train))
        unique_here = {lab for s in f for lab in labels[s] if lab in {"28B", "46L"}}
        assert have == set(index.labels) - unique_here


def test_clips_in_partitions_clips():
    index = _index()
    split = make_split(index, folds=3, seed=0)
    parts = [clips_in(index, split, p) for p in PARTS]
    ids = [c.id for p in parts for c in p]
    assert sorted(ids) == sorted(c.id for c in index.clips) and len(ids) == len(set(ids))
    assert split["clips"] == {p: len(x) for p, x in zip(PARTS, parts, strict=True)}
    folds = [clips_in(index, split, f"fold{i}") for i in range(3)]
    assert sum(len(f) for f in folds) == len(index.clips)
    rest = clips_in(index, split, "train-fold1")
    assert {c.id for c in rest} == {c.id for c in index.clips} - {c.id for c in folds[1]}
    assert len(clips_in(index, split, "all")) == len(index.clips)
    with pytest.raises(FacsError, match="3 folds"):
        clips_in(index, split, "fold7")
    with pytest.raises(FacsError):
        clips_in(index, split, "training")


def test_too_few_subjects_and_bad_fractions():
    with pytest.raises(FacsError, match="too few"):
        split_subjects(_index(n_subjects=2, rare=False), val=0.15, test=0.2)
    with pytest.raises(FacsError, match="fractions"):
        split_subjects(_index(), val=0.6, test=0.5)
    with pytest.raises(FacsError, match="--folds"):
        k_folds(_index(n_subjects=3, rare=False), 4)
    parts = split_subjects(_index(n_subjects=3, rare=False), val=0.15, test=0.2)
    assert [len(parts[p]) for p in ("train", "val", "test")] == [1, 1, 1]


def test_split_cli_and_load_split(tmp_path):
    index = _index()
    ipath = write_index(index, tmp_path / "index.json")
    res = facs_cli("split", ipath, "--folds", "3", "--seed", "2")
    assert res.returncode == 0, res.stderr
    assert "26/6/8 subjects (train/val/test)" in res.stdout and "3 folds" in res.stdout
    split = load_split(tmp_path / "split.json")
    assert split == make_split(index, folds=3, seed=2, index_path=str(ipath))
    _parts_ok(index, split["parts"])

    bad = dict(split, parts=dict(split["parts"], val=split["parts"]["val"] + ["S7"]))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(FacsError, match="subject S7 is in both train and val"):
        load_split(tmp_path / "bad.json")


def test_uneven_subjects_get_frame_shares_near_the_fractions():
    # real MMI: some subjects have one clip, some dozens; a split by subject count alone can
    # put most frames in test
    rng = random.Random(0)
    clips = []
    for s in range(30):
        for k in range(1 if s % 3 else 12):
            cid = f"S{s}-{k}"
            ev = {c: [(1, 2, 3)] for c in rng.sample(COMMON, 2)}
            clips.append(Clip(cid, cid, f"S{s}", "v", "x", 25.0, rng.randint(60, 200), 8, 6, ev))
    index = Index(Path("/x"), "span", label_list(clips), clips)
    split = make_split(index, val=0.15, test=0.2, folds=3, seed=0)
    total = sum(c.frames for c in clips)
    for part, frac in (("val", 0.15), ("test", 0.2)):
        share = sum(c.frames for c in clips_in(index, split, part)) / total
        assert abs(share - frac) < 0.03, (part, share)
    folds = [sum(c.frames for c in clips_in(index, split, f"fold{i}")) for i in range(3)]
    assert max(folds) - min(folds) < 0.1 * total
