"""A bounded pool of analysis workers for the web demo.

`AnalysisPool(workers, queue)` runs at most `workers` analyses at once and holds at most
`queue` more waiting; a submission beyond that raises `PoolFull` at once (the app answers
503 with Retry-After) instead of growing an unbounded queue. Every submission is a `Job`
with a progress fraction the page polls; finished jobs are kept for a while (bounded count
and age) so that a client can fetch the result, then dropped together with the files the job
made (a playable preview of an upload).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class PoolFull(Exception):
    """Every worker is busy and the waiting room is full."""


@dataclass
class Job:
    id: str
    state: str = "queued"  # queued -> running -> done | error
    progress: float = 0.0  # 0..1 while running
    stage: str = "waiting for a worker"
    result: Any = None
    error: tuple[int, str] | None = None  # (HTTP status, message)
    created: float = field(default_factory=time.time)
    finished: float | None = None
    done_event: threading.Event = field(default_factory=threading.Event, repr=False)
    files: list[Path] = field(default_factory=list, repr=False)  # deleted with the job

    def discard(self) -> None:
        """Delete the job's files (its preview): the job is gone or the server stops."""
        for f in self.files:
            f.unlink(missing_ok=True)

    def public(self) -> dict:
        """The job as the REST API shows it (without the result)."""
        out = {"id": self.id, "state": self.state, "progress": round(self.progress, 4)}
        out["stage"] = self.stage
        if self.error is not None:
            out["status"], out["error"] = self.error
        return out


class AnalysisPool:
    """At most `workers` running and `queue` waiting analyses; results kept `keep_s` seconds."""

    def __init__(self, workers: int = 2, queue: int = 2, keep: int = 64, keep_s: float = 600.0):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self.capacity = workers + max(0, queue)
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="facs-analysis")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._keep, self._keep_s = keep, keep_s
        self._running = 0

    def submit(self, fn: Callable[[Job], Any], cleanup: Callable[[], None] | None = None) -> Job:
        """Run `fn(job)` on a worker; `cleanup()` runs afterwards whatever happens.

        `fn` returns the result or raises `JobError(status, message)`; any other exception is
        recorded as a 500. Raises PoolFull (after running `cleanup`) when no slot is free.
        """
        if not self._slots.acquire(blocking=False):
            if cleanup is not None:
                cleanup()
            raise PoolFull()
        job = Job(id=secrets.token_hex(12))
        with self._lock:
            self._prune()
            self._jobs[job.id] = job
        try:
            self._executor.submit(self._run, job, fn, cleanup)
        except RuntimeError:  # executor shut down
            self._slots.release()
            if cleanup is not None:
                cleanup()
            raise PoolFull() from None
        return job

    def _run(self, job: Job, fn: Callable[[Job], Any], cleanup: Callable[[], None] | None) -> None:
        with self._lock:
            self._running += 1
        job.state, job.stage = "running", "starting"
        try:
            job.result = fn(job)
            job.state, job.progress, job.stage = "done", 1.0, "done"
        except JobError as exc:
            job.error = (exc.status, exc.message)
            job.state, job.stage = "error", "failed"
        except Exception as exc:  # noqa: BLE001 - reported to the client, logged by the app
            job.error = (500, f"analysis failed: {exc.__class__.__name__}: {exc}")
            job.state, job.stage = "error", "failed"
        finally:
            try:
                if cleanup is not None:
                    cleanup()
            finally:
                job.finished = time.time()
                with self._lock:
                    self._running -= 1
                self._slots.release()
                job.done_event.set()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._prune()
            return self._jobs.get(job_id)

    def remove(self, job_id: str) -> bool:
        """Forget a finished job and delete its files (the page is done with it)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.finished is None:
                return False
            del self._jobs[job_id]
        job.discard()
        return True

    def busy(self) -> dict:
        with self._lock:
            waiting = sum(1 for j in self._jobs.values() if j.state == "queued")
            return {
                "workers": self.workers,
                "capacity": self.capacity,
                "running": self._running,
                "waiting": waiting,
            }

    def _prune(self) -> None:
        """Drop finished jobs beyond the kept count or age (caller holds the lock)."""
        now = time.time()
        finished = [j for j in self._jobs.values() if j.finished is not None]
        extra = len(finished) - self._keep
        for j in finished:
            if extra > 0 or now - (j.finished or now) > self._keep_s:
                self._jobs.pop(j.id, None)
                j.discard()
                extra -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for j in self._jobs.values():
                j.discard()


class JobError(Exception):
    """A failure to report with an HTTP status (e.g. 422 for a broken video)."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message)  # both in args: it pickles across processes
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message
