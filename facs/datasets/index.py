"""`facs index DATA -o WORK/index.json [--mode span|markers]`: the corpus as one JSON file.

    index = load_index("work/quick/index.json")
    for clip in index.clips:
        video = index.video_path(clip)          # absolute path of the clip
        y = index.frame_labels(clip)            # frames x L uint8, the index's label mode

The file format is docs/formats.md §2. Every later stage reads the clips, labels and label mode
from here, so a model records which labels (in which order) and which mode it was trained on.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facs.aus import UNKNOWN
from facs.datasets import bp4d, ckplus, disfa, mmi
from facs.datasets.clips import LABEL_MODES, Clip, Skipped, frame_labels, label_list
from facs.errors import FacsError
from facs.fileio import read_json, write_json

FORMAT = "facs-index/1"


@dataclass
class Index:
    root: Path
    label_mode: str
    labels: list[str]
    clips: list[Clip]
    skipped: list[dict] = field(default_factory=list)
    dataset: str = "mmi"
    options: dict = field(default_factory=dict)  # how the corpus was read (DISFA: camera, cut)

    def video_path(self, clip: Clip) -> Path:
        return self.root / clip.video

    def frame_labels(self, clip: Clip, mode: str | None = None) -> np.ndarray:
        return frame_labels(clip, self.labels, mode or self.label_mode)

    def clip(self, clip_id: str) -> Clip:
        for c in self.clips:
            if c.id == clip_id:
                return c
        raise KeyError(clip_id)

    @property
    def subjects(self) -> list[str]:
        return sorted({c.subject for c in self.clips}, key=_subject_key)

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.clips)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "dataset": self.dataset,
            "root": str(self.root),
            "label_mode": self.label_mode,
            "labels": list(self.labels),
            "clips": [c.to_json() for c in self.clips],
            "skipped": list(self.skipped),
            **({"options": dict(self.options)} if self.options else {}),
        }


def _subject_key(s: str):
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def _check_unique_ids(clips: list[Clip], base: Path) -> None:
    """Clip ids key LMDB records and score rows, so two clips may not share one."""
    seen: dict[str, Clip] = {}
    for c in clips:
        if c.id in seen:
            raise FacsError(
                f"{base / c.xml}: clip id {c.id!r} is used twice (also by {base / seen[c.id].xml})"
            )
        seen[c.id] = c


DATASETS = ("auto", "mmi", "disfa", "bp4d", "ckplus")
READERS = {"disfa": disfa, "bp4d": bp4d, "ckplus": ckplus}
WHAT = {
    "disfa": f"{disfa.LABELS_DIR}/: no subject with label files",
    "bp4d": f"{'/'.join(bp4d.CODING_DIR)}/: no <subject>_<task>.csv coding",
    "ckplus": f"{ckplus.FACS_DIR}/: no session with a *_facs.txt coding",
}


def detect_dataset(root: str | Path) -> str:
    """The layout of a data root: disfa (ActionUnit_Labels/), bp4d (AUCoding/AU_OCC/), ckplus
    (cohn-kanade-images/), else mmi (whose reader reports a missing Sessions/ folder)."""
    root = Path(root)
    if (root / "Sessions").is_dir() or root.name == "Sessions":
        return "mmi"
    for name, is_layout in (
        ("disfa", disfa.is_disfa),
        ("bp4d", bp4d.is_bp4d),
        ("ckplus", ckplus.is_ckplus),
    ):
        if is_layout(root):
            return name
    return "mmi"


def build_index(
    root: str | Path,
    mode: str = "span",
    progress: bool = True,
    skip_bad: bool = False,
    dataset: str = "auto",
    camera: str = "left",
    threshold: int = 2,
) -> Index:
    """Read a corpus into an Index: MMI's Sessions/ tree, DISFA, BP4D or CK+ (`dataset`, or
    detected from the layout with 'auto')."""
    if mode not in LABEL_MODES:
        raise FacsError(f"--mode {mode!r}: expected one of {', '.join(LABEL_MODES)}")
    if dataset not in DATASETS:
        raise FacsError(f"--dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    if dataset == "auto":
        dataset = detect_dataset(root)
    skipped: list[Skipped] = []
    if dataset in READERS:
        base = Path(root).resolve()
        extra = {"camera": camera, "threshold": threshold} if dataset == "disfa" else {}
        clips = READERS[dataset].scan(
            base, progress=progress, skip_bad=skip_bad, skipped=skipped, **extra
        )
        if not clips:
            where, what = WHAT[dataset].split(": ", 1)
            raise FacsError(f"{base / where}: {what}")
    else:
        clips = mmi.scan(root, progress=progress, skip_bad=skip_bad, skipped=skipped)
        if not clips:
            raise FacsError(
                f"{mmi.sessions_dir(root)}: no clip with per-frame annotation (*-oao_aucs.xml)"
            )
        base = mmi.sessions_dir(root).parent.resolve()
    _check_unique_ids(clips, base)
    return Index(
        root=base,
        label_mode=mode,
        labels=label_list(clips),
        clips=clips,
        skipped=[{"path": s.path, "reason": s.reason} for s in skipped],
        dataset=dataset,
        options={"camera": camera, "positive_intensity": threshold} if dataset == "disfa" else {},
    )


def write_index(index: Index, path: str | Path) -> Path:
    return write_json(path, index.to_json())


def load_index(path: str | Path) -> Index:
    """Read WORK/index.json (FacsError naming the file if it is not an index)."""
    path = Path(path)
    d = read_json(path, "index file", "run `facs index` first")
    try:
        root = Path(d["root"])
        if not root.is_absolute():
            root = (path.parent / root).resolve()
        return Index(
            root=root,
            label_mode=str(d.get("label_mode", "span")),
            labels=[str(x) for x in d["labels"]],
            clips=[Clip.from_json(c) for c in d["clips"]],
            skipped=list(d.get("skipped", [])),
            dataset=str(d.get("dataset", "mmi")),
            options=dict(d.get("options", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise FacsError(f"{path}: not a facs index ({exc.__class__.__name__}: {exc})") from None


def summary(index: Index) -> str:
    line = (
        f"{len(index.clips)} clips, {len(index.subjects)} subjects, {len(index.labels)} labels, "
        f"{index.frames} frames ({index.label_mode} mode)"
    )
    unknown = unknown_cells(index)
    if unknown:
        cells = index.frames * len(index.labels)
        line += f"; {unknown} of {cells} (frame, label) cells not coded (unknown)"
    if index.skipped:
        line += f"; {len(index.skipped)} clips skipped"
    return line


def unknown_cells(index: Index) -> int:
    """How many (frame, label) cells the corpus did not code (0 for MMI and DISFA)."""
    return sum(int((index.frame_labels(c) == UNKNOWN).sum()) for c in index.clips if c.has_unknown)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data",
        metavar="DATA",
        help="data root of MMI (Sessions/), DISFA (ActionUnit_Labels/), BP4D (AUCoding/) "
        "or CK+ (cohn-kanade-images/, FACS/)",
    )
    parser.add_argument(
        "-o", "--output", default="work/quick/index.json", help="index file to write"
    )
    parser.add_argument(
        "--mode",
        choices=LABEL_MODES,
        default="span",
        help="per-frame labels: span = onset..offset (default), markers = marker frames only",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out clips with bad files (listed in the index) instead of stopping",
    )
    parser.add_argument(
        "--format",
        "--dataset",
        dest="dataset",
        choices=DATASETS,
        default="auto",
        help="corpus layout (default auto: detected from the folders)",
    )
    parser.add_argument(
        "--camera", choices=("left", "right"), default="left", help="DISFA camera (default left)"
    )
    parser.add_argument(
        "--threshold",
        type=int,
        default=2,
        choices=range(1, 6),
        metavar="{1..5}",
        help="DISFA: a frame is positive at this intensity or more (default 2, the usual cut)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    index = build_index(
        args.data,
        mode=args.mode,
        progress=not args.quiet,
        skip_bad=args.skip_bad,
        dataset=args.dataset,
        camera=args.camera,
        threshold=args.threshold,
    )
    out = write_index(index, args.output)
    for s in index.skipped:
        # clips a corpus never coded (MMI without OAO, CK+ without FACS) are counted, not listed
        if not s["reason"].startswith(("no per-frame annotation", ckplus.NO_FACS)):
            print(f"facs index: skipped {s['path']}: {s['reason']}")
    print(f"facs index: {summary(index)} -> {out}")
    return 0
