"""Frames per second of `facs analyze` on a 640x360 clip: geometry only, two-stream (quick nets)
and all three streams, measured side by side in one run, plus where the time goes.

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
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FACES = {
    "every": 10,
    "scale_factor": 1.1,
    "min_neighbors": 5,
    "min_size": 30,
    "margin": 0.0,
    "size": 72,
    "mask_axes": [0.4, 0.5],
}
FLOW = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5}
FLOW |= {"poly_sigma": 1.2, "scale": 12.8, "half": 5}


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


def stand_in_model(folder: Path, labels: list[str]) -> Path:
    """A model folder with the quick spatial (6 ch, median reference) and flow (20 ch) nets."""
    import torch

    from facs.caffe.io import write_prototxt
    from facs.caffe.net import Net
    from facs.train_streams import render_deploy

    streams = {}
    for name, template, ch, extra in (
        (
            "spatial",
            "alexnet_finetune_deploy.prototxt",
            6,
            {"kind": "frame", "reference": "median"},
        ),
        ("flow", "flownet_deploy.prototxt", 20, {"kind": "flow", "stride": 3, "layout": "xy"}),
    ):
        d = folder / name
        d.mkdir(parents=True)
        param = render_deploy(ROOT / "prototxt/quick" / template, ch, 64, len(labels))
        write_prototxt(d / "deploy.prototxt", param)
        torch.manual_seed(0)
        Net(param, "TEST").save_caffemodel(d / "weights.caffemodel")
        np.save(d / "mean.npy", np.full((ch, 72, 72), 100.0, np.float32))
        inp = {"channels": ch, "size": 72, "crop": 64, "scale": 1.0, "faces": FACES, **extra}
        if name == "flow":
            inp["flow"] = FLOW
        streams[name] = {
            "deploy": f"{name}/deploy.prototxt",
            "weights": f"{name}/weights.caffemodel",
            "mean": f"{name}/mean.npy",
            "input": inp,
        }
    streams["geometry"] = {"method": "rules"}
    spec = {
        "name": "bench-stand-in",
        "labels": labels,
        "streams": streams,
        "fusion": {"method": "average", "streams": list(streams)},
        "thresholds": {c: 0.5 for c in labels},
    }
    (folder / "model.json").write_text(json.dumps(spec))
    return folder


def find_model() -> Path | None:
    found = []
    for meta in (ROOT / "models").glob("*/model.json"):
        spec = json.loads(meta.read_text())
        if {"spatial", "flow"} <= set(spec.get("streams", {})):
            found.append((str(spec.get("created", "")), meta.parent))
    return max(found)[1] if found else None


def with_geometry(folder: Path, tmp: Path) -> Path:
    """A copy of a trained model's model.json that also has the geometry rules stream."""
    spec = json.loads((folder / "model.json").read_text())
    spec["streams"]["geometry"] = {"method": "rules"}
    for s in spec["streams"].values():
        for k in ("deploy", "weights", "mean"):
            if isinstance(s.get(k), str):
                s[k] = str((folder / s[k]).resolve())
    out = tmp / "trained+geometry"
    out.mkdir()
    (out / "model.json").write_text(json.dumps(spec))
    return out


