"""Many inputs for `facs analyze`: worker processes on this machine (`--workers N`) or the
workers of a Dask cluster (`--cluster ADDRESS`), resumable, with a summary table.

    jobs = plan(videos, outs)                     # (video, output) pairs
    todo, done = pending(jobs, out_dir, settings)  # what the manifest says is already done
    for result in run_local(todo, task, workers) / run_cluster(todo, task, address): ...

Each input is one task, `analyse_one(video, out, task)`: it loads the model once per worker
process, analyses the input and writes its output (CSV streamed, renamed into place), and
returns a small summary (frames, faces, clip-level probabilities) or the error line. The
calling process alone writes the manifest (OUT/.facs-analyze.json: per output, the input's
size and mtime and the model and settings it was made with), after each task: a batch that is
killed and run again skips what was finished and makes the rest, the same files. It also
writes OUT/facs-summary.csv, one row per input.

Why Dask for clusters: its scheduler already does what a batch of videos needs across
machines — placing tasks on free workers, retrying the tasks of a worker that died, reporting
as tasks finish — with plain functions and no service to run beyond `dask scheduler` and
`dask worker`; the inputs and outputs stay on a file system the workers share (as on an HPC
cluster), so no video bytes travel through the scheduler.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from facs.errors import FacsError, explain
from facs.fileio import write_text

MANIFEST = ".facs-analyze.json"
SUMMARY = "facs-summary.csv"


@dataclass(frozen=True)
class Task:
    """What every input of a batch is analysed with (all plain values: it travels to worker
    processes and cluster workers)."""

    model: str  # a built-in model name or a model folder
    streams: tuple[str, ...] | None
    fps: float | None
    format: str  # csv | json
    allow_partial: bool
    settings: str  # fingerprint of the model files and the options, for the manifest


def settings_fingerprint(model_source: str, folder: Path | None, streams, fps, fmt) -> str:
    """A hash of what determines an output: facs' version, the model (its files' contents
    for a folder, its name for a built-in one), the streams, the fps and the format."""
    from facs import __version__

    h = hashlib.sha256()
    h.update(json.dumps([__version__, model_source, streams, fps, fmt]).encode())
    if folder is not None:
        for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            h.update(f.relative_to(folder).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def input_id(video: Path) -> dict:
    st = Path(video).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


# ---------------------------------------------------------------------------------- manifest


def manifest_path(out_dir: Path) -> Path:
    return Path(out_dir) / MANIFEST


def read_manifest(out_dir: Path) -> dict:
    path = manifest_path(out_dir)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged manifest only costs re-analysis
    return data.get("outputs", {}) if isinstance(data, dict) else {}


def write_manifest(out_dir: Path, entries: dict) -> None:
    write_text(manifest_path(out_dir), json.dumps({"format": "facs-analyze/1", "outputs": entries}))


def pending(
    jobs: list[tuple[Path, Path]], entries: dict, settings: str
) -> tuple[list[tuple[Path, Path]], list[dict]]:
    """(jobs still to run, summaries of those done earlier with the same input and settings
    whose output is still there)."""
    todo, done = [], []
    for video, out in jobs:
        e = entries.get(out.name)
        if (
            e is not None
            and e.get("settings") == settings
            and e.get("input") == input_id(video)
            and out.is_file()
        ):
            done.append(e["summary"])
        else:
            todo.append((video, out))
    return todo, done


def clean_temporaries(out_dir: Path, outs: list[Path]) -> int:
    """Remove the temporary files a killed run left beside these outputs, the manifest and the
    summary (facs.fileio's `.<name>.*.tmp`); one batch per output folder at a time. The number
    removed."""
    n = 0
    for out in [*outs, Path(MANIFEST), Path(SUMMARY)]:
        for tmp in Path(out_dir).glob(f".{out.name}.*.tmp*"):
            tmp.unlink(missing_ok=True)
            n += 1
    return n


# ---------------------------------------------------------------------------------- one input

_MODELS: dict = {}


def _model(source: str):
    """The model, loaded once per worker process."""
    if source not in _MODELS:
        from facs.analysis.model import load_model

        _MODELS[source] = load_model(source)
    return _MODELS[source]


def analyse_one(video: str, out: str, task: Task, model=None, progress=None) -> dict:
    """Analyse one input and write its output; a summary, or {"error": line} (a worker never
    raises for a bad input: the batch goes on). `model`: the loaded model (default: this
    process' copy of task.model)."""
    from facs.analysis.analyze import check_input, write
    from facs.analysis.predict import predict

    _cv2_threads_as_omp()
    t0 = time.perf_counter()
    try:
        warning = check_input(Path(video), task.allow_partial)
        streams = list(task.streams) if task.streams else None
        pred = predict(video, model or _model(task.model), streams, progress, task.fps)
        write(pred, Path(out), task.format)
    except (FacsError, OSError) as exc:
        return {"video": video, "out": out, "error": explain(exc)[0]}
    m = pred.meta
    return {
        "video": video,
        "out": out,
        "warning": warning,
        "seconds": round(time.perf_counter() - t0, 3),
        **{k: m[k] for k in ("input", "frames", "fps", "faces", "clip", "top5", "calibration")},
        **{k: m[k] for k in ("labels", "model")},
    }


def _cv2_threads_as_omp() -> None:
    """OpenCV's threads as many as OMP_NUM_THREADS says. A Dask worker process gets
    OMP_NUM_THREADS=1 from its nanny (one core per worker process), which torch follows and
    OpenCV ignores: without this, two workers on two cores each ran OpenCV on both."""
    n = os.environ.get("OMP_NUM_THREADS", "")
    if n.isdigit() and int(n) > 0:
        import cv2

        if cv2.getNumThreads() != int(n):
            cv2.setNumThreads(int(n))


def _init_worker(threads: int) -> None:
    """A worker process: its share of the cores (set before torch or OpenCV start threads)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    _cv2_threads_as_omp()


# ---------------------------------------------------------------------------------- runners


def run_local(jobs: list[tuple[Path, Path]], task: Task, workers: int) -> Iterator[dict]:
    """Summaries as the inputs finish, from `workers` spawned processes on this machine."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(threads,)) as pool:  # fmt: skip
        futures = [pool.submit(analyse_one, str(v), str(o), task) for v, o in jobs]
        for f in as_completed(futures):
            yield f.result()


def connect(address: str, timeout: float = 10.0):
    """A client of the Dask cluster at `address` (tcp://host:8786, started with `dask
    scheduler` and `dask worker`); FacsError when it cannot be reached."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise FacsError(f"--cluster needs dask.distributed ({exc})") from None
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise FacsError(
            f"--cluster {address}: cannot reach the Dask scheduler ({exc.__class__.__name__})"
        ) from None


def run_cluster(jobs: list[tuple[Path, Path]], task: Task, client) -> Iterator[dict]:
    """Summaries as the inputs finish, from the workers of a Dask cluster (`connect`). Inputs
    and outputs are paths on a file system every worker shares."""
    from distributed import as_completed as dask_completed

    try:
        futures = [
            client.submit(analyse_one, str(v), str(o), task, pure=False, key=f"facs-{o.name}")
            for v, o in jobs
        ]
        for f in dask_completed(futures):
            yield f.result()
    finally:
        client.close()


# ---------------------------------------------------------------------------------- summary


def summary_table(rows: list[dict]) -> str:
    """CSV: one row per input — video, output, frames, fps, faces, face_rate, then the
    clip-level probability (90th percentile over face frames) of every AU."""
    import pandas as pd

    from facs.aus import column_prefix

    labels: list[str] = []
    for r in rows:
        for c in r.get("labels") or []:
            if c not in labels:
                labels.append(c)
    table = []
    for r in sorted(rows, key=lambda r: r["video"]):
        row = {
            "video": r["video"],
            "output": Path(r["out"]).name,
            "frames": r.get("frames"),
            "fps": r.get("fps"),
            "faces": r.get("faces"),
            "face_rate": (r["faces"] / r["frames"]) if r.get("frames") else None,
            "error": r.get("error", ""),
        }
        for c in labels:
            row[f"{column_prefix(c)}_clip"] = (r.get("clip") or {}).get(c)
        table.append(row)
    return pd.DataFrame(table).to_csv(index=False, float_format="%.4f")


def finish(out_dir: Path, rows: list[dict]) -> Path:
    """Write the batch's summary table (OUT/facs-summary.csv)."""
    path = Path(out_dir) / SUMMARY
    write_text(path, summary_table(rows))
    return path


def record(entries: dict, summary: dict, settings: str) -> None:
    """Note a finished input in the manifest entries (the caller writes them)."""
    out = Path(summary["out"])
    entries[out.name] = {
        "video": summary["video"],
        "input": input_id(Path(summary["video"])),
        "settings": settings,
        "summary": summary,
    }
