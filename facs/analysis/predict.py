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
from facs.analysis.facemesh import BLENDSHAPES, FaceMesh, MeshFace
from facs.analysis.landmarks import FaceLandmarks, LandmarkTracker
from facs.analysis.model import BUILTIN_STREAMS, Model, StreamSpec, load_model
from facs.aus import au_label
from facs.errors import FacsError
from facs.preprocess.records import (
    ClipRecords,
    FaceParams,
    FaceTrack,
    crop_face,
    detect_faces,
    face_track,
)
from facs.training.fusion import fuse
from facs.video import Media, open_media

CLIP_PERCENTILE = 90.0
BATCH = 64
Progress = Callable[..., None]


@dataclass
class VideoPass:
    """What the decoding pass found, and the face crops made from it (per face settings)."""

    media: Media
    fps: float
    frames: int
    width: int
    height: int
    faces: list  # the primary tracker's face per frame (MeshFace | FaceLandmarks | None)
    dlib: list[FaceLandmarks | None] | None = None
    mesh: list[MeshFace | None] | None = None
    track: FaceTrack | None = None  # the Haar clip box (CNN streams only)
    tick: Callable[[int], None] = lambda n: None  # progress in frames of work
    crops: dict = field(default_factory=dict)  # FaceParams -> N x S x S x 3 | None
    calibration: dict = field(default_factory=dict)  # stream -> realface.Calibration

    @property
    def face(self) -> np.ndarray:
        return np.array([f is not None for f in self.faces], dtype=bool)


def decode_pass(
    media: Media, kinds: set[str], haar: FaceParams | None, tick: Callable[[int], None]
) -> VideoPass:
    """The faces in every frame, by the trackers the streams' kinds need: MediaPipe for
    `mediapipe`, dlib for `landmarks` (and for `cnn` when no MediaPipe runs); with `haar`,
    the clip's Haar face box as training makes it (frames 0, every, 2*every, ..., merged)."""
    mesh_on = "mediapipe" in kinds
    dlib_on = "landmarks" in kinds or ("cnn" in kinds and not mesh_on)
    tracker = LandmarkTracker() if dlib_on else None
    mesher = FaceMesh(video=media.kind != "image") if mesh_on else None
    dlib: list = []
    mesh: list = []
    sampled, detections = [], []
    h = w = 0
    step_ms = 1000.0 / media.fps if media.fps else 0.0
    try:
        for i, frame in enumerate(media.read()):
            h, w = frame.shape[:2]
            if tracker is not None:
                dlib.append(tracker(frame))
            if mesher is not None:
                mesh.append(mesher(frame, int(round(i * step_ms))))
            if haar is not None and i % haar.every == 0:
                sampled.append(i)
                detections.append(detect_faces(frame, haar))
            tick(1)
    finally:
        if mesher is not None:
            mesher.close()
    track = face_track(sampled, detections, haar) if haar is not None else None
    faces = mesh if mesh_on else dlib
    return VideoPass(
        media, media.fps, len(faces), w, h, faces, dlib if dlib_on else None,
        mesh if mesh_on else None, track, tick,
    )  # fmt: skip


def clip_crops(vp: VideoPass, params: FaceParams) -> np.ndarray | None:
    """N x S x S x 3 masked face crops of the whole video in the clip's one box (a second
    decoding pass), or None when Haar found no face in the sampled frames."""
    if params not in vp.crops:
        crops = None
        if vp.track is not None:
            crops = np.zeros((vp.frames, params.size, params.size, 3), np.uint8)
            for i, frame in enumerate(vp.media.read()):
                if i >= vp.frames:
                    break
                crops[i] = crop_face(frame, vp.track.box, params.size, True, params.mask_axes)
                vp.tick(1)
        vp.crops[params] = crops
    return vp.crops[params]


