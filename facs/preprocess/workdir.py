"""The work directory's layout, record keys, and per-clip parallel maps with a progress bar.

    WORK/index.json  split.json              facs.datasets.index / .split
    WORK/faces/<clip>.npy  <clip>.json       facs faces  (crops + metadata, written last)
    WORK/flow/s<k>/<clip>.npy  <clip>.json   facs flow
    WORK/lmdb/<config>/...                   facs lmdb
    WORK/scores/<config>/<stream>_<part>.npz facs train-stream, fuse (facs.evaluation.scores)
    WORK/report/<config>/...                 facs evaluate

LMDB record keys are "{i:08d}_{clip}_{frame:05d}" plus "_{aug}" for a bootstrapped copy
(`record_key`, `parse_record_key`): they sort in record order and name the clip and frame.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facs.datasets.index import Index
from facs.errors import FacsError
from facs.fileio import read_json

_KEY = re.compile(r"^(\d{8})_(.+)_(\d{5})(?:_([rb][+-][0-9.]+))?$")


def faces_dir(work: Path) -> Path:
    return Path(work) / "faces"


def flow_dir(work: Path, stride: int) -> Path:
    return Path(work) / "flow" / f"s{stride}"


def lmdb_dir(work: Path, config: str) -> Path:
    return Path(work) / "lmdb" / config


def scores_dir(work: Path, config: str) -> Path:
    return Path(work) / "scores" / config


def face_meta(work: Path, clip_id: str) -> dict | None:
    """WORK/faces/<clip>.json, or None when the faces stage has not done the clip."""
    path = faces_dir(work) / f"{clip_id}.json"
    return read_json(path, "face metadata") if path.is_file() else None


def load_crops(work: Path, clip_id: str) -> np.ndarray:
    """N x S x S x 3 masked face crops of a clip (memory-mapped)."""
    path = faces_dir(work) / f"{clip_id}.npy"
    if not path.is_file():
        raise FacsError(f"{path}: no face crops of clip {clip_id} (run `facs faces` first)")
    return np.load(path, mmap_mode="r")


def load_flows(work: Path, clip_id: str, stride: int) -> np.ndarray:
    """(N - stride) x S x S x 2 encoded flows of a clip (memory-mapped)."""
    path = flow_dir(work, stride) / f"{clip_id}.npy"
    if not path.is_file():
        raise FacsError(f"{path}: no flow of clip {clip_id} (run `facs flow` first)")
    return np.load(path, mmap_mode="r")


def record_key(i: int, clip: str, frame: int, aug: str = "") -> str:
    return f"{i:08d}_{clip}_{frame:05d}" + (f"_{aug}" if aug else "")


def parse_record_key(key: str) -> tuple[str, int, str]:
    """(clip id, frame, aug) of a record key."""
    m = _KEY.match(str(key))
    if m is None:
        raise FacsError(f"record key {key!r}: not '<i>_<clip>_<frame>[_<aug>]'")
    return m.group(2), int(m.group(3)), m.group(4) or ""


def keys_frames_clips(keys) -> tuple[np.ndarray, np.ndarray]:
    """Frame numbers and clip ids of record keys (the temporal fusion's neighbourhoods)."""
    parsed = [parse_record_key(k) for k in keys]
    return np.asarray([p[1] for p in parsed]), np.asarray([p[0] for p in parsed])


def key_subjects(keys, index: Index) -> np.ndarray:
    """Subject of each record key, from the index's clips."""
    subject = {c.id: str(c.subject) for c in index.clips}
    return np.asarray([subject.get(parse_record_key(k)[0], "") for k in keys], dtype=str)


def clip_parts(index: Index, split: dict) -> dict[str, list]:
    """Clips of each split part, in index order."""
    part_of = {str(s): part for part, subjects in split["parts"].items() for s in subjects}
    parts: dict[str, list] = {p: [] for p in split["parts"]}
    for clip in index.clips:
        part = part_of.get(str(clip.subject))
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
