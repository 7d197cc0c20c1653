"""The one prediction path of facs: `facs analyze` and the web demo both call it.

    model = load_model("models/quick-best")   # a model folder, a name under models/, or "geometry"
    result = predict_video("clip.mp4", model, streams=None, progress=None)

`load_model` reads a model folder (docs/formats.md, "Model folder"); the name "geometry" gives
the built-in landmark model, which needs no training (facs.geometry's FACS rules).

`predict_video` decodes the video (facs.video), finds the face in every frame (dlib, for the
`success` column and the geometry stream), runs each requested stream to per-frame AU
probabilities, fuses them with facs.fusion.fuse and returns a JSON-ready dict:

    {"video", "fps", "frames", "width", "height", "duration", "model", "streams", "labels",
     "label_names", "thresholds", "faces" (frames with a face), "clip": {code: p},
     "top5": [{"code", "label", "prob"}],
     "per_frame": [{"index", "time", "face": bool, "box": [x, y, w, h] | null, "confidence",
                    "probs": [p per label], "top5": [{"code", "prob"}]}]}

Clip-level probability of an AU: the 90th percentile of its per-frame probability over the
frames with a face (an AU seen in at least a tenth of those frames ranks high; one noisy frame
does not). Frames without a face have probability 0 for every AU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facs.aus import au_label, sort_codes
from facs.errors import FacsError

MODELS_DIR = Path("models")
BUILTIN = "geometry"
CLIP_PERCENTILE = 90.0
Progress = Callable[..., None]


@dataclass
class Model:
    """A loaded model: labels, its streams' specs (paths resolved), fusion and thresholds."""

    name: str
    labels: list[str]
    streams: dict[str, dict]
    fusion: dict
    thresholds: dict[str, float]
    spec: dict = field(default_factory=dict)  # model.json as read (the web page shows it)
    folder: Path | None = None
    cache: dict = field(default_factory=dict, repr=False)  # nets, classifiers, loaded lazily

    def threshold(self, code: str) -> float:
        return float(self.thresholds.get(code, 0.5))


def builtin_geometry() -> Model:
    """The landmark model that needs no training: facs.geometry's rules, threshold 0.5."""
    from facs import geometry

    labels = list(geometry.LABELS)
    spec = {
        "name": BUILTIN,
        "description": "built-in: 68 dlib landmarks, per-person neutral calibration, FACS rules",
        "labels": labels,
        "streams": {"geometry": {"method": "rules"}},
        "fusion": {"method": "average", "streams": ["geometry"]},
        "thresholds": {c: 0.5 for c in labels},
    }
    return Model(
        name=BUILTIN,
        labels=labels,
        streams={"geometry": {"method": "rules"}},
        fusion=spec["fusion"],
        thresholds=spec["thresholds"],
        spec=spec,
    )


def _resolve(folder: Path, spec: dict, stream: str = "") -> dict:
    """Stream spec with its file paths (deploy, weights, mean, classifier) made absolute:
    relative to the model folder, else to its <stream>/ subfolder (where stream.json lives)."""
    out = dict(spec)
    for key in ("deploy", "weights", "mean", "classifier"):  # null/absent stays as it is
        if isinstance(out.get(key), str):
            path = (folder / out[key]).resolve()
            if not path.is_file() and stream:
                path = (folder / stream / out[key]).resolve()
            if not path.is_file():
                raise FacsError(f"{folder / 'model.json'}: {key} file {out[key]} does not exist")
            out[key] = path
    return out


def load_model(dir_or_name: str | Path | None = None) -> Model:
    """A model folder (holding model.json), a folder name under models/, or "geometry"."""
    if dir_or_name is None or str(dir_or_name) == BUILTIN:
        return builtin_geometry()
    folder = Path(dir_or_name)
    if not (folder / "model.json").is_file() and (MODELS_DIR / folder / "model.json").is_file():
        folder = MODELS_DIR / folder
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        raise FacsError(f"{folder}: not a model folder (no model.json) and not 'geometry'")
    try:
        spec = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise FacsError(f"{meta_path}: not readable JSON ({exc})") from None
    labels = [str(c) for c in spec.get("labels") or []]
    if not labels:
        raise FacsError(f"{meta_path}: no labels")
    streams = {name: _resolve(folder, s, name) for name, s in (spec.get("streams") or {}).items()}
    if not streams:
        raise FacsError(f"{meta_path}: no streams")
    unknown = set(streams) - set(STREAMS)
    if unknown:
        raise FacsError(f"{meta_path}: unknown stream(s) {', '.join(sorted(unknown))}")
    fusion = spec.get("fusion") or {"method": "average", "streams": list(streams)}
    thresholds = {str(k): float(v) for k, v in (spec.get("thresholds") or {}).items()}
    return Model(
        name=str(spec.get("name") or folder.name),
        labels=labels,
        streams=streams,
        fusion=fusion,
        thresholds=thresholds,
        spec=spec,
        folder=folder,
    )


