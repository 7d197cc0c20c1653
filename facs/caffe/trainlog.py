"""Training log in Caffe's line format (stdout + a .log file) and a CSV of the same numbers.

The files are touched only once training begins (`begin`): a start that fails (a corrupt
--weights file, a missing LMDB) leaves the previous run's log and CSV as they were and creates
no stub files; its lines still reach stdout. A resumed run (`begin(resume_from=N)`) keeps
what the run it resumes logged before iteration N and continues from there, so the files hold
each iteration once.
"""

from __future__ import annotations

import csv
import re
import sys
import time
from pathlib import Path
from typing import TextIO

from facs.fileio import write_text

_ITERATION = re.compile(r"Iteration (\d+)")

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
        self._pending: list[tuple[str, object]] = []  # written at begin()
        self._begun = False

    def begin(self, resume_from: int | None = None) -> None:
        """Training starts: open the files (trimmed to the iterations before `resume_from`
        when resuming) and write what was logged so far."""
        if not self.enabled or self._begun:
            return
        self._begun = True
        resume = resume_from is not None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            if resume:
                _trim_log(self.log_path, resume_from)
            self._log = open(self.log_path, "a" if resume else "w", encoding="utf-8")  # noqa: SIM115
        if self.csv_path is not None:
            p = self.csv_path
            p.parent.mkdir(parents=True, exist_ok=True)
            if resume:
                _trim_csv(p, resume_from)
            fresh = not (resume and p.exists() and p.stat().st_size)
            self._csv = open(p, "a" if resume else "w", encoding="utf-8", newline="")  # noqa: SIM115
            self._writer = csv.writer(self._csv)
            if fresh:
                self._writer.writerow(CSV_FIELDS)
        for kind, item in self._pending:
            self._write_line(item) if kind == "line" else self._write_row(item)
        self._pending.clear()

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        print(text, file=self.stream, flush=True)
        if self._begun:
            self._write_line(text)
        else:
            self._pending.append(("line", text))

    def _write_line(self, text: str) -> None:
        if self._log is not None:
            self._log.write(text + "\n")
            self._log.flush()

    def row(self, iteration: int, phase: str, output: str, value: float, lr: float | None):
        if not self.enabled:
            return
        seconds = round(time.perf_counter() - self.start, 3)
        values = [iteration, phase, output, f"{value:.9g}",
                  "" if lr is None else f"{lr:.9g}", seconds]  # fmt: skip
        if self._begun:
            self._write_row(values)
        else:
            self._pending.append(("row", values))

    def _write_row(self, values: list) -> None:
        if self._writer is not None:
            self._writer.writerow(values)
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


def _trim_log(path: Path, iteration: int) -> None:
    """Cut a Caffe-format log before its first line about an iteration >= `iteration`."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    for k, text in enumerate(lines):
        m = _ITERATION.search(text)
        if m and int(m.group(1)) >= iteration:
            write_text(path, "".join(t + "\n" for t in lines[:k]))
            return


def _trim_csv(path: Path, iteration: int) -> None:
    """Keep the CSV rows of the iterations before `iteration`."""
    if not path.is_file():
        return
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    if not rows:
        return
    keep = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < iteration]
    write_text(path, "".join(",".join(r) + "\n" for r in keep))
