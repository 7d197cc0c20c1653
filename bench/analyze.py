"""Frames per second of `facs analyze` on a 640x360 clip: decoding alone, the real-face model
(the default), the dlib landmark model, two-stream (quick nets) and all three streams, measured
side by side in one run, plus where the time goes.

    python bench/analyze.py                      # WolfgangLanger_Pexels.mp4 (640x360), 240 frames
    python bench/analyze.py --frames 120 --repeats 1 --model models/quick-best

Each configuration runs the real command (`facs analyze CLIP --streams ... --quiet`, CSV written)
in this process after one warm-up run (dlib's predictor, the nets), `--repeats` times in turn;
the median is reported. The model is `--model` if given, else the newest trained model under
models/ with spatial and flow streams, else a stand-in built from prototxt/quick with random
weights (same layers and input sizes as a trained quick model, so the same speed). Torch uses
`--threads` threads (default 2, the machine's 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facs.errors import FacsError  # noqa: E402


def make_clip(src: Path, out: Path, frames: int) -> tuple[Path, float]:
    """The first `frames` frames of src as MJPG .avi (decoding cost like a camera file)."""
    import cv2

    from facs.video import probe, read_frames

    info = probe(src)
    w = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), info.fps, (640, 360))
    n = 0
    for frame in read_frames(src):
        if n == frames:
            break
        if frame.shape[:2] != (360, 640):
            frame = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA)
        w.write(frame)
        n += 1
    w.release()
    return out, info.fps


def find_model() -> Path | None:
    """The newest trained model under models/ with spatial and flow streams."""
    from facs.analysis.model import read_model

    found = []
    for meta in (ROOT / "models").glob("*/model.json"):
        try:
            model = read_model(meta.parent)
        except FacsError:
            continue
        if {"spatial", "flow"} <= set(model.streams):
            found.append((model.created, meta.parent))
    return max(found)[1] if found else None


def with_geometry(folder: Path, tmp: Path) -> Path:
    """A copy of a trained model's model.json that also has the landmark rules stream."""
    from facs.analysis.model import StreamSpec, read_model, write_model

    model = read_model(folder)
    for spec in model.streams.values():
        spec.folder = str((folder / spec.folder).resolve())
    model.streams["geometry"] = StreamSpec(kind="landmarks", method="rules")
    return write_model(model, tmp / "trained+geometry").parent


def decode_only(clip: Path) -> tuple[float, float]:
    from facs.video import read_frames

    t0, c0 = time.perf_counter(), time.process_time()
    for _ in read_frames(clip):
        pass
    return time.perf_counter() - t0, time.process_time() - c0