# --------------------------------------------------------------------------- streams


@dataclass
class VideoPass:
    """What the first decoding pass found (face per frame, landmarks, Haar detections on every
    `every`-th frame for the CNN streams' clip box), plus the CNN inputs made from it."""

    path: Path
    fps: float
    frames: int
    width: int
    height: int
    faces: list  # FaceLandmarks | None per frame
    haar: list | None = None  # Haar boxes of frames 0, every, 2*every, ... (CNN streams only)
    tick: Callable[[int], None] = lambda n: None  # progress in frames of work
    cache: dict = field(default_factory=dict)  # crops per (size, axes), flows per stride


def haar_near(frame: np.ndarray, face, params) -> list:
    """The training data's Haar detections (facs.face.detect_faces), searched only around the
    face dlib found in this frame and at face-like sizes: the same boxes at a fraction of the
    cost of a whole-frame search (~5-10x on 640x360). Frames where dlib sees no face give none.
    """
    if face is None:
        return []
    import cv2

    x, y, w, h = face.box
    m = int(0.8 * max(w, h))
    fh, fw = frame.shape[:2]
    x0, y0 = max(0, x - m), max(0, y - m)
    x1, y1 = min(fw, x + w + m), min(fh, y + h + m)
    # equalise the whole frame as detect_faces does (the window's own histogram would differ)
    grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))[y0:y1, x0:x1]
    from facs.face import cascade

    lo = max(params.min_size, int(0.6 * max(w, h)))
    found = cascade().detectMultiScale(
        grey,
        scaleFactor=params.scale_factor,
        minNeighbors=params.min_neighbors,
        minSize=(lo, lo),
        maxSize=(int(2.5 * max(w, h)),) * 2,
    )
    return [(int(bx) + x0, int(by) + y0, int(bw), int(bh)) for bx, by, bw, bh in found]


def _first_pass(
    path: Path, tick: Callable[[int], None], haar_params=None, fps: float = 25.0
) -> VideoPass:
    from facs.landmarks import LandmarkTracker
    from facs.video import read_frames

    tracker = LandmarkTracker()
    faces, haar = [], [] if haar_params is not None else None
    h = w = 0
    for i, frame in enumerate(read_frames(path)):
        h, w = frame.shape[:2]
        faces.append(tracker(frame))
        if haar is not None and i % haar_params.every == 0:
            haar.append(haar_near(frame, faces[-1], haar_params))
        tick(1)
    return VideoPass(path, fps, len(faces), w, h, faces, haar, tick)


def geometry_stream(vp: VideoPass, model: Model, spec: dict) -> np.ndarray:
    """N x L probabilities of the landmark stream (NaN for labels it has no rule for)."""
    from facs import geometry

    feats = geometry.landmarks_to_features(vp.faces)
    if spec.get("method", "rules") == "rules":
        return geometry.rule_probs(feats, model.labels, fps=vp.fps)
    clf = model.cache.get("geometry")
    if clf is None:
        clf = model.cache["geometry"] = geometry.LearnedGeometry.load(spec["classifier"])
    probs = clf.predict(geometry.learned_inputs(feats, vp.fps))
    return _align(probs, clf.labels, model.labels)


def _face_params(spec: dict):
    from facs.face import FaceParams

    return FaceParams.from_profile(dict(spec.get("input", {}).get("faces") or {}))


def clip_crops(vp: VideoPass, spec: dict) -> np.ndarray | None:
    """N x S x S x 3 masked face crops of the whole video in ONE box (the Haar rule of the
    training data, facs.face), or None when Haar finds no face in the sampled frames."""
    from facs.face import crop_face, merge_detections
    from facs.video import read_frames

    params = _face_params(spec)
    key = ("crops", params.size, tuple(params.mask_axes), params.margin)
    if key in vp.cache:
        return vp.cache[key]
    merged = merge_detections(vp.haar or [], params.margin)
    crops = None
    if merged is not None:
        box = merged[0]
        crops = np.zeros((vp.frames, params.size, params.size, 3), np.uint8)
        for i, frame in enumerate(read_frames(vp.path)):
            if i >= vp.frames:
                break
            crops[i] = crop_face(frame, box, params.size, True, tuple(params.mask_axes))
            vp.tick(1)
    vp.cache[key] = crops
    return crops


