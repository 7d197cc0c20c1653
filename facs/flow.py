"""Flow stage: Farneback optical flow between face crops, uint8 encoding, per-frame stacks.

Flows: f_j = Farneback(grey crop j -> grey crop j + s) for j = 0 .. N-s-1 (s = the stride;
s = 1 is the original work's consecutive-frame flow). Encoding: uint8 = 128 + 12.8 * flow
(pixels per step), rounded and clipped to [0, 255]; channel 0 is x (right positive), 1 is y
(down positive).

Stack of frame t (the network input): the 5 flows before and the 5 flows after t, chained
without overlap when s > 1, i.e. f_j for j = t + k*s, k = -5 .. 4 (f_{t-s} ends at t, f_t starts
at t): the stack covers frames t-5s .. t+5s. Clip ends: an index outside 0 .. M-1 (M = N-s
flows) is clamped to the nearest existing flow, which is repeated; a clip with no flow at all
(N <= s) gets a stack of 128 (no motion).

Layouts: `x` = the 10 x-components in time order, `y` = the 10 y-components, `xy` = 20
channels in Simonyan & Zisserman's order x_{-5}, y_{-5}, x_{-4}, y_{-4}, ..., x_4, y_4.

    facs flow [--work WORK] [--profile quick] [--workers N] [--strides 1,3]
writes WORK/flow/s<stride>/<clip>.npy ((N-s) x S x S x 2 uint8) and <clip>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from facs.errors import FacsError
from facs.profile import add_common_arguments, default_work, describe, load_profile, section
from facs.workdir import load_index, parallel_map, read_json, save_npy, write_json

LAYOUTS = ("x", "y", "xy")


@dataclass(frozen=True)
class FlowParams:
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2
    scale: float = 12.8
    half: int = 5

    @classmethod
    def from_profile(cls, flow: dict) -> FlowParams:
        return cls(**{k: v for k, v in flow.items() if k in cls.__dataclass_fields__})

    def fingerprint(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _grey(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img


def farneback(prev: np.ndarray, next: np.ndarray, params: FlowParams = FlowParams()) -> np.ndarray:
    """H x W x 2 float32 flow (x, y) from `prev` to `next` (BGR or grey uint8)."""
    return cv2.calcOpticalFlowFarneback(
        _grey(prev),
        _grey(next),
        None,
        params.pyr_scale,
        params.levels,
        params.winsize,
        params.iterations,
        params.poly_n,
        params.poly_sigma,
        0,
    )


def encode_flow(flow: np.ndarray, scale: float = 12.8) -> np.ndarray:
    """uint8 = 128 + scale * flow, rounded, clipped to [0, 255]."""
    return np.clip(np.rint(128.0 + scale * flow), 0, 255).astype(np.uint8)


def decode_flow(encoded: np.ndarray, scale: float = 12.8) -> np.ndarray:
    return (encoded.astype(np.float32) - 128.0) / scale


def clip_flows(crops: np.ndarray, stride: int = 1, params: FlowParams = FlowParams()) -> np.ndarray:
    """(N - stride) x H x W x 2 uint8 encoded flows f_j = crop j -> crop j+stride."""
    if stride < 1:
        raise FacsError(f"flow stride must be >= 1, got {stride}")
    n = len(crops)
    h, w = crops.shape[1:3]
    grey = [_grey(np.ascontiguousarray(c)) for c in crops]
    out = np.empty((max(n - stride, 0), h, w, 2), np.uint8)
    for j in range(n - stride):
        out[j] = encode_flow(farneback(grey[j], grey[j + stride], params), params.scale)
    return out


def stack_indices(t: int, n_flows: int, stride: int = 1, half: int = 5) -> list[int]:
    """Flow indices of frame t's stack (clamped at the clip ends, see the module docstring)."""
    return [min(max(t + k * stride, 0), n_flows - 1) for k in range(-half, half)]


