"""`facs synth`: the synthetic MMI-format corpus, clip by clip, in parallel.

Each clip is made from its own random streams, seeded by (seed, subject, clip), so the output
is the same file for file whatever the number of workers. OUT/corpus.json is written last: a
corpus without it (or with other parameters) is unfinished and is made again.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from facs.errors import FacsError
from facs.synth import layouts
from facs.synth.identity import FRAME_H, FRAME_W, sample_identity, sample_style
from facs.synth.render import ClipRenderer
from facs.synth.timeline import AUS, FPS, ClipPlan, plan_clip
from facs.synth.writer import AviWriter, clip_name, oao_xml, session_xml, truth_json, write_text

VERSION = 2  # bump when the drawing or the plans change: an older corpus is then made again
_OUR_FILE = re.compile(
    r"^(\.?S\d+-\d+(\.avi|-oao_aucs\.xml|-truth\.json)(\.partial)?|"
    r"\.S\d+-\d+\.partial\.avi|\.?session\.xml(\.partial)?)$"
)


PARTIAL = ".facs-synth-partial"  # a layout corpus being written (safe to clear and redo)


def _params(subjects: int, clips_per_subject: int, seed: int, layout: str = "mmi") -> dict:
    params = {"subjects": subjects, "clips_per_subject": clips_per_subject, "seed": seed}
    if layout != "mmi":  # an MMI corpus keeps the corpus.json it always had
        params["layout"] = layout
    return params


def _rngs(seed: int, subject: int, clip: int):
    """Independent streams: identity (per subject), AU plan and filming style (per clip)."""
    return (
        np.random.default_rng([seed, subject, 0, 0]),
        np.random.default_rng([seed, subject, clip + 1, 1]),
        np.random.default_rng([seed, subject, clip + 1, 2]),
    )


def render_clip(seed: int, subject: int, clip: int) -> tuple[ClipPlan, ClipRenderer]:
    """The AU plan of one clip and the renderer that draws its frames."""
    ident_rng, plan_rng, style_rng = _rngs(seed, subject, clip)
    ident = sample_identity(ident_rng)
    plan = plan_clip(plan_rng)
    style = sample_style(style_rng, ident)
    return plan, ClipRenderer(ident, style, style_rng, FPS)


def _frames(plan: ClipPlan, renderer: ClipRenderer):
    codes = list(plan.intensity)
    for i in range(plan.frames):
        au = {c: float(plan.intensity[c][i]) for c in codes if plan.intensity[c][i] > 0}
        yield renderer.frame(i, au)[0]


def make_task(task: tuple) -> dict:
    """Render and write one unit of work in the corpus's layout (a clip; for DISFA a subject's
    clips); returns its counts. Runs in a worker process."""
    layout, root, seed, subject, clips, session = task
    if layout == "mmi":
        return make_clip((root, seed, subject, clips[0], session))
    root = Path(root)
    rendered = []
    for c in clips:
        plan, renderer = render_clip(seed, subject, c)
        rendered.append((plan, _frames(plan, renderer)))
    if layout == "disfa":
        frames = layouts.write_disfa_subject(root, subject, FPS, (FRAME_W, FRAME_H), rendered)
    elif layout == "bp4d":
        rng = np.random.default_rng([seed, subject, clips[0] + 1, 3])
        frames = layouts.write_bp4d_clip(root, subject, clips[0], rendered[0], rng)
    else:
        frames = layouts.write_ckplus_clip(root, subject, clips[0], rendered[0])
    positives: dict[str, int] = {}
    for plan, _ in rendered:
        for c, v in plan.intensity.items():
            positives[c] = positives.get(c, 0) + int((v > 0).sum())
    return {"frames": frames, "positives": positives}


def make_clip(task: tuple[str, int, int, int, int]) -> dict:
    """Render and write one clip in MMI's layout; returns its counts."""
    root, seed, subject, clip, session = task
    plan, renderer = render_clip(seed, subject, clip)

    name = clip_name(subject, session)
    folder = Path(root) / "Sessions" / str(session)
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / f"{name}.avi"
    tmp = folder / f".{name}.partial.avi"
    writer = AviWriter(tmp, FPS, (FRAME_W, FRAME_H))
    boxes = []
    codes = list(plan.intensity)
    try:
        for i in range(plan.frames):
            au = {c: float(plan.intensity[c][i]) for c in codes if plan.intensity[c][i] > 0}
            frame, box = renderer.frame(i, au)
            writer.write(frame)
            boxes.append(box)
    finally:
        writer.close()
    write_text(folder / f"{name}-oao_aucs.xml", oao_xml(plan))
    write_text(folder / "session.xml", session_xml(session, subject, video.name))
    write_text(
        folder / f"{name}-truth.json", truth_json(plan, subject, FPS, (FRAME_W, FRAME_H), boxes)
    )
    os.replace(tmp, video)
    positives = {c: int((plan.intensity[c] > 0).sum()) for c in codes}
    return {"frames": plan.frames, "positives": positives}


