"""The scores file: a stream's probabilities on the records of one part of the corpus.

`WORK/scores/<config>/<stream>_<part>.npz` (written by `facs train-stream`, `facs test-net`,
`facs geometry`, `facs fuse`; read by `facs fuse` and `facs evaluate`), numpy arrays:

    keys        (N,)    record keys (facs.preprocess.workdir.record_key), record order
    probs       (N, L)  float32 probabilities (NaN: the stream has no opinion on the label)
    labels      (N, L)  int8 ground truth: 1, 0, or -1 where the corpus did not code the cell
    label_names (L,)    AU codes
    subjects    (N,)    subject of each record (optional)
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from facs.errors import FacsError
from facs.fileio import atomic_path


@dataclass
class Scores:
    keys: list[str]
    probs: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    subjects: np.ndarray | None = None

    def aligned(self, names: list[str]) -> Scores:
        """The same scores over `names` (one-vs-all covers only the labels seen in training:
        a label it lacks scores 0, never predicted)."""
        if list(self.label_names) == list(names):
            return self
        probs = np.zeros((len(self.probs), len(names)), np.float32)
        for j, code in enumerate(names):
            if code in self.label_names:
                probs[:, j] = self.probs[:, self.label_names.index(code)]
        return replace(self, probs=probs, label_names=list(names))


def save_scores(path: str | Path, scores: Scores) -> Path:
    extra = {} if scores.subjects is None else {"subjects": np.asarray(scores.subjects, str)}
    with atomic_path(path, ".npz") as tmp:
        np.savez(
            tmp,
            keys=np.asarray(scores.keys, dtype=str),
            probs=np.asarray(scores.probs, np.float32),
            labels=np.asarray(scores.labels, np.int8),
            label_names=np.asarray(scores.label_names, dtype=str),
            **extra,
        )
    return Path(path)


def load_scores(path: str | Path) -> Scores:
    path = Path(path)
    if not path.is_file():
        raise FacsError(f"{path}: no such scores file (run the stage that scores it first)")
    try:
        with np.load(path) as z:
            d = {k: z[k] for k in z.files}
        scores = Scores(
            keys=[str(k) for k in d["keys"]],
            probs=np.asarray(d["probs"], np.float32),
            labels=np.asarray(d["labels"]).astype(np.int8),  # older files: uint8 0/1
            label_names=[str(x) for x in d["label_names"]],
            subjects=d.get("subjects"),
        )
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise FacsError(f"{path}: not a readable scores file ({exc.__class__.__name__})") from None
    n, n_labels = len(scores.keys), len(scores.label_names)
    if scores.probs.shape != (n, n_labels) or scores.labels.shape != (n, n_labels):
        raise FacsError(
            f"{path}: probs {scores.probs.shape} and labels {scores.labels.shape} do not match "
            f"{n} keys x {n_labels} labels"
        )
    return scores


def check_same_records(scores: dict[str, Scores], where: Path) -> None:
    """Several streams' scores of one part must hold the same records in the same order."""
    names = list(scores)
    for s in names[1:]:
        if scores[s].keys != scores[names[0]].keys:
            raise FacsError(f"{where}: {s}'s records differ from {names[0]}'s")
