"""`facs analyze`: a per-frame AU table for any video, in the style of OpenFace's FeatureExtraction.

    facs analyze VIDEO|PHOTO|DIR... [-o OUT] [--model face|blendshapes|geometry|DIR|NAME]
                 [--format csv|json] [--streams spatial,flow,face] [--fps 30]

The default model is the built-in real-face model (`face`: MediaPipe's landmarks and
blendshapes, facs.analysis.realface); a model trained on the synthetic corpus runs only when
named, and the summary then says that it learned drawn faces.

One CSV per video: `frame, timestamp, confidence, success`, then a probability column per AU
(`AU01_p`, `AU02_p`, ...) and a 0/1 presence column per AU (`AU01_c`, ...; probability >= the
model's threshold for that AU). `frame` is 0-based (OpenFace counts from 1) and
`timestamp = frame / fps`; one row per decoded frame; `success` is 0 on frames without a face
(their probabilities are 0). `--format json` writes facs.analysis.predict's full result instead.

OUT is a folder (default `facs_out/`), or a file name ending in .csv/.json for a single input.
A still image (`photo.jpg`) is one row. A folder argument means every video file in it; a
folder without videos but with images is one image sequence (frames in name order, `--fps`,
as CK+ stores its sessions). A video in which no face is found still gets
its table (every row success = 0) and a message; a video that cannot be decoded is reported by
name, the other videos are still analysed, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from facs.analysis import batch
from facs.analysis.model import default_model, load_model
from facs.analysis.predict import Prediction, stream_names
from facs.aus import au_label
from facs.errors import FacsError
from facs.fileio import check_writable, write_text
from facs.video import IMAGE_EXTS, MediaError, check_video, image_files

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".y4m"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "videos",
        nargs="+",
        type=Path,
        help="videos, still images, folders of videos, or folders of images (one sequence each)",
    )
    parser.add_argument(
        "-o", "--out", type=Path, default=Path("facs_out"), help="output folder (or file)"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="built-in model (face: real faces, the default; blendshapes; geometry) or a model "
        "folder / name under models/",
    )
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    parser.add_argument(
        "--streams",
        default=None,
        help="comma-separated streams: the model's, or the built-in face / geometry added to it",
    )
    parser.add_argument(
        "--fps", type=float, default=None, help="frame rate of an image sequence (default 30)"
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="analyse a video that decodes only in part (a warning with the frame counts), "
        "instead of refusing it",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="analyse this many inputs at once in worker processes (default 1)",
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="spread the inputs over the Dask cluster at ADDRESS (tcp://host:8786); inputs and "
        "outputs must be on a file system every worker shares",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="redo inputs an output folder's manifest says are done with this model",
    )


def expand_videos(paths: list[Path]) -> list[Path]:
    """Inputs: files as given; a folder -> its video files (sorted), or the folder itself when
    it holds images but no video (an image sequence). Missing paths raise FacsError."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTS)
            if found:
                out.extend(found)
            elif image_files(p):
                out.append(p)
            else:
                raise FacsError(
                    f"{p}: folder holds no video ({', '.join(sorted(VIDEO_EXTS))}) and no image "
                    f"({', '.join(sorted(IMAGE_EXTS))}) files"
                )
        elif p.exists():
            out.append(p)
        else:
            raise FacsError(f"{p}: no such file or folder")
    return out


def _out_path(out: Path, video: Path, fmt: str, single: bool, used: set[Path]) -> Path:
    if single and out.suffix.lower() in (".csv", ".json"):
        return out
    path = out / f"{video.stem}.{fmt}"
    if path in used:  # same stem in two folders: keep both
        path = out / f"{video.stem}-{video.suffix.lstrip('.')}.{fmt}"
    return path


def write(pred: Prediction, path: Path, fmt: str) -> None:
    """The result as CSV (streamed: flat memory whatever the length) or JSON (every frame's
    entry in memory at once), written to a temporary file and renamed into place."""
    if fmt == "json":
        write_text(path, json.dumps(pred.json()))
    else:
        pred.write_csv(path)


def summary(result: dict, seconds: float) -> str:
    n, faces = result["frames"], result["faces"]
    speed = n / seconds if seconds > 0 else 0.0
    if result.get("input") == "image":
        head = f"{Path(result['video']).name}: a still image, {'a face' if faces else 'no face'}"
    else:
        head = (
            f"{Path(result['video']).name}: {n} frames at {result['fps']:.2f} fps, face in {faces} "
            f"({100.0 * faces / max(n, 1):.0f} %), {speed:.1f} frames/s "
            f"({speed / max(result['fps'], 1e-6):.2f}x real time)"
        )
    if not faces:
        return head + "\n  no face was found in any frame: every row has success = 0"
    top = ", ".join(f"{au_label(t['code'])} {t['prob']:.2f}" for t in result["top5"])
    lines = [head, f"  top AUs (90th percentile over face frames): {top}"]
    for stream, cal in (result.get("calibration") or {}).items():
        how = cal["method"]
        if cal.get("neutral_frames"):
            how += f" ({cal['neutral_frames']} quiet frames)"
        lines.append(f"  calibration of the {stream} stream: {how}")
    return "\n".join(lines)


