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
        self._log = self._csv = None
        self._writer = None
        if not enabled:
            return
        mode = "a" if append else "w"
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(log_path, mode, encoding="utf-8")  # noqa: SIM115
        if csv_path is not None:
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not (append and csv_path.exists() and csv_path.stat().st_size)
            self._csv = open(csv_path, mode, encoding="utf-8", newline="")  # noqa: SIM115
            self._writer = csv.writer(self._csv)
            if fresh:
                self._writer.writerow(CSV_FIELDS)
        self.log_path, self.csv_path = log_path, csv_path

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        print(text, file=self.stream, flush=True)
        if self._log is not None:
            self._log.write(text + "\n")
            self._log.flush()

    def row(self, iteration: int, phase: str, output: str, value: float, lr: float | None):
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
