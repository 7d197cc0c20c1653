"""68 facial landmarks per frame: dlib's HOG face detector + its 68-point shape predictor.

The predictor (`shape_predictor_68_face_landmarks.dat`, iBUG 300-W indexing, CC0) ships inside
the `face-recognition-models` wheel; nothing is downloaded at run time. It is located with
`importlib.util.find_spec`, so `pkg_resources` (gone from setuptools >= 81) is not needed.

Detection is the expensive part (about 12 ms on a 640x360 frame), so a `LandmarkTracker` first
searches a small window around the previous frame's face, rescaled so that the face is about
100 px wide (the HOG window is 80 px): about 1-2 ms whatever the video's resolution. Only when
that fails is the whole frame searched. Every frame is still detected, so a face that leaves the
picture is reported as absent at once (the shape predictor alone would place 68 points on
anything).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facs.errors import FacsError

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"

# Index ranges of the 68-point (iBUG) layout; "right" is the subject's right = image left.
JAW = range(0, 17)
RIGHT_BROW = range(17, 22)
LEFT_BROW = range(22, 27)
NOSE = range(27, 36)
RIGHT_EYE = range(36, 42)
LEFT_EYE = range(42, 48)
OUTER_LIP = range(48, 60)
INNER_LIP = range(60, 68)

# Mirror permutation: point i of a horizontally flipped face corresponds to MIRROR[i].
MIRROR = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 21, -1))  # brows swap
    + list(range(21, 16, -1))
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46]  # eyes swap (outer corner <-> outer corner)
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lip
)


def predictor_path() -> Path:
    """Path of dlib's 68-point shape predictor inside the face-recognition-models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FacsError(
            "face_recognition_models: package not installed (pip install face-recognition-models)"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / PREDICTOR_FILE
        if path.is_file():
            return path
    raise FacsError(f"face_recognition_models: {PREDICTOR_FILE} not found in the package")


@dataclass
class FaceLandmarks:
    """One frame's face: 68 (x, y) points in pixels, its box (x, y, w, h) and a confidence."""

    points: np.ndarray  # 68 x 2 float32
    box: tuple[int, int, int, int]
    confidence: float


def _confidence(score: float) -> float:
    # dlib's HOG score is a margin around 0 (the detection threshold); map it to (0, 1).
    return float(1.0 / (1.0 + np.exp(-2.0 * score)))


_LOCAL = threading.local()


def _dlib_models():
    """dlib's HOG detector and the 68-point predictor, loaded once per thread (~0.5 s): dlib's
    objects are not safe to share between threads (two threads on one detector crash)."""
    models = getattr(_LOCAL, "models", None)
    if models is None:
        import dlib

        models = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))
        _LOCAL.models = models
    return models


class LandmarkTracker:
    """Per-frame face detection (tracked search window) and 68 landmarks for one video.

    Call it on consecutive BGR frames of one video; it returns a `FaceLandmarks` or None.
    With several faces in a frame it follows the one nearest the previous face (first: the
    largest).
    """

    FACE_PX = 100.0  # face width the search window is rescaled to (HOG window is 80 px)

    def __init__(self) -> None:
        import dlib  # imported here so that `facs --help` stays fast

        self._dlib = dlib
        self.detector, self.predictor = _dlib_models()
        self.prev: tuple[int, int, int, int] | None = None

    def _detect(self, gray: np.ndarray, scale: float, ox: int, oy: int) -> list:
        """Detections on `gray` resized by `scale`, as (x, y, w, h, score) in frame pixels."""
        img = gray
        if abs(scale - 1.0) > 1e-3:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            img = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=interp)
        if min(img.shape[:2]) < 80:
            return []
        rects, scores, _ = self.detector.run(np.ascontiguousarray(img), 0, 0.0)
        out = []
        for r, s in zip(rects, scores, strict=True):
            x, y = r.left() / scale + ox, r.top() / scale + oy
            w, h = r.width() / scale, r.height() / scale
            out.append((x, y, w, h, float(s)))
        return out

    def _full_scale(self, gray: np.ndarray) -> float:
        # Faces down to about a fifth of the frame's short side reach the 80 px HOG window.
        short = min(gray.shape[:2])
        return float(np.clip(400.0 / short, 0.5, 2.0))

    def find_face(self, gray: np.ndarray) -> tuple[tuple[int, int, int, int], float] | None:
        """The tracked face's box and detection score in a grayscale frame, or None."""
        h, w = gray.shape[:2]
        found = []
        if self.prev is not None:
            px, py, pw, ph = self.prev
            m = 0.6 * pw
            x0, y0 = int(max(0, px - m)), int(max(0, py - m))
            x1, y1 = int(min(w, px + pw + m)), int(min(h, py + ph + m))
            scale = float(np.clip(self.FACE_PX / max(pw, 1), 0.25, 2.0))
            found = self._detect(gray[y0:y1, x0:x1], scale, x0, y0)
        if not found:
            found = self._detect(gray, self._full_scale(gray), 0, 0)
        if not found:
            return None
        if self.prev is not None:
            cx, cy = self.prev[0] + self.prev[2] / 2, self.prev[1] + self.prev[3] / 2
            best = min(
                found, key=lambda d: (d[0] + d[2] / 2 - cx) ** 2 + (d[1] + d[3] / 2 - cy) ** 2
            )
        else:
            best = max(found, key=lambda d: d[2] * d[3])
        x, y, bw, bh, score = best
        return (int(round(x)), int(round(y)), int(round(bw)), int(round(bh))), score

    def __call__(self, frame: np.ndarray) -> FaceLandmarks | None:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        hit = self.find_face(gray)
        if hit is None:
            self.prev = None
            return None
        box, score = hit
        self.prev = box
        x, y, bw, bh = box
        rect = self._dlib.rectangle(x, y, x + bw, y + bh)
        shape = self.predictor(np.ascontiguousarray(gray), rect)
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        return FaceLandmarks(points=pts, box=box, confidence=_confidence(score))
