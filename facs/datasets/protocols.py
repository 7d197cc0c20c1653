"""The literature's evaluation protocols, shipped as data files that name their source
(facs/datasets/data/protocols/<name>.json): the published subject-exclusive 3-fold lists of
BP4D (12 AUs) and DISFA (8 AUs), the AUs the papers report, and published anchors.

    facs split WORK/index.json --protocol bp4d     # split.json folds = the published folds
    facs kfold prepare --work WORK                 # one WORK-fold<k> per fold
    facs kfold aggregate WORK-fold*                # + protocol.md: F1 per AU in the papers' form
"""

from __future__ import annotations

from pathlib import Path

from facs.errors import FacsError
from facs.fileio import read_json

FOLDER = Path(__file__).parent / "data" / "protocols"
NAMES = ("bp4d", "disfa")


def load_protocol(name: str) -> dict:
    if name not in NAMES:
        raise FacsError(f"--protocol {name!r}: expected one of {', '.join(NAMES)}")
    return read_json(FOLDER / f"{name}.json", "protocol file")


def protocol_folds(protocol: dict, subjects: list[str]) -> list[list[str]]:
    """The test subjects of each fold (fold k tests on part fold_test_part[k]), kept to the
    subjects the index holds. A subject outside the protocol's parts is an error: its frames
    would be in no test fold, and the numbers would not be the protocol's."""
    known = {s for part in protocol["parts"] for s in part}
    stray = [s for s in subjects if s not in known]
    if stray:
        raise FacsError(
            f"--protocol {protocol['name']}: subject(s) {', '.join(stray[:5])} are not in the "
            f"protocol's folds ({FOLDER / (protocol['name'] + '.json')})"
        )
    present = set(subjects)
    folds = [
        [s for s in protocol["parts"][p - 1] if s in present] for p in protocol["fold_test_part"]
    ]
    empty = [k + 1 for k, f in enumerate(folds) if not f]
    if empty:
        raise FacsError(
            f"--protocol {protocol['name']}: fold {empty[0]} has none of the index's subjects"
        )
    return folds
