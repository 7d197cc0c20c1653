"""The analysis worker processes of the web demo.

Analyses run in separate processes (spawned, `workers` of them), not in the server's threads:
native libraries on the prediction path (dlib's detector, shared per process) are not safe to
call from two threads at once, a crash in native code must not take the server down, and
processes run Python-heavy stages in parallel. Each worker loads the model once
(`init(model_source, progress_queue)`); `analyse(...)` checks the clip by decoding it, runs
facs.analysis.predict.predict_video, makes a VP8 webm preview of an upload the browser cannot
play (HEVC .mov, MJPG .avi, ...) and sends progress messages `(job_id, fraction, stage)` through
the queue, which the server's AnalysisPool thread copies onto the job.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import cv2

from facs.analysis.facemesh import FaceMesh
from facs.analysis.landmarks import LandmarkTracker
from facs.analysis.model import load_model
from facs.analysis.predict import predict_video
from facs.errors import FacsError
from facs.video import MediaError, check_video
from facs.web.jobs import JobError
from facs.web.media import browser_mime, transcode_webm

_MODEL: Any = None
_QUEUE: Any = None


def init(model_source: str, queue: Any, threads: int) -> None:
    """Process initializer: thread counts, then the model (loaded once per worker)."""
    global _MODEL, _QUEUE
    _QUEUE = queue
    _exit_with_parent()
    cv2.setNumThreads(threads)
    # Not importing torch here: a model without CNN streams never needs it; when a CNN stream
    # imports it, it reads these.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    _MODEL = load_model(model_source)
    if any(s.kind != "mediapipe" for s in _MODEL.streams.values()):
        LandmarkTracker()  # dlib finds the faces of this model's streams: load it now
    else:
        FaceMesh(video=True).close()  # load MediaPipe (and fetch its model) now


def _exit_with_parent() -> None:
    """End this worker when the server dies without stopping it (kill -9): no orphans."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(2.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="facs-parent-watch").start()


def _report(job_id: str, fraction: float, stage: str) -> None:
    if _QUEUE is not None:
        _QUEUE.put((job_id, fraction, stage))


def analyse(
    job_id: str,
    path: str,
    display_name: str,
    limit: float,
    streams: list[str] | None = None,
    preview: str | None = None,
) -> dict:
    """Check the clip, predict, and return the JSON-ready result (raises JobError).

    With `preview` (a path), a clip browsers do not play as it is is also transcoded there, and
    the result says so (`"preview": true`): the page shows that instead of the upload."""
    t0 = time.time()
    _report(job_id, 0.0, "checking the video")
    try:
        check = check_video(Path(path), limit if math.isfinite(limit) else 1e9)
    except MediaError as exc:
        raise JobError(exc.status, exc.message) from None
    needs_preview = preview is not None and browser_mime(check.container, check.codec) is None
    share = 0.87 if needs_preview else 0.97  # of the progress bar, for the analysis
    _report(job_id, 0.02, "analysing frames")
    last = [0.0]

    def tell(frac: float, stage: str) -> None:
        if frac - last[0] >= 0.02:  # a message per 2 %: the queue is not free
            last[0] = frac
            _report(job_id, frac, stage)

    def progress(done: int, total: int | None = None) -> None:
        tell(0.02 + share * min(1.0, done / max(1, total or check.frames)), "analysing frames")

    try:
        result = dict(predict_video(Path(path), _MODEL, streams=streams, progress=progress))
    except FacsError as exc:
        raise JobError(422, str(exc).replace(str(path), "the video")) from None
    frames = result.get("per_frame") or []
    if len(check.times) == len(frames):
        # Presentation timestamps, not index/fps: a browser's recording has a variable frame
        # rate, and the page seeks its <video> by these times.
        for f, t in zip(frames, check.times, strict=True):
            f["time"] = round(t, 6)
    if frames and not any(f.get("face") for f in frames):
        result.setdefault("message", "no face was found in any frame of this video")
    if needs_preview:
        _report(job_id, 0.9, "making a preview the browser can play")
        part = Path(preview).with_suffix(".part.webm")
        try:
            transcode_webm(
                Path(path),
                part,
                progress=lambda n: tell(
                    0.9 + 0.09 * min(1.0, n / check.frames), "making a preview"
                ),
            )
            os.replace(part, preview)
            result["preview"] = True
        except Exception:  # noqa: BLE001 - a preview is a convenience; the analysis stands
            part.unlink(missing_ok=True)
    result["video"] = display_name  # never the server's own file name
    result["elapsed_s"] = round(time.time() - t0, 3)
    return result