def check_input(path: Path, allow_partial: bool) -> str | None:
    """facs.video.check_video's judgment of a video input (stills and image folders are read
    as they are): MediaError when it is no video or is broken; with `allow_partial`, a video
    that decodes only in part is analysed and the warning returned."""
    if path.is_dir() or path.suffix.lower() in IMAGE_EXTS:
        return None
    try:
        check_video(path)
    except MediaError as exc:
        if exc.status == 422 and allow_partial and "truncated" in exc.message:
            return f"{path}: WARNING: {exc.message}; analysing the frames that decode"
        raise
    return None


def run(args: argparse.Namespace) -> int:
    videos = expand_videos(args.videos)
    if len(videos) > 1 and args.out.suffix.lower() in (".csv", ".json"):
        raise FacsError(f"-o {args.out}: {len(videos)} videos need an output folder, not a file")
    if args.workers < 1:
        raise FacsError(f"--workers {args.workers}: must be 1 or more")
    source = args.model or default_model()
    model = load_model(source)
    streams = [s.strip() for s in args.streams.split(",") if s.strip()] if args.streams else None
    names = stream_names(model, streams)
    used: set[Path] = set()
    outs = []
    for video in videos:  # every output checked before the first analysis starts
        out = _out_path(args.out, video, args.format, len(videos) == 1, used)
        check_writable(out)
        used.add(out)
        outs.append(out)
    print(f"facs analyze: model {model.name} ({', '.join(names)}), trained on {model.faces}")
    if model.synthetic:
        print(
            "facs analyze: WARNING: this model learned synthetic drawn faces; its numbers on "
            "real faces are not measured by its test F1 (the built-in real-face model: "
            "--model face)"
        )
    folder = str(model.folder) if model.folder is not None else source
    task = batch.Task(
        model=folder,
        streams=tuple(streams) if streams else None,
        fps=args.fps,
        format=args.format,
        allow_partial=args.allow_partial,
        settings=batch.settings_fingerprint(source, model.folder, streams, args.fps, args.format),
    )
    jobs = list(zip(videos, outs, strict=True))
    # An output folder (not one named file) is a batch: resumable, with a summary table.
    out_dir = None if args.out.suffix.lower() in (".csv", ".json") else args.out
    entries = batch.read_manifest(out_dir) if out_dir is not None else {}
    if out_dir is not None:
        batch.clean_temporaries(out_dir, outs)
    todo, earlier = (jobs, []) if out_dir is None or args.force else batch.pending(
        jobs, entries, task.settings
    )  # fmt: skip
    if earlier:
        print(f"facs analyze: {len(earlier)} of {len(jobs)} already done with this model and "
              f"these settings (in {out_dir / batch.MANIFEST}; --force redoes them)")  # fmt: skip
    if args.cluster:
        client = batch.connect(args.cluster)
        print(f"facs analyze: {len(todo)} input(s) on the Dask cluster at {args.cluster}")
        results = batch.run_cluster(todo, task, client)
    elif args.workers > 1 and len(todo) > 1:
        print(f"facs analyze: {len(todo)} input(s) over {args.workers} worker processes")
        results = batch.run_local(todo, task, args.workers)
    else:
        results = _in_process(todo, task, model, args.quiet)
    bar = tqdm(total=len(todo), unit="input", desc="facs analyze", file=sys.stderr,
               disable=args.quiet or len(todo) < 2, position=0)  # fmt: skip
    failed: list[str] = []
    rows = list(earlier)
    for r in results:
        bar.update(1)
        if "error" in r:
            bar.write(f"facs analyze: {r['error']}", file=sys.stderr)
            failed.append(r["video"])
        else:
            if r.get("warning"):
                bar.write(f"facs analyze: {r['warning']}", file=sys.stderr)
            bar.write(summary(r, r["seconds"]))
            bar.write(f"  -> {r['out']}")
            if out_dir is not None:
                batch.record(entries, r, task.settings)
                batch.write_manifest(out_dir, entries)
        rows.append(r)
    bar.close()
    if out_dir is not None and len(rows) > 1:
        print(f"facs analyze: summary of {len(rows)} input(s): {batch.finish(out_dir, rows)}")
    if failed:
        print(f"facs analyze: {len(failed)} of {len(jobs)} input(s) failed: {', '.join(failed)}")
        return 2
    return 0


def _in_process(todo, task: batch.Task, model, quiet: bool):
    """The inputs one after the other in this process, with a progress bar per input."""
    for video, out in todo:
        bar = tqdm(total=None, unit="frame", desc=video.name, disable=quiet, leave=False,
                   file=sys.stderr, position=1)  # fmt: skip

        def progress(done: int, total: int | None = None, bar=bar) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        result = batch.analyse_one(str(video), str(out), task, model, progress)
        bar.close()
        yield result
