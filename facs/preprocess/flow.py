"""`facs flow`: Farneback optical flow between the face crops of every clip.

    facs flow [--work WORK] [--profile quick] [--workers N] [--strides 1,3] [--force]

writes WORK/flow/s<stride>/<clip>.npy ((N-s) x S x S x 2 uint8, facs.preprocess.records'
encoding) and <clip>.json beside it (written last, with a fingerprint of the flow settings and
of the crops, so a re-run skips the clips already done). The strides are those the profile's
LMDB configurations use.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from facs.datasets.index import load_index
from facs.errors import FacsError
from facs.fileio import save_npy, write_json
from facs.preprocess.records import FlowParams, clip_flows
from facs.preprocess.workdir import face_meta, flow_dir, load_crops, parallel_map
from facs.profile import add_common_arguments, default_work, describe, load_profile, section


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


def process_clip(job: tuple[str, str, list[int], FlowParams, str]) -> dict:
    cid, work, strides, params, face_fp = job
    t0 = time.perf_counter()
    crops = load_crops(Path(work), cid)
    pairs = 0
    for s in strides:
        flows = clip_flows(crops, s, params)
        pairs += len(flows)
        out = flow_dir(Path(work), s)
        save_npy(out / f"{cid}.npy", flows)
        meta = {
            "clip": cid,
            "stride": s,
            "frames": int(len(crops)),
            "flows": int(len(flows)),
            "fingerprint": _fingerprint(params, s, face_fp),
            "params": asdict(params),
        }
        write_json(out / f"{cid}.json", meta, indent=1)
    return {"clip": cid, "frames": int(len(crops)), "pairs": pairs, "s": time.perf_counter() - t0}


def profile_strides(profile: dict) -> list[int]:
    """Every flow stride that the profile's LMDB configurations use."""
    configs = profile.get("lmdb", {}).get("configs", {})
    strides = {int((c.get("flow") or {}).get("stride", 1)) for c in configs.values()}
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
    params = FlowParams.from_json(section(profile, "flow"))
    if args.strides:
        try:
            strides = sorted({int(s) for s in args.strides.split(",")})
        except ValueError:
            raise FacsError(f"--strides {args.strides!r}: expected integers like 1,3") from None
    else:
        strides = profile_strides(profile)
    print(describe(profile, "flow"))
    print(f"flow: strides {strides}")
    index = load_index(work / "index.json")
    jobs, skipped, done = [], 0, 0
    for clip in index.clips:
        meta = face_meta(work, clip.id)
        if meta is None or not meta.get("face"):
            skipped += 1
            continue
        fps = {s: _fingerprint(params, s, meta["fingerprint"]) for s in strides}
        todo = [s for s in strides if args.force or not _done(work, clip.id, s, fps[s])]
        if todo:
            jobs.append((clip.id, str(work), todo, params, meta["fingerprint"]))
        else:
            done += 1
    print(
        f"flow: {len(jobs) + done} clips with a face, {done} already done, {len(jobs)} to do, "
        f"{skipped} without face crops"
    )
    if not jobs and not done:
        raise FacsError(
            f"{work / 'faces'}: no face crops for any of the {len(index.clips)} clips "
            "(run `facs faces` first)"
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