def _net(model: Model, name: str, spec: dict):
    """The stream's deploy net with its weights and mean, loaded once per model."""
    if name not in model.cache:
        from facs.scores import load_mean, load_net

        mean = spec.get("mean")
        model.cache[name] = (load_net(spec["deploy"], spec["weights"]), load_mean(mean))
    return model.cache[name]


def _score(vp: VideoPass, model: Model, name: str, spec: dict, records) -> np.ndarray:
    """Run the stream's net on the records (C x H x W uint8, made batch by batch) of the frames
    with a face; frames without one score 0 (they are 0 after fusion anyway)."""
    from facs.scores import score_array

    net, mean = _net(model, name, spec)
    inp = spec.get("input", {})
    out = np.zeros((vp.frames, len(model.labels)), np.float32)
    todo = [t for t, f in enumerate(vp.faces) if f is not None]
    vp.tick(vp.frames - len(todo))
    for i in range(0, len(todo), BATCH):
        idx = todo[i : i + BATCH]
        batch = np.stack([records(t) for t in idx])
        p = score_array(net, batch, inp.get("crop"), mean, float(inp.get("scale", 1.0)))
        if p.shape[1] != len(model.labels):
            raise FacsError(
                f"{spec['deploy']}: the net has {p.shape[1]} outputs, the model "
                f"{len(model.labels)} labels"
            )
        out[idx] = p
        vp.tick(len(idx))
    return out


def spatial_stream(vp: VideoPass, model: Model, spec: dict) -> np.ndarray:
    """The appearance net on each frame's crop (with the clip's median frame where the model
    was trained with `reference: median`), as the LMDB stage built its records."""
    from facs import augment

    crops = clip_crops(vp, spec)
    if crops is None:
        vp.tick(vp.frames)
        return np.zeros((vp.frames, len(model.labels)), np.float32)
    median = augment.median_reference(crops)
    ref = spec.get("input", {}).get("reference", "none") == "median"

    def record(t: int) -> np.ndarray:
        frame = augment.with_reference(crops[t], median) if ref else crops[t]
        return frame.transpose(2, 0, 1)

    return _score(vp, model, "spatial", spec, record)


def flow_stream(vp: VideoPass, model: Model, spec: dict) -> np.ndarray:
    """The flow net on each frame's stack of Farneback flows between face crops."""
    from facs.flow import FlowParams, clip_flows, flow_stack

    crops = clip_crops(vp, spec)
    if crops is None:
        vp.tick(vp.frames)
        return np.zeros((vp.frames, len(model.labels)), np.float32)
    inp = spec.get("input", {})
    params = FlowParams.from_profile(dict(inp.get("flow") or {}))
    stride = int(inp.get("stride", 1))
    layout = str(inp.get("layout", "xy"))
    key = ("flows", stride, params)
    if key not in vp.cache:
        vp.cache[key] = clip_flows(crops, stride, params)
    flows = vp.cache[key]
    return _score(
        vp, model, "flow", spec, lambda t: flow_stack(flows, t, stride, layout, params.half)
    )


def _align(probs: np.ndarray, have: list[str], want: list[str]) -> np.ndarray:
    out = np.full((probs.shape[0], len(want)), np.nan, dtype=np.float32)
    pos = {c: i for i, c in enumerate(have)}
    for j, c in enumerate(want):
        if c in pos:
            out[:, j] = probs[:, pos[c]]
    return out


STREAMS: dict[str, Callable[[VideoPass, Model, dict], np.ndarray]] = {
    "geometry": geometry_stream,
    "spatial": spatial_stream,
    "flow": flow_stream,
}
CNN_STREAMS = ("spatial", "flow")
BATCH = 64


