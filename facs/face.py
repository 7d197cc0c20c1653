"""Face stage: one Haar face box per clip, then crop + elliptic mask + resize for every frame.

Detection (the original work's settings, DESIGN.md §5): OpenCV's `haarcascade_frontalface_alt`
(scaleFactor 1.1, minNeighbors 5, minSize 30) on the histogram-equalised grey frame, every
`every`-th frame (0, every, 2*every, ...). Frames larger than `detect_max_side` (640) are shrunk
for detection only (MMI's 720x576 barely; phone video a lot), boxes scaled back.

Merge rule (one box per clip, "the most frequent enclosing box"): detections of the sampled
frames are grouped into tracks — a detection joins the track whose median box it overlaps most
(IoU >= 0.3), else starts a new one. The track seen in the most sampled frames is the face (ties:
the larger median box); the clip's box is the box enclosing all of that track's detections,
widened by `margin` (a fraction of its size) on every side and made square around its centre.
Frames outside the image are filled with black. Per sampled frame the stage keeps whether the
chosen track was found there.

Crop: the box is cut out (one box for the whole clip, so the face may move inside it), resized
to size x size and multiplied by an elliptic mask centred in the crop with semi-axes
(0.4 size, 0.5 size): the ellipse touches the top and bottom edges and leaves 10 % free at each
side; ears, hair and throat fall outside it.

    facs faces [--work WORK] [--profile quick] [--workers N]
writes WORK/faces/<clip>.npy (N x S x S x 3 uint8, BGR) and WORK/faces/<clip>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from facs.errors import FacsError
from facs.profile import add_common_arguments, default_work, describe, load_profile, section
from facs.video import read_frames
from facs.workdir import data_root, load_index, parallel_map, read_json, save_npy, write_json

CASCADE = "haarcascade_frontalface_alt.xml"
Box = tuple[int, int, int, int]  # x, y, w, h in pixels (top-left corner)


@dataclass(frozen=True)
class FaceParams:
    every: int = 10
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 30
    margin: float = 0.0
    size: int = 72
    mask_axes: tuple[float, float] = (0.4, 0.5)
    detect_max_side: int = 640  # larger frames are shrunk for detection only (speed)

    @classmethod
    def from_profile(cls, faces: dict) -> FaceParams:
        known = {k: v for k, v in faces.items() if k in cls.__dataclass_fields__}
        if "mask_axes" in known:
            known["mask_axes"] = tuple(float(a) for a in known["mask_axes"])
        return cls(**known)

    def fingerprint(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class FaceTrack:
    """The clip's face: its crop box and, per sampled frame, the chosen track's detection."""

    box: Box
    sampled: list[int] = field(default_factory=list)
    detections: list[Box | None] = field(default_factory=list)

    @property
    def found(self) -> list[bool]:
        return [d is not None for d in self.detections]

    def to_json(self) -> dict:
        return {
            "box": list(self.box),
            "sampled": self.sampled,
            "found": self.found,
            "detections": [list(d) if d is not None else None for d in self.detections],
        }


@lru_cache(maxsize=1)
def cascade() -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / CASCADE
    clf = cv2.CascadeClassifier(str(path))
    if clf.empty():
        raise FacsError(f"{path}: cannot load the Haar cascade (needs opencv-python-headless<5)")
    return clf


def detect_faces(frame: np.ndarray, params: FaceParams = FaceParams()) -> list[Box]:
    """All Haar detections in one BGR (or grey) frame, in the frame's pixels.

    A frame whose larger side exceeds `detect_max_side` is shrunk to it first (minSize then
    applies to the shrunk frame) and the boxes are scaled back."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    scale = 1.0
    side = max(grey.shape[:2])
    if params.detect_max_side and side > params.detect_max_side:
        scale = params.detect_max_side / side
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    grey = cv2.equalizeHist(grey)
    found = cascade().detectMultiScale(
        grey,
        scaleFactor=params.scale_factor,
        minNeighbors=params.min_neighbors,
        minSize=(params.min_size, params.min_size),
    )
    return [tuple(int(round(v / scale)) for v in b) for b in found]


