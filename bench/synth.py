"""Speed of `facs synth`: frames/s with 1 and 2 worker processes, side by side in one run.

    python bench/synth.py [--subjects 12] [--clips-per-subject 2]

Prints wall time, frames/s, the speed-up of 2 workers over 1, and the projected time of the
default corpus (120 subjects x 3 clips). Numbers depend on what else runs on the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from facs.synth import generate


def _cpu() -> float:
    """CPU seconds of this process."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--clips-per-subject", type=int, default=2)
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    rates, cpu_ms = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            root = Path(tmp) / f"w{workers}"
            wall, cpu = time.perf_counter(), _cpu()
            generate(root, args.subjects, args.clips_per_subject, 0, workers, progress=False)
            wall = time.perf_counter() - wall
            frames = json.loads((root / "corpus.json").read_text())["counts"]["frames"]
            rates[workers] = frames / wall
            cpu = _cpu() - cpu
            cpu_ms[workers] = 1000 * cpu / frames
            # with 1 worker everything runs in this process, so its CPU time is the whole cost
            # (the pool's workers are children of a fork server, not of this process)
            cpu_note = f"; CPU {cpu:.2f} s = {cpu_ms[1]:.2f} ms/frame" if workers == 1 else ""
            print(
                f"workers={workers}: {frames} frames in {wall:.2f} s = "
                f"{rates[workers]:.0f} frames/s{cpu_note}"
            )
    default_frames = 120 * 3 * 105  # clips average ~105 frames
    print(f"speed-up 2 vs 1 workers: {rates[2] / rates[1]:.2f}x")
    print(
        f"projected default corpus (360 clips, ~{default_frames} frames): "
        f"{default_frames / rates[1]:.0f} s with 1 worker, {default_frames / rates[2]:.0f} s with 2"
        f" at this load; {default_frames * cpu_ms[1] / 2000:.0f} s with 2 on 2 idle cores"
        " (from CPU time)"
    )


if __name__ == "__main__":
    main()