def _fuse(scores: dict[str, np.ndarray], spec: dict) -> np.ndarray:
    """facs.fusion.fuse, per group of labels that the same streams cover (the geometry rules
    have no opinion on some AUs: NaN there)."""
    from facs.fusion import fuse

    names = list(scores)
    n, n_labels = next(iter(scores.values())).shape
    covered = np.stack([np.isfinite(scores[s]).all(axis=0) for s in names])  # S x L
    out = np.zeros((n, n_labels), dtype=np.float32)
    for pattern in {tuple(col) for col in covered.T}:
        cols = np.flatnonzero((covered.T == pattern).all(axis=1))
        use = [s for s, on in zip(names, pattern, strict=True) if on]
        if not use:
            continue  # no stream covers these labels: probability 0
        if len(use) == len(names) and len(cols) == n_labels:
            return np.asarray(fuse(scores, spec), dtype=np.float32)
        sub = {s: scores[s] for s in use}
        if len(use) == 1:
            fused = sub[use[0]]
        else:
            # a learned fusion needs all its label columns: use its weights on this subset
            weights = {s: w for s, w in (spec.get("weights") or {}).items() if s in use}
            fused = fuse(sub, {"method": "weighted", "streams": use, "weights": weights})
        out[:, cols] = np.asarray(fused, dtype=np.float32)[:, cols]
    return out


def _fusion_for(spec: dict, names: list[str]) -> dict:
    """The model's fusion for the streams run: a learned fusion needs exactly the streams it was
    fitted on; for a subset (the page's stream picker) their validation weights stand in."""
    fitted = list(spec.get("streams") or names)
    if set(fitted) == set(names):
        return {**spec, "streams": fitted}
    weights = {s: w for s, w in (spec.get("weights") or {}).items() if s in names}
    method = "average" if spec.get("method") == "average" else "weighted"
    out = {"method": method, "streams": names, "weights": weights or {s: 1.0 for s in names}}
    return {**out, "smooth_frames": spec.get("smooth_frames") or 0}


def top5(probs: np.ndarray, labels: list[str]) -> list[tuple[str, float]]:
    order = np.argsort(-np.nan_to_num(probs, nan=-1.0), kind="stable")[:5]
    return [(labels[i], float(probs[i])) for i in order]


def predict_video(
    path: str | Path,
    model: Model | str | Path | None = None,
    streams: list[str] | None = None,
    progress: Progress | None = None,
) -> dict:
    """Per-frame AU probabilities of one video (see the module doc for the result)."""
    path = Path(path)
    if not isinstance(model, Model):
        model = load_model(model)
    fitted = [s for s in model.fusion.get("streams") or [] if s in model.streams]
    names = list(streams) if streams else (fitted or list(model.streams))
    missing = [s for s in names if s not in model.streams]
    if missing:
        raise FacsError(
            f"model {model.name}: has no {', '.join(missing)} stream "
            f"(it has: {', '.join(model.streams)})"
        )
    from facs.video import probe

    info = probe(path)
    cnn = [s for s in names if s in CNN_STREAMS]
    # progress in frames of work: the landmark pass, the crop pass, one pass per CNN stream
    total = info.frames * (1 + (1 + len(cnn) if cnn else 0))
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(min(done[0], total), total)

    haar = _face_params(model.streams[cnn[0]]) if cnn else None
    vp = _first_pass(path, tick, haar, info.fps)
    scores = {s: STREAMS[s](vp, model, model.streams[s]) for s in names}
    if progress is not None:
        progress(total, total)
    face = np.array([f is not None for f in vp.faces], dtype=bool)
    fused = _fuse(scores, _fusion_for(model.fusion, names))
    fused[~face] = 0.0
    labels = model.labels
    if face.any():
        clip = np.percentile(fused[face], CLIP_PERCENTILE, axis=0)
    else:
        clip = np.zeros(len(labels))
    per_frame = []
    for i, f in enumerate(vp.faces):
        row = fused[i]
        per_frame.append(
            {
                "index": i,
                "time": round(i / vp.fps, 6),
                "face": f is not None,
                "box": list(f.box) if f is not None else None,
                "confidence": round(f.confidence, 4) if f is not None else 0.0,
                "probs": [round(float(p), 4) for p in row],
                "top5": [{"code": c, "prob": round(p, 4)} for c, p in top5(row, labels)]
                if f is not None
                else [],
            }
        )
    return {
        "video": path.name,
        "fps": vp.fps,
        "frames": vp.frames,
        "width": vp.width,
        "height": vp.height,
        "duration": vp.frames / vp.fps if vp.fps else 0.0,
        "model": model.name,
        "streams": names,
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


def available_streams(model: Model) -> list[str]:
    return [s for s in STREAMS if s in model.streams]


__all__ = ["Model", "load_model", "predict_video", "builtin_geometry", "sort_codes"]