def iou(a: Box, b: Box) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _median_box(boxes: list[Box]) -> Box:
    return tuple(int(v) for v in np.median(np.asarray(boxes), axis=0))


def merge_detections(
    per_frame: list[list[Box]], margin: float = 0.0
) -> tuple[Box, list[Box | None]] | None:
    """The module docstring's merge rule: (square crop box, chosen detection per sampled frame),
    or None when no frame has a detection. The box may extend past the frame (crop pads)."""
    tracks: list[dict] = []  # {"boxes": [...], "frames": {i: box}}
    for i, boxes in enumerate(per_frame):
        for box in boxes:
            best, best_iou = None, 0.3
            for t in tracks:
                o = iou(box, _median_box(t["boxes"]))
                if o >= best_iou:
                    best, best_iou = t, o
            if best is None:
                best = {"boxes": [], "frames": {}}
                tracks.append(best)
            best["boxes"].append(box)
            # two detections of one track in one frame: keep the larger
            old = best["frames"].get(i)
            if old is None or box[2] * box[3] > old[2] * old[3]:
                best["frames"][i] = box
    if not tracks:
        return None

    def score(t: dict) -> tuple[int, int]:
        m = _median_box(t["boxes"])
        return len(t["frames"]), m[2] * m[3]

    face = max(tracks, key=score)
    chosen = list(face["frames"].values())
    x0 = min(b[0] for b in chosen)
    y0 = min(b[1] for b in chosen)
    x1 = max(b[0] + b[2] for b in chosen)
    y1 = max(b[1] + b[3] for b in chosen)
    w, h = x1 - x0, y1 - y0
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x0 + w / 2.0, y0 + h / 2.0
    s = int(round(side))
    box = (int(round(cx - s / 2.0)), int(round(cy - s / 2.0)), s, s)
    detections = [face["frames"].get(i) for i in range(len(per_frame))]
    return box, detections


def detect_clip_box(
    frames: Iterable[np.ndarray], every: int = 10, params: FaceParams | None = None
) -> FaceTrack | None:
    """Detect on frames 0, every, 2*every, ... and merge into one box; None if no face at all.

    `frames` is any iterable of BGR frames (a list, an N x H x W x 3 array, read_frames(path)).
    """
    params = params or FaceParams(every=every)
    sampled, per_frame = [], []
    for i, frame in enumerate(frames):
        if i % every == 0:
            sampled.append(i)
            per_frame.append(detect_faces(frame, params))
    merged = merge_detections(per_frame, params.margin)
    if merged is None:
        return None
    box, detections = merged
    return FaceTrack(box=box, sampled=sampled, detections=detections)