def run_analyze(clip: Path, model: Path, streams: str, out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one `facs analyze` run."""
    from facs.cli import main

    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["analyze", str(clip), "--model", str(model), "--streams", streams, "-o",
                     str(out), "--quiet"])  # fmt: skip
    if code != 0:
        raise SystemExit(f"facs analyze failed with exit code {code}")
    return time.perf_counter() - t0, time.process_time() - c0


def components(clip: Path, model_dir: Path) -> list[tuple[str, float]]:
    """Milliseconds per frame of each piece, measured on the same clip."""
    import cv2

    from facs import augment
    from facs.face import FaceParams, crop_face, detect_faces, merge_detections
    from facs.flow import FlowParams, clip_flows, flow_stack
    from facs.landmarks import LandmarkTracker
    from facs.predict import haar_near, load_model
    from facs.scores import load_mean, load_net, score_array
    from facs.video import read_all

    t0 = time.perf_counter()
    frames = read_all(clip)
    n = len(frames)
    rows = [("decode (OpenCV, MJPG 640x360)", time.perf_counter() - t0)]
    tracker = LandmarkTracker()
    t0 = time.perf_counter()
    for f in frames:
        tracker(f)
    rows.append(("dlib face (tracked window) + 68 landmarks", time.perf_counter() - t0))
    params = FaceParams.from_profile(FACES)
    t0 = time.perf_counter()
    faces = [tracker(f) for f in frames[:: params.every]]
    t0 = time.perf_counter()
    dets = [haar_near(f, lm, params) for f, lm in zip(frames[:: params.every], faces, strict=True)]
    rows.append(("Haar every 10th frame, near dlib's face", time.perf_counter() - t0))
    t0 = time.perf_counter()
    _ = [detect_faces(f, params) for f in frames[:: params.every]]
    rows.append(("  (for reference: Haar on the whole frame)", time.perf_counter() - t0))
    box = merge_detections(dets)[0]
    t0 = time.perf_counter()
    crops = np.stack([crop_face(f, box, 72) for f in frames])
    rows.append(("crop + mask 72x72", time.perf_counter() - t0))
    t0 = time.perf_counter()
    flows = clip_flows(crops, 3, FlowParams.from_profile(FLOW))
    rows.append(("Farneback 72x72 (stride 3)", time.perf_counter() - t0))
    model = load_model(model_dir)
    med = augment.median_reference(crops)
    recs = {
        "spatial": np.stack([augment.with_reference(c, med).transpose(2, 0, 1) for c in crops]),
        "flow": np.stack([flow_stack(flows, t, 3, "xy", 5) for t in range(n)]),
    }
    for s in ("spatial", "flow"):
        spec = model.streams[s]
        net = load_net(spec["deploy"], spec["weights"])
        mean = load_mean(spec.get("mean"))
        t0 = time.perf_counter()
        score_array(net, recs[s], 64, mean, 1.0, 64)
        rows.append((f"{s} net forward (batch 64)", time.perf_counter() - t0))
    del cv2
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
    from facs.realdata import example_video

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
            from facs.geometry import LABELS

            model = stand_in_model(tmp / "stand-in", list(LABELS))
            kind = "stand-in quick nets (random weights, same layers and sizes)"
        configs = [
            ("geometry only", "geometry"),
            ("two-stream (quick spatial + flow)", "spatial,flow"),
            ("all three (spatial + flow + geometry)", "spatial,flow,geometry"),
        ]
        print(f"bench/analyze: {src.name} -> {n} frames 640x360 at {fps:.2f} fps; {kind}")
        print(f"torch threads {torch.get_num_threads()}; {args.repeats} repeat(s), median")
        run_analyze(clip, model, "spatial,flow,geometry", tmp / "warm")  # load models once
        times: dict[str, list[float]] = {name: [] for name, _ in configs}
        cpu: dict[str, list[float]] = {name: [] for name, _ in configs}
        for r in range(args.repeats):
            for name, streams in configs:  # interleaved: background load hits all alike
                wall, used = run_analyze(clip, model, streams, tmp / f"o{r}")
                times[name].append(wall)
                cpu[name].append(used)
        base = None
        print(
            f"{'configuration':40} {'s':>7} {'frames/s':>9} {'x real time':>12} "
            f"{'vs geometry':>12} {'CPU ms/frame':>13}"
        )
        for name, _ in configs:
            sec = statistics.median(times[name])
            speed = n / sec
            base = base or speed
            cms = 1000.0 * statistics.median(cpu[name]) / n
            print(
                f"{name:40} {sec:7.2f} {speed:9.1f} {speed / fps:12.2f} {speed / base:12.2f} "
                f"{cms:13.1f}"
            )
        print(f"load average while measuring: {os.getloadavg()[0]:.1f} (2 cores, shared)")
        target = n / statistics.median(times[configs[2][0]])
        verdict = "meets" if target >= 25 else "misses"
        print(f"target: all three >= 25 frames/s: {target:.1f} ({verdict})")
        print("where the time goes (ms per frame):")
        for name, ms in components(clip, model):
            print(f"  {name:45} {ms:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