def ping() -> int:
    """A no-op job: makes a worker start (and load its model) ahead of the first request."""
    return os.getpid()


# ---------------------------------------------------------------------------------------------
# The server's side


class WorkerProcesses:
    """`workers` spawned analysis processes holding the model, each in its own one-process
    executor: a worker that dies (a native crash, out of memory, kill -9) fails only the one
    analysis it was running, and is replaced. `run(job, ...)` blocks a server thread until a
    worker is free and its analysis done, copying progress onto `job` meanwhile."""

    def __init__(self, model_source: str, workers: int, jobs_lookup) -> None:
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self._source = model_source
        self._workers = workers
        self._threads = max(1, (os.cpu_count() or 1) // workers)
        self._queue = self._ctx.Queue()
        self._lookup = jobs_lookup  # job id -> Job | None
        self._free: queue.Queue = queue.Queue()
        self._all = [self._new_executor() for _ in range(workers)]
        for ex in self._all:
            self._free.put(ex)
        self._lock = threading.Lock()
        self._closed = False
        self._listener = threading.Thread(target=self._listen, daemon=True, name="facs-progress")
        self._listener.start()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=self._ctx,
            initializer=init,
            initargs=(self._source, self._queue, self._threads),
        )

    def _listen(self) -> None:
        while True:
            msg = self._queue.get()
            if msg is None:
                return
            job_id, fraction, stage = msg
            job = self._lookup(job_id)
            if job is not None and job.state == "running":
                job.progress = max(job.progress, fraction)
                job.stage = stage

    def warm(self) -> None:
        """Start every worker now (each loads the model), not on the first request."""
        for ex in list(self._all):
            ex.submit(ping)

    def pids(self) -> list[int]:
        """The worker processes' pids (started ones)."""
        return [p.pid for ex in list(self._all) for p in (ex._processes or {}).values()]

    def run(
        self,
        job,
        path: Path,
        name: str,
        limit: float,
        streams: list | None = None,
        preview: Path | None = None,
    ) -> dict:
        while True:
            if self._closed:
                raise JobError(503, "the server is shutting down; try again later")
            try:
                executor = self._free.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        try:
            future = executor.submit(
                analyse, job.id, str(path), name, limit, streams, preview and str(preview)
            )
            return future.result()
        except BrokenProcessPool:
            if self._closed:  # stopped by close() after its grace time
                raise JobError(503, "the server is shutting down; try again later") from None
            # Its worker died: replace it; only this analysis is lost.
            executor.shutdown(wait=False, cancel_futures=True)
            executor = self._replace(executor)
            raise JobError(500, "the analysis worker crashed on this clip; try again") from None
        except RuntimeError:  # the executor was shut down under us
            raise JobError(503, "the server is shutting down; try again later") from None
        finally:
            if executor is not None and not self._closed:
                self._free.put(executor)

    def _replace(self, dead: ProcessPoolExecutor) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._closed:
                return None
            fresh = self._new_executor()
            self._all = [fresh if ex is dead else ex for ex in self._all]
        fresh.submit(ping)  # load the model now, not on the next request
        return fresh

    def close(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop the workers: an analysis running finishes when `wait` (for at most `timeout`
        seconds); waiting ones are refused (503). A worker with no analysis to finish (idle, or
        still loading the model after a start or a crash) is stopped at once: a service
        manager's stop must not wait for a model load on a busy machine."""
        with self._lock:
            self._closed = True
            executors = list(self._all)
        idle = set()  # executors no analysis holds
        while True:
            try:
                idle.add(self._free.get_nowait())
            except queue.Empty:
                break
        deadline = time.monotonic() + (timeout if wait else 0.0)
        for ex in executors:
            procs = list((ex._processes or {}).values())
            ex.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                if ex not in idle:
                    p.join(max(0.0, deadline - time.monotonic()))
                if p.is_alive():
                    p.terminate()
                    p.join(5)
        self._queue.put(None)
        self._listener.join(timeout=5)
