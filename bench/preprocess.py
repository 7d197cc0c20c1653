"""Preprocessing speed: frames/s of the faces, flow and lmdb stages with 1 and 2 workers, and
the flow stage's pairs/s against OpenCV's raw Farneback on the same crops, side by side.

    python bench/preprocess.py [--data data/synth] [--clips 48] [--profile quick]

Runs on the first --clips clips of the corpus (0 = all) in fresh temporary work folders.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facs.cli import main as facs_main
from facs.datasets.index import build_index
from facs.datasets.split import make_split
from facs.fileio import write_json
from facs.preprocess.flow import profile_strides
from facs.preprocess.records import FlowParams
from facs.profile import load_profile


def _stage(stage: str, work: Path, profile: str, workers: int) -> float:
    args = [stage, "--profile", profile, "--work", str(work), "--workers", str(workers)]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = facs_main(args)
    if code != 0:
        raise SystemExit(f"facs {stage} failed with exit code {code}")
    return time.perf_counter() - t0


def _raw_farneback(work: Path, clips: list[str], strides: list[int], params: FlowParams):
    """OpenCV alone (one process): grey conversion + Farneback on every pair the stage computes."""
    crops = [np.load(work / "faces" / f"{c}.npy") for c in clips]
    pairs = 0
    t0 = time.perf_counter()
    for clip in crops:
        grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in clip]
        for s in strides:
            for j in range(len(grey) - s):
                cv2.calcOpticalFlowFarneback(
                    grey[j],
                    grey[j + s],
                    None,
                    params.pyr_scale,
                    params.levels,
                    params.winsize,
                    params.iterations,
                    params.poly_n,
                    params.poly_sigma,
                    0,
                )
                pairs += 1
    return pairs, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/synth"))
    ap.add_argument("--clips", type=int, default=48, help="first N clips (0 = all)")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare")
    args = ap.parse_args()
    if not (args.data / "Sessions").is_dir():
        sys.exit(f"{args.data}: no corpus (run ./scripts/01_synth.sh first)")
    profile = load_profile(args.profile)
    index = build_index(args.data, mode="span", progress=False)
    if args.clips:
        index.clips = index.clips[: args.clips]
    frames = sum(c.frames for c in index.clips)
    strides = profile_strides(profile)
    print(
        f"corpus {args.data}: {len(index.clips)} clips, {frames} frames; profile "
        f"{profile['name']} (crops {profile['faces']['size']} px, flow strides {strides}); "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="facs-bench-") as tmp:
        for workers in [int(w) for w in args.workers.split(",")]:
            work = Path(tmp) / f"w{workers}"
            work.mkdir()
            write_json(work / "index.json", index.to_json())
            write_json(work / "split.json", make_split(index, seed=0))
            times = {s: _stage(s, work, args.profile, workers) for s in ("faces", "flow", "lmdb")}
            records = 0
            for m in (work / "lmdb").glob("*/*.json"):
                records += json.loads(m.read_text())["count"]
            rows.append((workers, times, records, work))
        pairs, raw_s = _raw_farneback(
            rows[0][3],
            [c.id for c in index.clips],
            strides,
            FlowParams.from_json(profile["flow"]),
        )
        raw_rate = pairs / raw_s
        print(f"\n{'stage':<8}" + "".join(f"{f'{w} worker(s)':>24}" for w, *_ in rows) + "   ratio")
        for stage in ("faces", "flow", "lmdb"):
            cells = []
            for _w, times, records, _ in rows:
                n = records if stage == "lmdb" else frames
                unit = "rec/s" if stage == "lmdb" else "frames/s"
                cells.append(f"{n / times[stage]:>10.0f} {unit:<8}({times[stage]:5.1f} s)")
            ratio = rows[0][1][stage] / rows[-1][1][stage] if len(rows) > 1 else 1.0
            print(f"{stage:<8}" + "".join(f"{c:>24}" for c in cells) + f"   x{ratio:.2f}")
        flow_rates = [pairs / times["flow"] for _, times, _, _ in rows]
        print(
            f"\nflow pairs: {pairs} ({len(strides)} strides); raw OpenCV Farneback (1 process, "
            f"same crops): {raw_rate:.0f} pairs/s = {1000 / raw_rate:.2f} ms/pair"
        )
        for (w, *_), rate in zip(rows, flow_rates, strict=True):
            print(
                f"flow stage, {w} worker(s): {rate:.0f} pairs/s = {rate / raw_rate:.2f} x raw "
                "(includes loading crops, encoding, writing)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
