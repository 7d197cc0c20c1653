"""A stream's input record, defined once: face box, crop, mask, reference, flow stack.

The LMDB stage writes these records for training, and prediction makes the same ones from a
video; both call this module, so a net sees at prediction exactly what it was trained on.

Face box (the original work's settings, DESIGN.md §5): OpenCV's `haarcascade_frontalface_alt`
(scaleFactor 1.1, minNeighbors 5, minSize 30) on the histogram-equalised grey frame, every
`every`-th frame (0, every, 2*every, ...); frames larger than `detect_max_side` are shrunk for
detection only and the boxes scaled back. Merge rule ("the most frequent enclosing box"): the
detections of the sampled frames are grouped into tracks — a detection joins the track whose
median box it overlaps most (IoU >= 0.3), else starts one; the track seen in the most sampled
frames is the face (ties: the larger median box); the clip's box encloses all of that track's
detections, widened by `margin` on every side and made square around its centre.

Crop: the one box of the clip is cut out of every frame (black outside the image), resized to
size x size and multiplied by an elliptic mask with semi-axes (0.4 size, 0.5 size).

Spatial record: the masked crop (B, G, R), with `reference: median` three more channels, the
crop minus the clip's per-pixel median crop + 128 (a per-clip neutral reference).

Flow: f_j = Farneback(grey crop j -> grey crop j + s), s the stride; uint8 = 128 + 12.8 * flow
(pixels per step), rounded and clipped; channel 0 is x (right +), 1 is y (down +). The stack of
frame t is f_{t + k*s}, k = -5 .. 4 (indices clamped to the existing flows; none at all -> 128):
layout `x` or `y`, 10 channels in time order, or `xy`, 20 channels x, y interleaved (Simonyan &
Zisserman).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from facs.errors import FacsError

CASCADE = "haarcascade_frontalface_alt.xml"
LAYOUTS = ("x", "y", "xy")
Box = tuple[int, int, int, int]  # x, y, w, h in pixels (top-left corner)


def _fingerprint(params) -> str:
    text = json.dumps(asdict(params), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- face box and crop


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
    def from_json(cls, faces: dict) -> FaceParams:
        known = {k: v for k, v in faces.items() if k in cls.__dataclass_fields__}
        if "mask_axes" in known:
            known["mask_axes"] = tuple(float(a) for a in known["mask_axes"])
        return cls(**known)

    def to_json(self) -> dict:
        return {**asdict(self), "mask_axes": list(self.mask_axes)}

    def fingerprint(self) -> str:
        return _fingerprint(self)


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
    """All Haar detections in one BGR (or grey) frame, in the frame's pixels."""
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
    """The merge rule: (square crop box, chosen detection per sampled frame), or None when no
    frame has a detection. The box may extend past the frame (the crop pads)."""
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


def face_track(
    sampled: list[int], per_frame: list[list[Box]], params: FaceParams
) -> FaceTrack | None:
    """The clip's FaceTrack from the detections of its sampled frames (frame numbers
    `sampled`), or None when no sampled frame has a face."""
    merged = merge_detections(per_frame, params.margin)
    if merged is None:
        return None
    box, detections = merged
    return FaceTrack(box=box, sampled=list(sampled), detections=detections)


def detect_clip_box(frames: Iterable[np.ndarray], params: FaceParams) -> FaceTrack | None:
    """Detect on frames 0, every, 2*every, ... of `frames` (any iterable of BGR frames) and
    merge into one box; None if no face at all."""
    sampled, per_frame = [], []
    for i, frame in enumerate(frames):
        if i % params.every == 0:
            sampled.append(i)
            per_frame.append(detect_faces(frame, params))
    return face_track(sampled, per_frame, params)


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
    """N x S x S x 3 uint8 masked crops of every frame, in one box."""
    crops = [crop_face(f, box, params.size, True, params.mask_axes) for f in frames]
    if not crops:
        return np.zeros((0, params.size, params.size, 3), np.uint8)
    return np.stack(crops)


