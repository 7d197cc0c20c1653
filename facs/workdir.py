"""Shared plumbing of the preprocessing stages: the work directory's files, atomic writes, and
per-item parallel maps with a progress bar."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facs.errors import FacsError


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FacsError(f"{path}: no {what} (run the stage that writes it first)") from None
    except json.JSONDecodeError as exc:
        raise FacsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def write_json(path: Path, data, indent: int | None = 1) -> None:
    """Write JSON to a temp file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npy(path: Path, array: np.ndarray) -> None:
    """np.save to a temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_index(work: Path) -> dict:
    """WORK/index.json (docs/formats.md §2)."""
    index = read_json(Path(work) / "index.json", "index.json")
    if "clips" not in index:
        raise FacsError(f'{Path(work) / "index.json"}: no "clips" list')
    return index


def load_split(work: Path) -> dict:
    """WORK/split.json (docs/formats.md §3)."""
    split = read_json(Path(work) / "split.json", "split.json")
    if "parts" not in split:
        raise FacsError(f'{Path(work) / "split.json"}: no "parts"')
    return split


def data_root(index: dict, work: Path, override: Path | None = None) -> Path:
    """The corpus root: --data, else index.json's root (relative: to the index's folder)."""
    if override is not None:
        return Path(override)
    root = index.get("root")
    if not root:
        raise FacsError(f'{Path(work) / "index.json"}: no "root" (pass --data)')
    root = Path(root)
    return root if root.is_absolute() else (Path(work) / root).resolve()


def clip_parts(index: dict, split: dict) -> dict[str, list[dict]]:
    """Clips of each split part, in index order."""
    part_of = {}
    for part, subjects in split["parts"].items():
        for s in subjects:
            part_of[str(s)] = part
    parts: dict[str, list[dict]] = {p: [] for p in split["parts"]}
    for clip in index["clips"]:
        part = part_of.get(str(clip["subject"]))
        if part is not None:
            parts[part].append(clip)
    return parts


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one clip per process: OpenCV's own threads would oversubscribe
    # tqdm's default lock is a multiprocessing semaphore; a pool worker is ended by SIGTERM, and
    # the semaphore would be reported as leaked at exit. Bars only draw in the parent anyway.
    tqdm.set_lock(threading.RLock())


def parallel_map(
    func: Callable, items: Iterable, workers: int, desc: str, unit: str = "clip"
) -> Iterator:
    """func(item) for every item, results in completion order, with a tqdm bar.

    workers <= 1 runs in this process (easier to debug, no pickling)."""
    items = list(items)
    if not items:
        return
    bar = tqdm(total=len(items), desc=desc, unit=unit, dynamic_ncols=True, leave=True)
    try:
        if workers <= 1 or len(items) <= 1:
            for item in items:
                yield func(item)
                bar.update(1)
        else:
            # forkserver/spawn, never plain fork: a fork of a process whose OpenCV thread pool
            # already ran deadlocks in the child's first parallel OpenCV call
            methods = mp.get_all_start_methods()
            ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
            with ctx.Pool(min(workers, len(items)), initializer=_init_worker) as pool:
                for result in pool.imap_unordered(func, items):
                    yield result
                    bar.update(1)
    finally:
        bar.close()
