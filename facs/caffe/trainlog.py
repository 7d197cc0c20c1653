"""Training log in Caffe's line format (stdout + a .log file) and a CSV of the same numbers."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import TextIO

CSV_FIELDS = ["iteration", "phase", "output", "value", "lr", "seconds"]


class TrainLog:
    """Writes Caffe-style lines; `enabled=False` (DDP ranks other than 0) makes it silent."""

    def __init__(self, log_path: Path | None, csv_path: Path | None, enabled: bool = True,
                 stream: TextIO | None = None, append: bool = False):  # fmt: skip
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stdout
        self.start = time.perf_counter()
        self.log_path, self.csv_path = log_path, csv_path
        self.append = append  # a resumed run continues the files of the run it resumes
        self._log = self._csv = None
        self._writer = None
        self._opened = False

    def _open(self) -> None:
        """Open the files at the first write (so `append` can still be set before it)."""
        self._opened = True
        mode = "a" if self.append else "w"
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, mode, encoding="utf-8")  # noqa: SIM115
        if self.csv_path is not None:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            p = self.csv_path
            fresh = not (self.append and p.exists() and p.stat().st_size)
            self._csv = open(p, mode, encoding="utf-8", newline="")  # noqa: SIM115
            self._writer = csv.writer(self._csv)
            if fresh:
                self._writer.writerow(CSV_FIELDS)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if not self._opened:
            self._open()
        print(text, file=self.stream, flush=True)
        if self._log is not None:
            self._log.write(text + "\n")
            self._log.flush()

    def row(self, iteration: int, phase: str, output: str, value: float, lr: float | None):
        if not self.enabled:
            return
        if not self._opened:
            self._open()
        if self._writer is None:
            return
        seconds = round(time.perf_counter() - self.start, 3)
        self._writer.writerow([iteration, phase, output, f"{value:.9g}",
                               "" if lr is None else f"{lr:.9g}", seconds])  # fmt: skip
        self._csv.flush()

    def outputs(self, iteration: int, phase: str, values: list[tuple[str, float, float]],
                lr: float | None = None) -> None:  # fmt: skip
        """`    Train net output #k: name = v (* w = w*v loss)` lines plus CSV rows."""
        label = "Train" if phase == "train" else "Test"
        for k, (name, value, weight) in enumerate(values):
            suffix = f" (* {weight:g} = {weight * value:g} loss)" if weight else ""
            self.line(f"    {label} net output #{k}: {name} = {value:g}{suffix}")
            self.row(iteration, phase, name, value, lr)

    def close(self) -> None:
        for f in (self._log, self._csv):
            if f is not None:
                f.close()
        self._log = self._csv = None
        self._writer = None