def is_synthetic(root: Path) -> bool:
    """Whether a data root is a corpus `facs synth` drew (its corpus.json says so)."""
    try:
        doc = json.loads((Path(root) / "corpus.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("generator") == "facs.synth"


def _is_done(root: Path, params: dict) -> bool:
    try:
        doc = json.loads((root / "corpus.json").read_text())
    except (OSError, ValueError):
        return False
    return doc.get("version") == VERSION and doc.get("params") == params


def _clear(root: Path) -> None:
    """Remove an unfinished or outdated corpus, but never a folder that is not one."""
    if not root.exists():
        return
    if not root.is_dir():
        raise FacsError(f"{root}: exists and is not a folder")
    entries = {e.name for e in root.iterdir()}
    layout_dirs = {d for names in layouts.TOP.values() for d in names} - {"Sessions"}
    if entries & layout_dirs:
        # another layout: ours only with our corpus.json or our unfinished-run marker
        if not (is_synthetic(root) or PARTIAL in entries):
            raise FacsError(f"{root}: not a corpus written by facs synth; refusing to overwrite")
        stray = entries - layout_dirs - {"corpus.json", PARTIAL}
        if stray:
            raise FacsError(f"{root}: holds {sorted(stray)[0]!r}; refusing to overwrite")
        for name in entries & layout_dirs:
            shutil.rmtree(root / name)
        (root / "corpus.json").unlink(missing_ok=True)
        return
    for entry in root.iterdir():
        if entry.name not in ("Sessions", "corpus.json"):
            raise FacsError(
                f"{root}: holds {entry.name!r}, not a synthetic corpus; refusing to overwrite"
            )
    sessions = root / "Sessions"
    if sessions.is_dir():
        for folder in sessions.iterdir():
            names = [p.name for p in folder.iterdir()] if folder.is_dir() else [folder.name]
            ours = folder.is_dir() and all(_OUR_FILE.match(n) for n in names)
            # a real MMI session has no -truth.json; an unfinished clip still has its .partial
            if not ours or (
                names and not any(n.endswith(("-truth.json", ".partial.avi")) for n in names)
            ):
                raise FacsError(
                    f"{folder}: not written by facs synth; refusing to overwrite {root}"
                )
        shutil.rmtree(sessions)
    (root / "corpus.json").unlink(missing_ok=True)


def generate(
    root: str | Path,
    subjects: int = 240,
    clips_per_subject: int = 2,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
    force: bool = False,
    layout: str = "mmi",
) -> Path:
    """Write the corpus under root in `layout` (mmi, disfa, bp4d, ckplus: facs.synth.layouts);
    skipped if root/corpus.json says it is already there."""
    root = Path(root)
    if subjects < 1 or clips_per_subject < 1:
        raise FacsError("facs synth: --subjects and --clips-per-subject must be at least 1")
    if layout not in layouts.LAYOUTS:
        raise FacsError(f"facs synth: --layout {layout!r}: expected {', '.join(layouts.LAYOUTS)}")
    params = _params(subjects, clips_per_subject, seed, layout)
    if not force and _is_done(root, params):
        return root
    _clear(root)
    root.mkdir(parents=True, exist_ok=True)
    if layout == "mmi":
        (root / "Sessions").mkdir(parents=True, exist_ok=True)
    else:
        (root / PARTIAL).touch()
    tasks = []
    for s in range(subjects):
        if layout == "disfa":  # one video per subject: its clips in a row
            tasks.append((layout, str(root), seed, s + 1, tuple(range(clips_per_subject)), 0))
            continue
        for c in range(clips_per_subject):
            tasks.append((layout, str(root), seed, s + 1, (c,), s * clips_per_subject + c + 1))
    from tqdm import tqdm

    results = []
    bar = tqdm(total=len(tasks), unit="clip", desc="facs synth", disable=not progress)
    if workers <= 1:
        for t in tasks:
            results.append(make_task(t))
            bar.update()
    else:
        # not "fork": a fork of a process whose OpenCV/BLAS threads hold a lock can deadlock
        # (it did under pytest); the fork server imports this module once, then forks workers
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["facs.synth.corpus"])
        with ctx.Pool(workers, initializer=_worker_init) as pool:
            for r in pool.imap_unordered(make_task, tasks, chunksize=2):
                results.append(r)
                bar.update()
    bar.close()
    frames = sum(r["frames"] for r in results)
    positives = {au: sum(r["positives"].get(au, 0) for r in results) for au in AUS}
    doc = {
        "generator": "facs.synth",
        "version": VERSION,
        "params": params,
        "fps": FPS,
        "width": FRAME_W,
        "height": FRAME_H,
        "labels": AUS,
        **({"layout": layout} if layout != "mmi" else {}),
        "counts": {
            "subjects": subjects,
            "clips": subjects * clips_per_subject,
            "frames": frames,
            "positive_frames": positives,
        },
    }
    write_text(root / "corpus.json", json.dumps(doc, indent=1) + "\n")
    (root / PARTIAL).unlink(missing_ok=True)
    return root


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would only contend


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="corpus folder (e.g. data/synth)")
    parser.add_argument("--subjects", type=int, default=240, help="number of subjects (240)")
    parser.add_argument("--clips-per-subject", type=int, default=2, help="clips per subject (2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--workers", type=int, default=2, help="processes (2)")
    parser.add_argument("--force", action="store_true", help="write it again even if complete")
    parser.add_argument(
        "--layout",
        choices=layouts.LAYOUTS,
        default="mmi",
        help="on-disk format: mmi (default), disfa, bp4d or ckplus (facs/synth/layouts.py)",
    )


def run(args: argparse.Namespace) -> int:
    root = Path(args.out)
    params = _params(args.subjects, args.clips_per_subject, args.seed, args.layout)
    if not args.force and _is_done(root, params):
        print(f"facs synth: {root} already holds this corpus ({params}); nothing to do")
        return 0
    start = time.perf_counter()
    generate(
        root,
        args.subjects,
        args.clips_per_subject,
        args.seed,
        args.workers,
        force=True,
        layout=args.layout,
    )
    counts = json.loads((root / "corpus.json").read_text())["counts"]
    secs = time.perf_counter() - start
    print(
        f"facs synth: wrote {counts['clips']} clips, {counts['frames']} frames, "
        f"{counts['subjects']} subjects to {root} in {secs:.1f} s "
        f"({counts['frames'] / secs:.0f} frames/s, {args.workers} workers)"
    )
    return 0