def landmark_stream(vp: VideoPass, model: Model, name: str) -> np.ndarray:
    """N x L probabilities of the dlib landmark stream (NaN: labels it has no opinion on)."""
    spec = stream_spec(model, name)
    classifier = None
    if spec.method == "learned":
        if name not in model.cache:
            model.cache[name] = geometry.LearnedGeometry.load(model.file(name, spec.classifier))
        classifier = model.cache[name]
    feats = geometry.landmarks_to_features(vp.dlib)
    return geometry.stream_probs(feats, model.labels, vp.fps or 25.0, classifier)


def mediapipe_stream(vp: VideoPass, model: Model, name: str) -> np.ndarray:
    """N x L probabilities of the real-face stream (NaN: labels it has no opinion on)."""
    n = len(vp.mesh)
    points = np.full((n, 478, 3), np.nan, np.float32)
    blend = np.full((n, len(BLENDSHAPES)), np.nan, np.float32)
    for i, f in enumerate(vp.mesh):
        if f is not None:
            points[i], blend[i] = f.points[:478], f.blendshapes
    method = stream_spec(model, name).method
    probs, vp.calibration[name] = realface.stream_probs(points, blend, model.labels, vp.fps, method)
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
    (the others score 0; they are 0 after fusion anyway)."""
    spec = model.streams[name]
    out = np.zeros((vp.frames, len(model.labels)), np.float32)
    if vp.media.kind == "image":
        raise FacsError(
            f"{vp.media.path}: a still image; model {model.name}'s {name} stream needs a video "
            "(the built-in real-face model reads stills: --model face)"
        )
    crops = clip_crops(vp, spec.input.faces)
    if crops is None:
        vp.tick(vp.frames)
        return out
    records = ClipRecords(spec.input, crops)
    net = _deploy(model, name)
    todo = np.flatnonzero(vp.face)
    vp.tick(vp.frames - len(todo))
    for i in range(0, len(todo), BATCH):
        idx = todo[i : i + BATCH]
        p = net.probs(np.stack([records.record(t) for t in idx]))
        if p.shape[1] != len(model.labels):
            raise FacsError(
                f"{net.source}: the net has {p.shape[1]} outputs, the model "
                f"{len(model.labels)} labels"
            )
        out[idx] = p
        vp.tick(len(idx))
    return out


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


def predict_video(
    path: str | Path,
    model: Model | str | Path | None = None,
    streams: list[str] | None = None,
    progress: Progress | None = None,
    fps: float | None = None,
) -> dict:
    """Per-frame AU probabilities of one video, still or image folder (the module doc says
    what the result holds). `fps`: an image sequence's frame rate (default 30)."""
    if not isinstance(model, Model):
        model = load_model(model)
    names = stream_names(model, streams)
    kinds = {stream_spec(model, s).kind for s in names}
    cnn = [s for s in names if stream_spec(model, s).kind == "cnn"]
    media = open_media(path, fps)
    # progress in frames of work: the decoding pass, the crop pass, one pass per CNN stream
    total = media.frames * (1 + (1 + len(cnn) if cnn else 0))
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
    fused = np.asarray(fuse(scores, model.fusion), dtype=np.float32)
    fused[~vp.face] = 0.0
    return result_json(vp, model, names, fused)


def result_json(vp: VideoPass, model: Model, names: list[str], fused: np.ndarray) -> dict:
    labels = model.labels
    face = vp.face
    clip = (
        np.percentile(fused[face], CLIP_PERCENTILE, axis=0) if face.any() else np.zeros(len(labels))
    )
    per_frame = []
    for i, f in enumerate(vp.faces):
        row = fused[i]
        per_frame.append(
            {
                "index": i,
                "time": round(i / vp.fps, 6) if vp.fps else 0.0,
                "face": f is not None,
                "box": list(f.box) if f is not None else None,
                "confidence": round(float(f.confidence), 4) if f is not None else 0.0,
                "probs": [round(float(p), 4) for p in row],
                "top5": [{"code": c, "prob": round(p, 4)} for c, p in top5(row, labels)]
                if f is not None
                else [],
            }
        )
    return {
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
        "per_frame": per_frame,
    }