# --------------------------------------------------------------------------- flow


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
    def from_json(cls, flow: dict) -> FlowParams:
        return cls(**{k: v for k, v in flow.items() if k in cls.__dataclass_fields__})

    def to_json(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        return _fingerprint(self)


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
    """Flow indices of frame t's stack (clamped at the clip ends)."""
    return [min(max(t + k * stride, 0), n_flows - 1) for k in range(-half, half)]


def stack_channels(layout: str, half: int = 5) -> int:
    return 4 * half if layout == "xy" else 2 * half


def flow_stack(
    flows: np.ndarray, t: int, stride: int = 1, layout: str = "xy", half: int = 5
) -> np.ndarray:
    """C x H x W uint8 stack of frame t: C = 2*half for x/y, 4*half for xy."""
    if layout not in LAYOUTS:
        raise FacsError(f"flow layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    h, w = flows.shape[1:3]
    channels = stack_channels(layout, half)
    if len(flows) == 0:
        return np.full((channels, h, w), 128, np.uint8)
    return stack_layout(flows[stack_indices(t, len(flows), stride, half)], layout)


def stack_layout(sel: np.ndarray, layout: str) -> np.ndarray:
    """2*half x H x W x 2 selected flows -> the C x H x W record in `layout`."""
    if layout == "x":
        return np.ascontiguousarray(sel[..., 0])
    if layout == "y":
        return np.ascontiguousarray(sel[..., 1])
    # (k, H, W, 2) -> (k, 2, H, W) -> (2k, H, W): x_k, y_k interleaved
    k, h, w = sel.shape[:3]
    return np.ascontiguousarray(sel.transpose(0, 3, 1, 2).reshape(2 * k, h, w))


# --------------------------------------------------------------------------- stream records


def median_reference(crops: np.ndarray) -> np.ndarray:
    """The clip's median frame (S x S x 3 uint8): a per-clip neutral reference."""
    return np.median(np.asarray(crops), axis=0).round().astype(np.uint8)


class StreamedMedian:
    """median_reference without holding the clip: per-pixel histograms of the crops (S*S*3 x
    256 counts, 16 MB for 72 px), fed one crop at a time; the same numbers as np.median."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self.size = int(np.prod(shape))
        self.counts = np.zeros((self.size, 256), np.int32)
        self.rows = np.arange(self.size)
        self.n = 0

    def add(self, crop: np.ndarray) -> None:
        self.counts[self.rows, crop.reshape(-1)] += 1
        self.n += 1

    def median(self) -> np.ndarray:
        cum = self.counts.cumsum(axis=1)
        lo = np.argmax(cum > (self.n - 1) // 2, axis=1)  # the two middle order statistics
        hi = np.argmax(cum > self.n // 2, axis=1)
        return ((lo + hi) / 2.0).round().astype(np.uint8).reshape(self.shape)


def streamed_flow_records(crops, n: int, inp: StreamInput):
    """(t, C x H x W record) of a flow stream for t = 0..n-1, in order, from the clip's n crops
    given one at a time: the records ClipRecords makes, holding only the flows one stack spans
    (2 * half * stride of them) and `stride` + 1 crops."""
    s, half = inp.stride, inp.flow.half
    n_flows = max(n - s, 0)
    greys: deque = deque(maxlen=s + 1)
    flows: dict[int, np.ndarray] = {}
    t = 0
    shape = None

    def ready(t: int, have: int) -> bool:  # frame t's stack needs flows up to its last index
        return n_flows > 0 and stack_indices(t, n_flows, s, half)[-1] < have

    def record(t: int) -> np.ndarray:
        idx = stack_indices(t, n_flows, s, half)
        out = stack_layout(np.stack([flows[i] for i in idx]), inp.layout)
        for i in [i for i in flows if i < idx[0] - s]:  # behind every later stack
            del flows[i]
        return out

    for c, crop in enumerate(crops):
        if c >= n:
            break
        shape = crop.shape[:2]
        greys.append(_grey(np.ascontiguousarray(crop)))
        j = c - s
        if 0 <= j < n_flows:
            flows[j] = encode_flow(farneback(greys[0], greys[-1], inp.flow), inp.flow.scale)
            while t < n and ready(t, j + 1):
                yield t, record(t)
                t += 1
    while t < n:
        if n_flows == 0:  # a clip shorter than the stride: flow_stack's neutral stack
            h, w = shape if shape is not None else (inp.faces.size, inp.faces.size)
            yield t, np.full((stack_channels(inp.layout, half), h, w), 128, np.uint8)
        else:
            yield t, record(t)
        t += 1


def with_reference(frame: np.ndarray, median: np.ndarray) -> np.ndarray:
    """H x W x 6: the frame, then frame - median + 128 (clipped)."""
    diff = frame.astype(np.int16) - median.astype(np.int16) + 128
    return np.concatenate([frame, np.clip(diff, 0, 255).astype(np.uint8)], axis=2)


@dataclass(frozen=True)
class StreamInput:
    """How one stream's records are made from a clip (a profile configuration's options):
    `frame` records (reference none | median) or `flow` stacks (stride, layout)."""

    kind: str  # "frame" | "flow"
    faces: FaceParams = FaceParams()
    reference: str = "none"
    flow: FlowParams = FlowParams()
    stride: int = 1
    layout: str = "xy"

    def __post_init__(self) -> None:
        if self.kind not in ("frame", "flow"):
            raise FacsError(f"stream input kind {self.kind!r}: expected frame or flow")
        if self.reference not in ("none", "median"):
            raise FacsError(f"reference {self.reference!r}: expected none or median")
        if self.layout not in LAYOUTS:
            raise FacsError(f"flow layout {self.layout!r}: expected one of {', '.join(LAYOUTS)}")

    @classmethod
    def for_stream(cls, stream: str, options: dict, faces: dict, flow: dict) -> StreamInput:
        """From a configuration's stream options (profile lmdb.configs.<c>.<stream>)."""
        kind = "flow" if stream == "flow" else "frame"
        opts = options or {}
        return cls(
            kind=kind,
            faces=FaceParams.from_json(faces),
            reference=str(opts.get("reference", "none")) if kind == "frame" else "none",
            flow=FlowParams.from_json(flow),
            stride=int(opts.get("stride", 1)) if kind == "flow" else 1,
            layout=str(opts.get("layout", "xy")) if kind == "flow" else "xy",
        )

    @property
    def channels(self) -> int:
        if self.kind == "flow":
            return stack_channels(self.layout, self.flow.half)
        return 6 if self.reference == "median" else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """C x H x W of a record."""
        return (self.channels, self.faces.size, self.faces.size)

    def to_json(self) -> dict:
        out: dict = {"kind": self.kind, "faces": self.faces.to_json()}
        if self.kind == "frame":
            out["reference"] = self.reference
        else:
            out.update(stride=self.stride, layout=self.layout, flow=self.flow.to_json())
        return out

    @classmethod
    def from_json(cls, d: dict) -> StreamInput:
        return cls(
            kind=str(d["kind"]),
            faces=FaceParams.from_json(d.get("faces") or {}),
            reference=str(d.get("reference", "none")),
            flow=FlowParams.from_json(d.get("flow") or {}),
            stride=int(d.get("stride", 1)),
            layout=str(d.get("layout", "xy")),
        )


class ClipRecords:
    """The records of one clip's frames for one stream, from its masked face crops (N x S x S
    x 3) and, for flow, its encoded flows at the stream's stride (computed when not given)."""

    def __init__(self, inp: StreamInput, crops: np.ndarray, flows: np.ndarray | None = None):
        self.inp = inp
        self.crops = crops
        self.median = median_reference(crops) if inp.reference == "median" else None
        if inp.kind == "flow" and flows is None:
            flows = clip_flows(np.asarray(crops), inp.stride, inp.flow)
        self.flows = flows

    def frame(self, t: int) -> np.ndarray:
        """H x W x C spatial input of frame t (what bootstrapping transforms)."""
        frame = np.asarray(self.crops[t])
        return with_reference(frame, self.median) if self.median is not None else frame

    def record(self, t: int) -> np.ndarray:
        """C x H x W uint8 record of frame t."""
        if self.inp.kind == "flow":
            i = self.inp
            return flow_stack(self.flows, t, i.stride, i.layout, i.flow.half)
        return to_chw(self.frame(t))


def to_chw(frame: np.ndarray) -> np.ndarray:
    """H x W x C -> contiguous C x H x W (the Datum layout)."""
    return np.ascontiguousarray(frame.transpose(2, 0, 1))