def flow_stack(
    flows: np.ndarray, t: int, stride: int = 1, layout: str = "xy", half: int = 5
) -> np.ndarray:
    """C x H x W uint8 stack of frame t: C = 2*half for x/y, 4*half for xy."""
    if layout not in LAYOUTS:
        raise FacsError(f"flow layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    h, w = flows.shape[1:3]
    channels = 4 * half if layout == "xy" else 2 * half
    if len(flows) == 0:
        return np.full((channels, h, w), 128, np.uint8)
    sel = flows[stack_indices(t, len(flows), stride, half)]  # 2*half x H x W x 2
    if layout == "x":
        return np.ascontiguousarray(sel[..., 0])
    if layout == "y":
        return np.ascontiguousarray(sel[..., 1])
    # (k, H, W, 2) -> (k, 2, H, W) -> (2k, H, W): x_k, y_k interleaved
    return np.ascontiguousarray(sel.transpose(0, 3, 1, 2).reshape(channels, h, w))


def stack_channels(layout: str, half: int = 5) -> int:
    return 4 * half if layout == "xy" else 2 * half


# --------------------------------------------------------------------------- the stage


def flow_dir(work: Path, stride: int) -> Path:
    return Path(work) / "flow" / f"s{stride}"


def load_flows(work: Path, clip_id: str, stride: int, mmap: bool = True) -> np.ndarray:
    path = flow_dir(work, stride) / f"{clip_id}.npy"
    if not path.is_file():
        raise FacsError(f"{path}: no flow for clip {clip_id} (run `facs flow` first)")
    return np.load(path, mmap_mode="r" if mmap else None)


def _fingerprint(params: FlowParams, stride: int, face_fp: str) -> str:
    return f"{params.fingerprint()}-s{stride}-{face_fp}"


def _done(work: Path, clip_id: str, stride: int, fp: str) -> bool:
    meta = flow_dir(work, stride) / f"{clip_id}.json"
    npy = flow_dir(work, stride) / f"{clip_id}.npy"
    if not (meta.is_file() and npy.is_file()):
        return False
    try:
        return json.loads(meta.read_text()).get("fingerprint") == fp
    except (OSError, json.JSONDecodeError):
        return False


def process_clip(job: tuple[str, str, list[int], FlowParams]) -> dict:
    cid, work, strides, params = job
    t0 = time.perf_counter()
    work_p = Path(work)
    crops = np.load(work_p / "faces" / f"{cid}.npy")
    face_fp = read_json(work_p / "faces" / f"{cid}.json", "face metadata")["fingerprint"]
    pairs = 0
    for s in strides:
        flows = clip_flows(crops, s, params)
        pairs += len(flows)
        save_npy(flow_dir(work_p, s) / f"{cid}.npy", flows)
        meta = {
            "clip": cid,
            "stride": s,
            "frames": int(len(crops)),
            "flows": int(len(flows)),
            "fingerprint": _fingerprint(params, s, face_fp),
            "params": asdict(params),
        }
        write_json(flow_dir(work_p, s) / f"{cid}.json", meta)
    return {"clip": cid, "frames": int(len(crops)), "pairs": pairs, "s": time.perf_counter() - t0}


def profile_strides(profile: dict) -> list[int]:
    """Every flow stride that the profile's LMDB configurations use."""
    configs = profile.get("lmdb", {}).get("configs", {})
    strides = {int(c.get("flow", {}).get("stride", 1)) for c in configs.values()}
    return sorted(strides or {1})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument(
        "--strides", default=None, help="comma-separated flow strides (default: the profile's)"
    )
    parser.add_argument("--force", action="store_true", help="redo clips already done")


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    work = args.work or default_work(profile["name"])
    params = FlowParams.from_profile(section(profile, "flow"))
    if args.strides:
        try:
            strides = sorted({int(s) for s in args.strides.split(",")})
        except ValueError:
            raise FacsError(f"--strides {args.strides!r}: expected integers like 1,3") from None
    else:
        strides = profile_strides(profile)
    print(describe(profile, "flow"))
    print(f"flow: strides {strides}")
    index = load_index(work)
    jobs, skipped, done = [], 0, 0
    for clip in index["clips"]:
        cid = clip["id"]
        meta_path = work / "faces" / f"{cid}.json"
        if not meta_path.is_file():
            skipped += 1
            continue
        meta = read_json(meta_path, "face metadata")
        if not meta.get("face"):
            skipped += 1
            continue
        todo = [
            s
            for s in strides
            if args.force or not _done(work, cid, s, _fingerprint(params, s, meta["fingerprint"]))
        ]
        if todo:
            jobs.append((cid, str(work), todo, params))
        else:
            done += 1
    print(
        f"flow: {len(jobs) + done} clips with a face, {done} already done, {len(jobs)} to do, "
        f"{skipped} without face crops"
    )
    t0 = time.perf_counter()
    frames = pairs = 0
    for res in parallel_map(process_clip, jobs, args.workers, "flow"):
        frames += res["frames"]
        pairs += res["pairs"]
    dt = time.perf_counter() - t0
    print(
        f"flow: {len(jobs)} clips, {pairs} flow pairs over {frames} frames in {dt:.1f} s "
        f"({frames / dt if dt > 0 else 0:.0f} frames/s, {pairs / dt if dt > 0 else 0:.0f} pairs/s)"
    )
    return 0