def run_analyze(clip: Path, model: Path | str, streams: str | None, out: Path):
    """(wall seconds, CPU seconds of this process, all threads) of one `facs analyze` run."""
    from facs.cli import main

    t0, c0 = time.perf_counter(), time.process_time()
    args = ["analyze", str(clip), "--model", str(model), "-o", str(out), "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(args + (["--streams", streams] if streams else []))
    if code != 0:
        raise SystemExit(f"facs analyze failed with exit code {code}")
    return time.perf_counter() - t0, time.process_time() - c0


def components(clip: Path, model_dir: Path) -> list[tuple[str, float]]:
    """Milliseconds per frame of each piece, measured on the same clip."""
    from facs.analysis.landmarks import LandmarkTracker
    from facs.analysis.model import load_model
    from facs.analysis.predict import _deploy
    from facs.preprocess.records import ClipRecords, crop_clip, detect_faces, face_track
    from facs.video import read_all

    model = load_model(model_dir)
    t0 = time.perf_counter()
    frames = read_all(clip)
    n = len(frames)
    rows = [("decode (OpenCV, MJPG 640x360)", time.perf_counter() - t0)]
    tracker = LandmarkTracker()
    t0 = time.perf_counter()
    for f in frames:
        tracker(f)
    rows.append(("dlib face (tracked window) + 68 landmarks", time.perf_counter() - t0))
    from facs.analysis import realface
    from facs.analysis.facemesh import FaceMesh

    t0 = time.perf_counter()
    with FaceMesh(video=True) as mesh:
        found = [mesh(f, int(i * 40)) for i, f in enumerate(frames)]
    rows.append(("MediaPipe landmarks + blendshapes (VIDEO mode)", time.perf_counter() - t0))
    pts = np.stack([f.points if f else np.full((478, 3), np.nan, np.float32) for f in found])
    bsh = np.stack([f.blendshapes if f else np.full(52, np.nan, np.float32) for f in found])
    t0 = time.perf_counter()
    realface.stream_probs(pts, bsh, realface.LABELS, 25.0)
    rows.append(("real-face rules (alignment, calibration, AUs)", time.perf_counter() - t0))
    inp = model.streams["spatial"].input
    params = inp.faces
    sampled = list(range(0, n, params.every))
    t0 = time.perf_counter()
    dets = [detect_faces(frames[i], params) for i in sampled]
    rows.append((f"Haar every {params.every}th frame (whole frame)", time.perf_counter() - t0))
    box = face_track(sampled, dets, params).box
    t0 = time.perf_counter()
    crops = crop_clip(frames, box, params)
    rows.append((f"crop + mask {params.size}x{params.size}", time.perf_counter() - t0))
    for s in ("spatial", "flow"):
        t0 = time.perf_counter()
        clip_records = ClipRecords(model.streams[s].input, crops)
        recs = np.stack([clip_records.record(t) for t in range(n)])
        rows.append((f"{s} records (flow: Farneback)", time.perf_counter() - t0))
        net = _deploy(model, s)
        t0 = time.perf_counter()
        for i in range(0, n, 64):
            net.probs(recs[i : i + 64])
        rows.append((f"{s} net forward (batch 64)", time.perf_counter() - t0))
    return [(name, 1000.0 * sec / n) for name, sec in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=None, help="default: WolfgangLanger_Pexels.mp4")
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from facs.datasets.realfaces import example_video

    src = args.video or example_video("WolfgangLanger_Pexels.mp4")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        clip, fps = make_clip(src, tmp / "clip.avi", args.frames)
        from facs.video import probe

        n = probe(clip, exact=True).frames
        trained = args.model or find_model()
        if trained is not None:
            model, kind = with_geometry(trained, tmp), f"trained model {trained}"
        else:
            from facs.analysis.geometry import LABELS
            from facs.training.standin import stand_in_model

            model = stand_in_model(tmp / "stand-in", list(LABELS))
            kind = "stand-in quick nets (random weights, same layers and sizes)"
        configs = [
            ("decode only", None, None),
            ("real-face model (face, the default)", "face", None),
            ("landmark rules (geometry, dlib)", "geometry", None),
            ("two-stream (quick spatial + flow)", model, "spatial,flow"),
            ("all three (spatial + flow + geometry)", model, "spatial,flow,geometry"),
        ]
        print(f"bench/analyze: {src.name} -> {n} frames 640x360 at {fps:.2f} fps; {kind}")
        print(f"torch threads {torch.get_num_threads()}; {args.repeats} repeat(s), median")
        for m, streams in (("face", None), (model, "spatial,flow,geometry")):
            run_analyze(clip, m, streams, tmp / "warm")  # load the models once
        times: dict[str, list[float]] = {c[0]: [] for c in configs}
        cpu: dict[str, list[float]] = {c[0]: [] for c in configs}
        for r in range(args.repeats):
            for name, m, streams in configs:  # interleaved: background load hits all alike
                if m is None:
                    wall, used = decode_only(clip)
                else:
                    wall, used = run_analyze(clip, m, streams, tmp / f"o{r}")
                times[name].append(wall)
                cpu[name].append(used)
        decode = statistics.median(times["decode only"])
        print(
            f"{'configuration':40} {'s':>7} {'frames/s':>9} {'x real time':>12} "
            f"{'x decode time':>14} {'CPU ms/frame':>13}"
        )
        for name, _, _ in configs:
            sec = statistics.median(times[name])
            speed = n / sec
            cms = 1000.0 * statistics.median(cpu[name]) / n
            print(
                f"{name:40} {sec:7.2f} {speed:9.1f} {speed / fps:12.2f} {sec / decode:14.2f} "
                f"{cms:13.1f}"
            )
        print(f"load average while measuring: {os.getloadavg()[0]:.1f} (2 cores, shared)")
        for name in (configs[1][0], configs[4][0]):
            speed = n / statistics.median(times[name])
            verdict = "meets" if speed >= 25 else "misses"
            print(f"target: {name} >= 25 frames/s end to end: {speed:.1f} ({verdict})")
        print("where the time goes (ms per frame):")
        for name, ms in components(clip, model):
            print(f"  {name:45} {ms:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
