"""Real-face evaluation: every model on the frames of real faces labelled by eye
(facs.datasets.realfaces, data/real_faces.json), per-AU F1 and ROC-AUC side by side.

Frames: each labelled segment of a video, each labelled still; an AU counts where the labels say
present (1) or absent (0), nowhere else. A frame where a model finds no face scores 0. A model
that cannot read a still (a CNN stream needs a video) skips the stills, and the report says so.
`edits` adds each video mirrored, and rotated 15 degrees and darkened, with the same labels:
clips a model has not been tuned on.

Numbers here are about real faces; the synthetic corpus' numbers say nothing about them, and
these say nothing about a certified FACS coding (the labels are by eye).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from facs.analysis.model import Model
from facs.analysis.predict import predict_video
from facs.datasets.realfaces import LabelledMedia, labelled_media, load_labels
from facs.errors import FacsError
from facs.video import probe, read_frames

EDITS = ("mirrored", "rotated 15 deg + darkened")


@dataclass
class ModelRun:
    """One model's labelled frames: per AU, the labels (0/1) and its probabilities."""

    y: dict[str, list[int]] = field(default_factory=dict)
    p: dict[str, list[float]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    face_frames: list[bool] = field(default_factory=list)  # labelled frames with a face found
    noface_hits: list[bool] = field(default_factory=list)  # frames without a face, found one

    def add(self, au: str, y: int, p: float) -> None:
        self.y.setdefault(au, []).append(y)
        self.p.setdefault(au, []).append(p)


def edited(src: Path, edit: str, folder: Path) -> Path:
    """A copy of a video with an edit: mirrored, or rotated 15 degrees and darkened."""
    info = probe(src)
    out = folder / f"{src.stem}-{edit.split()[0]}.avi"
    w = cv2.VideoWriter(
        str(out), cv2.VideoWriter_fourcc(*"MJPG"), info.fps, (info.width, info.height)
    )
    for frame in read_frames(src):
        if edit == "mirrored":
            frame = cv2.flip(frame, 1)
        else:
            h, wd = frame.shape[:2]
            m = cv2.getRotationMatrix2D((wd / 2, h / 2), 15, 1.0)
            frame = cv2.warpAffine(frame, m, (wd, h), borderMode=cv2.BORDER_REPLICATE)
            frame = (frame * 0.5).astype(np.uint8)
        w.write(frame)
    w.release()
    return out


def run_model(model: Model, items: list[LabelledMedia], aus: list[str], streams=None) -> ModelRun:
    out = ModelRun()
    for item in items:
        try:
            result = predict_video(item.path, model, streams)
        except FacsError as exc:
            out.skipped.append(f"{item.name} ({str(exc).split(': ', 1)[-1].split(';')[0]})")
            continue
        probs = np.array([f["probs"] for f in result["per_frame"]], np.float64)
        face = np.array([f["face"] for f in result["per_frame"]], bool)
        for seg in item.segments:
            a, b = seg["frames"]
            b = len(face) - 1 if b < 0 else min(b, len(face) - 1)
            if seg.get("noface"):
                out.noface_hits.extend(face[a : b + 1].tolist())
                continue
            out.face_frames.extend(face[a : b + 1].tolist())
            for au in aus:
                if au not in model.labels or (au not in seg["present"] and au not in seg["absent"]):
                    continue
                j = model.labels.index(au)
                for t in range(a, b + 1):
                    out.add(au, int(au in seg["present"]), float(probs[t, j]))
    return out


def au_table(run: ModelRun, aus: list[str]) -> dict[str, dict]:
    """Per AU: positives, negatives, F1 at 0.5, ROC-AUC, false-positive rate on absent frames."""
    table = {}
    for au in aus:
        if au not in run.y:
            continue
        y, p = np.array(run.y[au]), np.array(run.p[au])
        pos = int(y.sum())
        table[au] = {
            "pos": pos,
            "neg": int(len(y) - pos),
            "f1": float(f1_score(y, p >= 0.5, zero_division=0)) if pos else None,
            "roc_auc": float(roc_auc_score(y, p)) if 0 < pos < len(y) else None,
            "fpr": float(((p >= 0.5) & (y == 0)).sum() / max(1, (y == 0).sum())),
        }
    return table


def evaluate(models: dict[str, tuple[Model, list | None]], edits: bool = False) -> dict:
    """{model name: {"aus": au_table, "macro_f1", "face_rate", "noface_rate", "skipped"}}."""
    labels = load_labels()
    aus = list(labels["aus"])
    items = labelled_media()
    report: dict = {"aus": aus, "items": [i.name for i in items], "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if edits:
            videos = [
                i for i in items if i.kind == "video" and any("present" in s for s in i.segments)
            ]
            for item in videos:
                for e in EDITS:
                    path = edited(item.path, e, Path(tmp))
                    items.append(
                        LabelledMedia(f"{item.name} ({e})", path, "video", e, item.segments)
                    )
            report["items"] = [i.name for i in items]
        for name, (model, streams) in models.items():
            run = run_model(model, items, aus, streams)
            table = au_table(run, aus)
            f1s = [v["f1"] for v in table.values() if v["f1"] is not None]
            report["models"][name] = {
                "aus": table,
                "macro_f1": float(np.mean(f1s)) if f1s else None,
                "face_rate": float(np.mean(run.face_frames)) if run.face_frames else None,
                "noface_rate": 1.0 - float(np.mean(run.noface_hits)) if run.noface_hits else None,
                "skipped": run.skipped,
            }
    return report


def format_report(report: dict) -> str:
    names = list(report["models"])
    width = max(12, *(len(n) for n in names))
    lines = [
        "real faces, labelled by eye (not a certified FACS coding): F1 at 0.5 / ROC-AUC per AU; "
        "for an AU with no positive frame, the false-positive rate (fp)",
        f"{'AU':>4} {'pos':>5} {'neg':>5}  " + "  ".join(f"{n:>{width}}" for n in names),
    ]
    first = report["models"][names[0]]["aus"]
    for au in report["aus"]:
        rows = [report["models"][n]["aus"].get(au) for n in names]
        ref = next((r for r in rows if r), first.get(au))
        if ref is None:
            continue
        cells = []
        for r in rows:
            if r is None:
                cells.append(f"{'–':>{width}}")
            elif r["f1"] is None:
                cells.append(f"{'fp ' + format(r['fpr'], '.2f'):>{width}}")
            else:
                auc = "–" if r["roc_auc"] is None else f"{r['roc_auc']:.2f}"
                cells.append(f"{r['f1']:.2f} / {auc}".rjust(width))
        lines.append(f"{au:>4} {ref['pos']:>5} {ref['neg']:>5}  " + "  ".join(cells))

    def fmt(v):
        return "–" if v is None else f"{v:.2f}"

    for key, title in (("macro_f1", "macro F1"), ("face_rate", "face found"),
                       ("noface_rate", "no face kept")):  # fmt: skip
        cells = [fmt(report["models"][n][key]).rjust(width) for n in names]
        lines.append(f"{title:>16}  " + "  ".join(cells))
    for n in names:
        if report["models"][n]["skipped"]:
            lines.append(f"  {n} skipped: {', '.join(report['models'][n]['skipped'])}")
    return "\n".join(lines)
