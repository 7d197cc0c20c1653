"""`facs analyze`: a per-frame AU table for any video, in the style of OpenFace's FeatureExtraction.

    facs analyze VIDEO_OR_DIR... [-o OUT] [--model DIR|NAME|geometry] [--format csv|json]
                 [--streams geometry,spatial,flow]

One CSV per video: `frame, timestamp, confidence, success`, then a probability column per AU
(`AU01_p`, `AU02_p`, ...) and a 0/1 presence column per AU (`AU01_c`, ...; probability >= the
model's threshold for that AU). `frame` is 0-based (OpenFace counts from 1) and
`timestamp = frame / fps`; one row per decoded frame; `success` is 0 on frames without a face
(their probabilities are 0). `--format json` writes facs.analysis.predict's full result instead.

OUT is a folder (default `facs_out/`), or a file name ending in .csv/.json for a single video.
A directory argument means every video file in it. A video in which no face is found still gets
its table (every row success = 0) and a message; a video that cannot be decoded is reported by
name, the other videos are still analysed, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from facs.analysis.model import default_model, load_model
from facs.analysis.predict import predict_video
from facs.aus import au_label, column_prefix
from facs.errors import FacsError
from facs.fileio import atomic_path, write_text

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".y4m"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", type=Path, help="video files or folders of videos")
    parser.add_argument(
        "-o", "--out", type=Path, default=Path("facs_out"), help="output folder (or file)"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model folder or name under models/ (default: the newest, else 'geometry')",
    )
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    parser.add_argument(
        "--streams",
        default=None,
        help="comma-separated subset of the model's streams (geometry, spatial, flow)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def expand_videos(paths: list[Path]) -> list[Path]:
    """Files as given; folders -> their video files (sorted). Missing paths raise FacsError."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTS)
            if not found:
                raise FacsError(
                    f"{p}: folder holds no video files ({', '.join(sorted(VIDEO_EXTS))})"
                )
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise FacsError(f"{p}: no such file or folder")
    return out


def table(result: dict):
    """facs.analysis.predict result -> pandas DataFrame in the OpenFace-style column layout."""
    labels = result["labels"]
    rows = result["per_frame"]
    n = len(rows)
    probs = np.array([r["probs"] for r in rows], dtype=np.float64).reshape(n, len(labels))
    thr = np.array([result["thresholds"][c] for c in labels], dtype=np.float64)
    fps = float(result["fps"])
    frame = np.arange(n)
    data = {
        "frame": frame,
        "timestamp": frame / fps,
        "confidence": [r["confidence"] for r in rows],
        "success": [int(r["face"]) for r in rows],
    }
    for j, c in enumerate(labels):
        data[f"{column_prefix(c)}_p"] = probs[:, j]
    for j, c in enumerate(labels):
        data[f"{column_prefix(c)}_c"] = (probs[:, j] >= thr[j]).astype(int)
    return pd.DataFrame(data)


def _out_path(out: Path, video: Path, fmt: str, single: bool, used: set[Path]) -> Path:
    if single and out.suffix.lower() in (".csv", ".json"):
        return out
    path = out / f"{video.stem}.{fmt}"
    if path in used:  # same stem in two folders: keep both
        path = out / f"{video.stem}-{video.suffix.lstrip('.')}.{fmt}"
    return path


def write(result: dict, path: Path, fmt: str) -> None:
    """The result as CSV or JSON, written to a temporary file and renamed into place."""
    if fmt == "json":
        write_text(path, json.dumps(result))
    else:
        with atomic_path(path) as tmp:
            table(result).to_csv(tmp, index=False, float_format="%.4f")


def summary(result: dict, seconds: float) -> str:
    n, faces = result["frames"], result["faces"]
    speed = n / seconds if seconds > 0 else 0.0
    head = (
        f"{result['video']}: {n} frames at {result['fps']:.2f} fps, face in {faces} "
        f"({100.0 * faces / max(n, 1):.0f} %), {speed:.1f} frames/s "
        f"({speed / max(result['fps'], 1e-6):.2f}x real time)"
    )
    if not faces:
        return head + "\n  no face was found in any frame: every row has success = 0"
    top = ", ".join(f"{au_label(t['code'])} {t['prob']:.2f}" for t in result["top5"])
    return head + f"\n  top AUs (90th percentile over face frames): {top}"


def run(args: argparse.Namespace) -> int:
    videos = expand_videos(args.videos)
    if len(videos) > 1 and args.out.suffix.lower() in (".csv", ".json"):
        raise FacsError(f"-o {args.out}: {len(videos)} videos need an output folder, not a file")
    model = load_model(args.model or default_model())
    streams = [s.strip() for s in args.streams.split(",") if s.strip()] if args.streams else None
    bad = [s for s in streams or [] if s not in model.streams]
    if bad:
        raise FacsError(
            f"--streams: model {model.name} has no {', '.join(bad)} stream "
            f"(it has: {', '.join(model.streams)})"
        )
    print(f"facs analyze: model {model.name} ({', '.join(streams or list(model.streams))})")
    failed: list[str] = []
    used: set[Path] = set()
    for video in videos:
        bar = tqdm(
            total=None,
            unit="frame",
            desc=video.name,
            disable=args.quiet,
            leave=False,
            file=sys.stderr,
        )

        def progress(done: int, total: int | None = None, bar=bar) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        t0 = time.perf_counter()
        try:
            result = predict_video(video, model, streams=streams, progress=progress)
        except FacsError as exc:
            bar.close()
            print(f"facs analyze: error: {exc}", file=sys.stderr)
            failed.append(str(video))
            continue
        bar.close()
        seconds = time.perf_counter() - t0
        out = _out_path(args.out, video, args.format, len(videos) == 1, used)
        used.add(out)
        write(result, out, args.format)
        print(summary(result, seconds))
        print(f"  -> {out}")
    if failed:
        print(f"facs analyze: {len(failed)} of {len(videos)} video(s) failed: {', '.join(failed)}")
        return 2
    return 0
