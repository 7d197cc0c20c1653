"""The one prediction path of facs: `facs analyze` and the web demo both call it.

    model = load_model()                      # facs.analysis.model: "face" (default), a folder
    result = predict_video("clip.mp4", model, streams=None, progress=None)

The input is a video, a still image or a folder of images (facs.video.open_media).

1. One decoding pass: the faces in every frame — MediaPipe's mesh and blendshapes
   (facs.analysis.facemesh) for the real-face stream, dlib's 68 landmarks for the landmark
   stream — and, for CNN streams, the Haar detections of every `every`-th frame, merged into
   the clip's one face box (facs.preprocess.records, as in training). The `success` column and
   the per-frame box come from MediaPipe when a stream uses it, else from dlib.
2. Each stream to N x L probabilities: the real-face stream from the mesh and blendshapes
   (facs.analysis.realface), the landmark stream from dlib's landmarks
   (facs.analysis.geometry), a CNN stream from the records facs.preprocess.records makes of
   the clip's crops (the very records the LMDB stage writes), scored by the deploy runtime
   (facs.caffe.deploy) on the frames with a face.
3. Fusion with the model's spec (facs.training.fusion.fuse); frames without a face are 0.

The result is JSON-ready:

    {"video", "input" (video | image | sequence), "fps", "frames", "width", "height",
     "duration", "model", "trained_on" (what faces the model learned, in words), "streams",
     "calibration" ({stream: {"method", "neutral_frames"}}), "labels", "label_names",
     "thresholds", "faces" (frames with a face), "clip": {code: p},
     "top5": [{"code", "label", "prob"}],
     "per_frame": [{"index", "time", "face": bool, "box": [x, y, w, h] | null, "confidence",
                    "probs": [p per label], "top5": [{"code", "prob"}]}]}

Clip-level probability of an AU: the 90th percentile of its per-frame probability over the
frames with a face (an AU seen in at least a tenth of those frames ranks high; one noisy frame
does not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facs.analysis import geometry, realface
from facs.analysis.facemesh import BLENDSHAPES, FaceMesh
from facs.analysis.landmarks import LandmarkTracker
from facs.analysis.model import BUILTIN_STREAMS, Model, StreamSpec, load_model
from facs.aus import au_label
from facs.errors import FacsError
from facs.fileio import atomic_path
from facs.preprocess.records import (
    FaceParams,
    FaceTrack,
    StreamedMedian,
    crop_face,
    detect_faces,
    face_track,
    streamed_flow_records,
    to_chw,
    with_reference,
)
from facs.training.fusion import fuse_in_chunks
from facs.video import Media, open_media

CLIP_PERCENTILE = 90.0
BATCH = 64
Progress = Callable[..., None]


class Rows:
    """An N x width array filled a row at a time, allocated once for the frames the header
    promises (plus a chunk more each time a video holds more): per-frame values without a
    Python object per frame, and no copy of the whole array while it grows."""

    def __init__(self, width: int, dtype=np.float64, fill: float = np.nan, capacity: int = 256):
        self.width, self.dtype, self.fill = width, dtype, fill
        self.chunks = [np.full((max(capacity, 1), width), fill, dtype)]
        self.n = 0  # rows filled in all
        self.k = 0  # rows filled in the last chunk

    def append(self, row) -> None:
        last = self.chunks[-1]
        if self.k == len(last):
            last = np.full((4096, self.width), self.fill, self.dtype)
            self.chunks.append(last)
            self.k = 0
        if row is not None:
            last[self.k] = row
        self.k += 1
        self.n += 1

    def array(self) -> np.ndarray:
        """The filled rows (a view when the header's count held, one copy otherwise)."""
        if len(self.chunks) == 1:
            return self.chunks[0][: self.n]
        whole = np.concatenate(self.chunks[:-1] + [self.chunks[-1][: self.k]])
        self.chunks = [whole]
        return whole


@dataclass
class VideoPass:
    """What the decoding pass kept of every frame: small per-frame arrays only (a face's box
    and confidence, the trackers' features), so that memory does not grow with the video by
    more than ~100-200 bytes a frame. Later passes decode the video again."""

    media: Media
    fps: float
    frames: int
    width: int
    height: int
    face: np.ndarray  # N bool: the primary tracker found a face
    box: np.ndarray  # N x 4 int (x, y, w, h), -1 where no face
    confidence: np.ndarray  # N float
    mesh_features: np.ndarray | None = None  # N x len(realface.FEATURES), NaN where no face
    blend: np.ndarray | None = None  # N x 52 blendshapes, NaN where no face
    dlib_points: np.ndarray | None = None  # N x 68 x 2 int16 pixels (dlib's are integers)
    dlib_found: np.ndarray | None = None  # N bool: dlib found a face
    track: FaceTrack | None = None  # the Haar clip box (CNN streams only)
    tick: Callable[[int], None] = lambda n: None  # progress in frames of work
    calibration: dict = field(default_factory=dict)  # stream -> realface.Calibration


def decode_pass(
    media: Media, kinds: set[str], haar: FaceParams | None, tick: Callable[[int], None]
) -> VideoPass:
    """The faces in every frame, by the trackers the streams' kinds need: MediaPipe for
    `mediapipe`, dlib for `landmarks` (and for `cnn` when no MediaPipe runs); with `haar`,
    the clip's Haar face box as training makes it (frames 0, every, 2*every, ..., merged).
    Each frame leaves its features, not its landmarks."""
    mesh_on = "mediapipe" in kinds
    dlib_on = "landmarks" in kinds or ("cnn" in kinds and not mesh_on)
    keep_points = "landmarks" in kinds  # a CNN stream needs dlib's box, not its points
    tracker = LandmarkTracker() if dlib_on else None
    mesher = FaceMesh(video=media.kind != "image") if mesh_on else None
    cap = media.frames + 16  # the header's count; Rows grows if the video holds more

    def rows(width: int, dtype=np.float64, fill: float = np.nan) -> Rows:
        return Rows(width, dtype, fill, cap)

    box, conf = rows(4, np.int32, -1), rows(1, np.float64, 0.0)
    mesh_f = rows(len(realface.FEATURES)) if mesh_on else None
    blend = rows(len(BLENDSHAPES), np.float32) if mesh_on else None
    dlib_p = rows(68 * 2, np.int16, 0) if keep_points else None
    dlib_ok = rows(1, np.bool_, False) if keep_points else None
    sampled, detections = [], []
    h = w = 0
    step_ms = 1000.0 / media.fps if media.fps else 0.0
    try:
        for i, frame in enumerate(media.read()):
            h, w = frame.shape[:2]
            lm = tracker(frame) if tracker is not None else None
            mf = mesher(frame, int(round(i * step_ms))) if mesher is not None else None
            if dlib_p is not None:
                dlib_p.append(lm.points.reshape(-1) if lm is not None else None)
                dlib_ok.append(lm is not None or None)
            if mesh_f is not None:
                mesh_f.append(realface.frame_features(mf.points[None])[0] if mf else None)
                blend.append(mf.blendshapes if mf is not None else None)
            primary = mf if mesh_on else lm
            box.append(primary.box if primary is not None else None)
            conf.append(primary.confidence if primary is not None else None)
            if haar is not None and i % haar.every == 0:
                sampled.append(i)
                detections.append(detect_faces(frame, haar))
            tick(1)
    finally:
        if mesher is not None:
            mesher.close()
    track = face_track(sampled, detections, haar) if haar is not None else None
    boxes = box.array()
    return VideoPass(
        media, media.fps, len(boxes), w, h, boxes[:, 2] >= 0, boxes, conf.array()[:, 0],
        mesh_f.array() if mesh_f is not None else None,
        blend.array() if blend is not None else None,
        dlib_p.array().reshape(-1, 68, 2) if dlib_p is not None else None,
        dlib_ok.array()[:, 0] if dlib_ok is not None else None, track, tick,
    )  # fmt: skip


def clip_crops(vp: VideoPass, params: FaceParams):
    """The masked face crops (S x S x 3) of every frame in the clip's one box, one at a time:
    a decoding pass, nothing kept."""
    for i, frame in enumerate(vp.media.read()):
        if i >= vp.frames:
            return
        yield crop_face(frame, vp.track.box, params.size, True, params.mask_axes)


def landmark_stream(vp: VideoPass, model: Model, name: str) -> np.ndarray:
    """N x L probabilities of the dlib landmark stream (NaN: labels it has no opinion on)."""
    spec = stream_spec(model, name)
    classifier = None
    if spec.method == "learned":
        if name not in model.cache:
            model.cache[name] = geometry.LearnedGeometry.load(model.file(name, spec.classifier))
        classifier = model.cache[name]
    feats = geometry.features_in_chunks(vp.dlib_points, vp.dlib_found)
    return geometry.stream_probs(feats, model.labels, vp.fps or 25.0, classifier)


def mediapipe_stream(vp: VideoPass, model: Model, name: str) -> np.ndarray:
    """N x L probabilities of the real-face stream (NaN: labels it has no opinion on)."""
    method = stream_spec(model, name).method
    probs, vp.calibration[name] = realface.probs_from_features(
        vp.mesh_features, np.asarray(vp.blend, np.float32), model.labels, vp.fps, method
    )
    return probs


def stream_spec(model: Model, name: str) -> StreamSpec:
    return model.streams.get(name) or BUILTIN_STREAMS[name]


def _deploy(model: Model, name: str):
    """The stream's deploy net with its weights and mean, loaded once per model. (torch is
    imported here, not at the top: a landmark-only model never needs it.)"""
    if name not in model.cache:
        from facs.caffe.deploy import DeployNet

        spec = model.streams[name]
        model.cache[name] = DeployNet.load(
            model.file(name, spec.deploy),
            model.file(name, spec.weights),
            model.file(name, spec.mean),
            spec.input.shape,
            spec.crop,
            spec.scale,
        )
    return model.cache[name]


def cnn_stream(vp: VideoPass, model: Model, name: str) -> np.ndarray:
    """N x L probabilities of a CNN stream: its net on the records of the frames with a face
    (the others score 0; they are 0 after fusion anyway). The records are made while the video
    is decoded again, a batch at a time (a median reference takes one more pass first), so
    memory does not grow with the video."""
    spec = model.streams[name]
    inp = spec.input
    out = np.zeros((vp.frames, len(model.labels)), np.float32)
    if vp.media.kind == "image":
        raise FacsError(
            f"{vp.media.path}: a still image; model {model.name}'s {name} stream needs a video "
            "(the built-in real-face model reads stills: --model face)"
        )
    passes = cnn_passes(inp)
    if vp.track is None:  # Haar found no face in the sampled frames
        vp.tick(vp.frames * passes)
        return out
    median = None
    if passes == 2:
        acc = StreamedMedian((inp.faces.size, inp.faces.size, 3))
        for crop in clip_crops(vp, inp.faces):
            acc.add(crop)
            vp.tick(1)
        median = acc.median()
    if inp.kind == "flow":
        records = streamed_flow_records(clip_crops(vp, inp.faces), vp.frames, inp)
    else:
        records = (
            (t, to_chw(with_reference(c, median) if median is not None else c))
            for t, c in enumerate(clip_crops(vp, inp.faces))
        )
    net = _deploy(model, name)
    batch: list[int] = []
    stack: list[np.ndarray] = []

    def score() -> None:
        p = net.probs(np.stack(stack))
        if p.shape[1] != len(model.labels):
            raise FacsError(
                f"{net.source}: the net has {p.shape[1]} outputs, the model "
                f"{len(model.labels)} labels"
            )
        out[batch] = p
        batch.clear()
        stack.clear()

    seen = 0
    for t, record in records:
        seen += 1
        if vp.face[t]:
            batch.append(t)
            stack.append(record)
            if len(batch) == BATCH:
                score()
        vp.tick(1)
    if batch:
        score()
    if seen != vp.frames:
        raise FacsError(f"{vp.media.path}: decoded {seen} frames, the first pass {vp.frames}")
    return out


def cnn_passes(inp) -> int:
    """Decoding passes a CNN stream makes after the first: 2 with a median reference."""
    return 2 if inp.kind == "frame" and inp.reference == "median" else 1


def stream_names(model: Model, streams: list[str] | None) -> list[str]:
    """The streams to run: those asked for (the model's, or a built-in one: face, geometry),
    else the ones the model's fusion was fitted on."""
    fitted = [s for s in model.fusion.get("streams") or [] if s in model.streams]
    names = list(streams) if streams else (fitted or list(model.streams))
    missing = [s for s in names if s not in model.streams and s not in BUILTIN_STREAMS]
    if missing:
        raise FacsError(
            f"model {model.name}: has no {', '.join(missing)} stream (it has: "
            f"{', '.join(model.streams)}; built-in: {', '.join(BUILTIN_STREAMS)})"
        )
    return names


def top5(probs: np.ndarray, labels: list[str]) -> list[tuple[str, float]]:
    order = np.argsort(-np.nan_to_num(probs, nan=-1.0), kind="stable")[:5]
    return [(labels[i], float(probs[i])) for i in order]


def predict(
    path: str | Path,
    model: Model | str | Path | None = None,
    streams: list[str] | None = None,
    progress: Progress | None = None,
    fps: float | None = None,
) -> Prediction:
    """Per-frame AU probabilities of one video, still or image folder, as arrays
    (Prediction: `.json()` is the result the module doc describes, `.write_csv(path)` the
    OpenFace-style table, streamed). `fps`: an image sequence's frame rate (default 30)."""
    if not isinstance(model, Model):
        model = load_model(model)
    names = stream_names(model, streams)
    kinds = {stream_spec(model, s).kind for s in names}
    cnn = [s for s in names if stream_spec(model, s).kind == "cnn"]
    media = open_media(path, fps)
    # progress in frames of work: the decoding pass, then each CNN stream's passes
    total = media.frames * (1 + sum(cnn_passes(model.streams[s].input) for s in cnn))
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(min(done[0], total), total)

    haar = model.streams[cnn[0]].input.faces if cnn else None
    vp = decode_pass(media, kinds, haar, tick)
    run = {"cnn": cnn_stream, "landmarks": landmark_stream, "mediapipe": mediapipe_stream}
    scores = {s: run[stream_spec(model, s).kind](vp, model, s) for s in names}
    if progress is not None:
        progress(total, total)
    fused = fuse_in_chunks(scores, model.fusion)
    fused[~vp.face] = 0.0
    return Prediction(vp, model, names, fused)


def predict_video(
    path: str | Path,
    model: Model | str | Path | None = None,
    streams: list[str] | None = None,
    progress: Progress | None = None,
    fps: float | None = None,
) -> dict:
    """predict(...) as the JSON-ready result (the module doc says what it holds)."""
    return predict(path, model, streams, progress, fps).json()


class Prediction:
    """One input's result: the fused N x L probabilities and the per-frame face arrays, with
    the clip-level summary; per-frame dicts and CSV rows are made only when asked for."""

    def __init__(self, vp: VideoPass, model: Model, names: list[str], fused: np.ndarray):
        labels = model.labels
        face = vp.face
        # per label: a column's copy at a time, not the whole face-frame matrix
        clip = (
            np.array([np.percentile(fused[face, j], CLIP_PERCENTILE) for j in range(len(labels))])
            if face.any()
            else np.zeros(len(labels))
        )
        self.probs, self.face, self.box, self.confidence = fused, face, vp.box, vp.confidence
        self.labels = labels
        self.meta = {
            "video": vp.media.path.name,
            "input": vp.media.kind,
            "fps": vp.fps,
            "frames": vp.frames,
            "width": vp.width,
            "height": vp.height,
            "duration": vp.frames / vp.fps if vp.fps else 0.0,
            "model": model.name,
            "trained_on": model.faces,
            "streams": names,
            "calibration": {s: c.to_json() for s, c in vp.calibration.items()},
            "labels": labels,
            "label_names": {c: au_label(c) for c in labels},
            "thresholds": {c: model.threshold(c) for c in labels},
            "faces": int(face.sum()),
            "clip": {c: round(float(p), 4) for c, p in zip(labels, clip, strict=True)},
            "top5": [
                {"code": c, "label": au_label(c), "prob": round(p, 4)}
                for c, p in top5(np.asarray(clip), labels)
            ]
            if face.any()
            else [],
        }

    def frame(self, i: int) -> dict:
        """Frame i as the JSON result's per_frame entry."""
        row, ok = self.probs[i], bool(self.face[i])
        fps = self.meta["fps"]
        return {
            "index": i,
            "time": round(i / fps, 6) if fps else 0.0,
            "face": ok,
            "box": [int(v) for v in self.box[i]] if ok else None,
            "confidence": round(float(self.confidence[i]), 4) if ok else 0.0,
            "probs": [round(float(p), 4) for p in row],
            "top5": [{"code": c, "prob": round(p, 4)} for c, p in top5(row, self.labels)]
            if ok
            else [],
        }

    def json(self) -> dict:
        return {**self.meta, "per_frame": [self.frame(i) for i in range(len(self.probs))]}

    def write_csv(self, path: Path, chunk: int = 4096) -> None:
        """The per-frame table (facs.analysis.table), written a chunk of rows at a time into a
        temporary file renamed into place: memory stays flat whatever the video's length."""
        from facs.analysis.table import csv_chunks

        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
            for text in csv_chunks(self.meta, self.rows(chunk)):
                f.write(text)

    def rows(self, chunk: int):
        """(first frame, probs rounded as in the JSON, confidence, success) per chunk."""
        for a in range(0, len(self.probs), chunk):
            b = min(a + chunk, len(self.probs))
            probs = np.array([[round(float(p), 4) for p in r] for r in self.probs[a:b]])
            ok = self.face[a:b]
            conf = np.where(ok, [round(float(c), 4) for c in self.confidence[a:b]], 0.0)
            yield a, probs.reshape(b - a, len(self.labels)), conf, ok.astype(int)