@lru_cache(maxsize=8)
def elliptic_mask(size: int, axes: tuple[float, float] = (0.4, 0.5)) -> np.ndarray:
    """size x size uint8 mask, 1 inside the centred ellipse with semi-axes (ax*size, ay*size)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2.0
    inside = ((xx - c) / (axes[0] * size)) ** 2 + ((yy - c) / (axes[1] * size)) ** 2 <= 1.0
    mask = inside.astype(np.uint8)
    mask.flags.writeable = False
    return mask


def crop_face(
    frame: np.ndarray,
    box: Box,
    size: int,
    mask: bool = True,
    axes: tuple[float, float] = (0.4, 0.5),
) -> np.ndarray:
    """Cut `box` out of the frame (black outside the image), resize to size x size, mask."""
    x, y, w, h = (int(v) for v in box)
    if w <= 0 or h <= 0:
        raise FacsError(f"face box {box}: empty")
    fh, fw = frame.shape[:2]
    pad = max(0, -x, -y, x + w - fw, y + h - fh)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        x, y = x + pad, y + pad
    roi = frame[y : y + h, x : x + w]
    interp = cv2.INTER_AREA if w > size else cv2.INTER_LINEAR
    out = cv2.resize(roi, (size, size), interpolation=interp)
    if mask:
        m = elliptic_mask(size, tuple(axes))
        out = out * (m[..., None] if out.ndim == 3 else m)
    return out


def crop_clip(frames: Iterable[np.ndarray], box: Box, params: FaceParams) -> np.ndarray:
    """N x S x S x 3 uint8 masked crops of every frame."""
    crops = [crop_face(f, box, params.size, True, params.mask_axes) for f in frames]
    if not crops:
        return np.zeros((0, params.size, params.size, 3), np.uint8)
    return np.stack(crops)


# --------------------------------------------------------------------------- the stage


def faces_dir(work: Path) -> Path:
    return Path(work) / "faces"


def clip_done(work: Path, clip_id: str, fingerprint: str) -> bool:
    """A clip is done when its JSON (written last) has this fingerprint, and its crops exist
    when it has a face."""
    meta_path = faces_dir(work) / f"{clip_id}.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if meta.get("fingerprint") != fingerprint:
        return False
    return not meta.get("face") or (faces_dir(work) / f"{clip_id}.npy").is_file()


def process_clip(job: tuple[dict, str, str, FaceParams]) -> dict:
    """Detect, crop and save one clip; returns a small summary dict (never raises FacsError)."""
    clip, root, work, params = job
    cid = clip["id"]
    video = Path(root) / clip["video"]
    t0 = time.perf_counter()
    try:
        track = detect_clip_box(read_frames(video, stride=params.every), 1, params)
        if track is not None:
            # detection read every `every`-th frame: map sample numbers back to frame indices
            track.sampled = [i * params.every for i in track.sampled]
            crops = crop_clip(read_frames(video), track.box, params)
    except FacsError as exc:
        return {"clip": cid, "status": "error", "message": str(exc), "frames": 0}
    meta = {
        "clip": cid,
        "video": clip["video"],
        "face": track is not None,
        "fingerprint": params.fingerprint(),
        "params": asdict(params),
    }
    if track is None:
        meta["frames"] = 0
        write_json(faces_dir(work) / f"{cid}.json", meta)
        (faces_dir(work) / f"{cid}.npy").unlink(missing_ok=True)
        return {"clip": cid, "status": "noface", "frames": 0, "s": time.perf_counter() - t0}
    meta.update({"frames": int(len(crops)), "size": params.size, **track.to_json()})
    save_npy(faces_dir(work) / f"{cid}.npy", crops)
    write_json(faces_dir(work) / f"{cid}.json", meta)  # written last: marks the clip done
    return {"clip": cid, "status": "ok", "frames": int(len(crops)), "s": time.perf_counter() - t0}


def load_faces(work: Path, clip_id: str, mmap: bool = True) -> tuple[np.ndarray, dict] | None:
    """(N x S x S x 3 crops, metadata) of a clip, or None when it has no face."""
    meta = read_json(faces_dir(work) / f"{clip_id}.json", f"face crops of {clip_id}")
    if not meta.get("face"):
        return None
    crops = np.load(faces_dir(work) / f"{clip_id}.npy", mmap_mode="r" if mmap else None)
    return crops, meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--data", type=Path, default=None, help="data root (default: index's)")
    parser.add_argument("--force", action="store_true", help="redo clips already done")


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    work = args.work or default_work(profile["name"])
    params = FaceParams.from_profile(section(profile, "faces"))
    print(describe(profile, "faces"))
    index = load_index(work)
    root = data_root(index, work, args.data)
    clips = index["clips"]
    fp = params.fingerprint()
    todo = [c for c in clips if args.force or not clip_done(work, c["id"], fp)]
    print(f"faces: {len(clips)} clips, {len(clips) - len(todo)} already done, {len(todo)} to do")
    jobs = [(c, str(root), str(work), params) for c in todo]
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
    if clips and counts["ok"] == 0 and len(todo) == len(clips):
        raise FacsError(f"{work}: no clip gave a face crop")
    return 0
