"""`facs faces`: one Haar face box per clip, then the masked crop of every frame.

    facs faces [--work WORK] [--profile quick] [--workers N] [--data DATA] [--force]

writes WORK/faces/<clip>.npy (N x S x S x 3 uint8, BGR) and WORK/faces/<clip>.json (the box,
the sampled frames and which of them had the face; written last, with the settings'
fingerprint, so a re-run skips the clips already done). The box, crop and mask are
facs.preprocess.records' (the same code that prediction runs on a video).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

from facs.datasets.index import load_index
from facs.errors import FacsError
from facs.fileio import save_npy, write_json
from facs.preprocess.records import FaceParams, crop_clip, detect_faces, face_track
from facs.preprocess.workdir import face_meta, faces_dir, parallel_map
from facs.profile import add_common_arguments, default_work, describe, load_profile, section
from facs.video import read_frames

# Decoders may disagree with a container's header by a frame or two; more is a broken clip.
PARTIAL_FRAMES = 2


def clip_done(work: Path, clip_id: str, fingerprint: str) -> bool:
    """Done when the clip's JSON (written last) has this fingerprint, and its crops exist when
    it has a face."""
    try:
        meta = face_meta(work, clip_id)
    except FacsError:
        return False
    if meta is None or meta.get("fingerprint") != fingerprint:
        return False
    return not meta.get("face") or (faces_dir(work) / f"{clip_id}.npy").is_file()


def process_clip(job: tuple[str, str, str, str, FaceParams, int]) -> dict:
    """Detect, crop and save one clip; returns a small summary (never raises FacsError). A
    clip that decodes to fewer frames than the index expects is an error, not a short crop."""
    cid, video_rel, video, work, params, expected = job
    t0 = time.perf_counter()
    out = faces_dir(Path(work))
    try:
        sampled, per_frame = [], []
        for k, frame in enumerate(read_frames(video, stride=params.every)):
            sampled.append(k * params.every)
            per_frame.append(detect_faces(frame, params))
        if len(sampled) * params.every < expected - PARTIAL_FRAMES - params.every:
            raise FacsError(
                f"{video}: decodes about {len(sampled) * params.every} of the {expected} frames "
                "the index expects (truncated or corrupt)"
            )
        track = face_track(sampled, per_frame, params)
        if track is not None:
            crops = crop_clip(read_frames(video), track.box, params)
            if len(crops) < expected - PARTIAL_FRAMES:
                raise FacsError(
                    f"{video}: decodes {len(crops)} of the {expected} frames the index expects "
                    "(truncated or corrupt)"
                )
    except FacsError as exc:
        return {"clip": cid, "status": "error", "message": str(exc), "frames": 0}
    meta = {
        "clip": cid,
        "video": video_rel,
        "face": track is not None,
        "fingerprint": params.fingerprint(),
        "params": asdict(params),
    }
    if track is None:
        meta["frames"] = 0
        write_json(out / f"{cid}.json", meta, indent=1)
        (out / f"{cid}.npy").unlink(missing_ok=True)
        return {"clip": cid, "status": "noface", "frames": 0, "s": time.perf_counter() - t0}
    meta.update({"frames": int(len(crops)), "size": params.size, **track.to_json()})
    save_npy(out / f"{cid}.npy", crops)
    write_json(out / f"{cid}.json", meta, indent=1)  # written last: marks the clip done
    return {"clip": cid, "status": "ok", "frames": int(len(crops)), "s": time.perf_counter() - t0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--data", type=Path, default=None, help="data root (default: index's)")
    parser.add_argument("--force", action="store_true", help="redo clips already done")


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    work = args.work or default_work(profile["name"])
    params = FaceParams.from_json(section(profile, "faces"))
    print(describe(profile, "faces"))
    index = load_index(work / "index.json")
    root = args.data if args.data is not None else index.root
    fp = params.fingerprint()
    todo = [c for c in index.clips if args.force or not clip_done(work, c.id, fp)]
    n = len(index.clips)
    print(f"faces: {n} clips, {n - len(todo)} already done, {len(todo)} to do")
    jobs = [(c.id, c.video, str(Path(root) / c.video), str(work), params, c.frames) for c in todo]
    t0 = time.perf_counter()
    counts = {"ok": 0, "noface": 0, "error": 0}
    frames = 0
    for res in parallel_map(process_clip, jobs, args.workers, "faces"):
        counts[res["status"]] += 1
        frames += res["frames"]
        if res["status"] == "noface":
            print(f"faces: {res['clip']}: no face found, skipped")
        elif res["status"] == "error":
            print(f"faces: {res['clip']}: skipped: {res['message']}")
    dt = time.perf_counter() - t0
    rate = frames / dt if dt > 0 else 0.0
    print(
        f"faces: {counts['ok']} clips cropped, {counts['noface']} without a face, "
        f"{counts['error']} unreadable; {frames} frames in {dt:.1f} s ({rate:.0f} frames/s)"
    )
    if n and counts["ok"] == 0 and len(todo) == n:
        raise FacsError(f"{work}: no clip gave a face crop")
    return 0
