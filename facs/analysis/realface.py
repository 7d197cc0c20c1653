"""The real-face stream: MediaPipe's blendshapes and 478-landmark mesh -> AU probabilities.

Blendshapes are not AUs (a crying face with stretched lips scores mouthSmile ~0.8; cheekSquint
and noseSneer stay near 0 on real faces), and geometry alone needs a neutral reference. So each
AU combines, in logit space, the evidence of the blendshapes that FACS ties to it (absolute:
MediaPipe learned them on many faces) with geometry of the landmark mesh measured against a
reference face:

1. Pose. Every frame's mesh is aligned (similarity Procrustes on rigid points: eye corners,
   nose bridge, forehead, temples) to MediaPipe's canonical face, so features are in the
   canonical face's centimetres with the head turn, tilt and roll taken out.
2. Reference. The person's own neutral: the median mesh of the frames the blendshapes call
   quiet (no smile, frown, stretch, press, brow lowering, jaw opening, blink, ...), when at
   least MIN_QUIET frames are quiet; otherwise (stills, clips that never rest) the canonical
   face, a population average. A person's offsets from the population are bounded (TOL), so a
   mis-chosen neutral cannot move a feature by more than a plausible identity difference.
   `calibration` in the output says which reference was used.
3. Evidence. z = sum of (value - threshold) / scale terms (the table RULES), p = sigmoid(z);
   geometry weighs fully against the person's neutral and GEOMETRY_PRIOR_WEIGHT against the
   population prior. AU12 needs both the smile blendshape and lip corners raised above the
   lips' midline (a product), which separates a smile from crying's stretched, level corners
   (AU20) or lowered ones (AU15). Closures shorter than 0.5 s are blinks (AU45), longer ones
   eyes closed (AU43).

Mapping of blendshapes (mean of left and right) to AUs: browInnerUp -> 1, browOuterUp -> 2,
browDown -> 4, eyeWide -> 5, cheekSquint + eyeSquint -> 6 (with the cheek's rise), eyeSquint -> 7,
noseSneer -> 9, mouthUpperUp -> 10 (without a smile), mouthSmile -> 12 (with the corners up),
mouthDimple -> 14, mouthFrown -> 15, mouthShrugLower -> 17, mouthStretch -> 20 (with level
corners), mouthPress -> 24, jawOpen -> 25/26/27 (with the lips' gap), eyeBlink -> 43/45.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facs.analysis.facemesh import BI, canonical_mesh
from facs.analysis.geometry import split_blinks

LABELS = ("1", "2", "4", "5", "6", "7", "9", "10", "12", "14", "15", "17", "20", "24", "25",
          "26", "27", "43", "45")  # fmt: skip
# Rigid points of the mesh: eye corners, nose bridge and tip, forehead, temples.
RIGID = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 10, 151, 9, 108, 337, 127, 356, 234, 454)
MIN_QUIET = 8  # frames the blendshapes call quiet, needed for a personal neutral
GEOMETRY_PRIOR_WEIGHT = 0.4  # geometry's weight against the population prior (vs 1 personal)


def _y(a: np.ndarray, *idx: int) -> np.ndarray:
    return a[:, list(idx), 1].mean(axis=1)


def _x(a: np.ndarray, *idx: int) -> np.ndarray:
    return a[:, list(idx), 0].mean(axis=1)


def features(a: np.ndarray) -> dict[str, np.ndarray]:
    """Geometric features of aligned meshes (N x 468 x 3, canonical cm, y up), symmetric
    over the face's two sides."""
    corner = _y(a, 61, 291)
    return {
        "brow_inner": _y(a, 107, 55, 336, 285) - _y(a, 133, 362),  # AU1 +, AU4 -
        "brow_outer": _y(a, 70, 46, 300, 276) - _y(a, 33, 263),  # AU2 +
        "brow_gap": _x(a, 285) - _x(a, 55),  # AU4 -
        "eye_open": (_y(a, 159) - _y(a, 145) + _y(a, 386) - _y(a, 374)) / 2,  # AU5 +, 43 -
        "lower_lid": _y(a, 145, 374) - _y(a, 33, 133, 362, 263),  # AU6/AU7 +
        "cheek": _y(a, 50, 280, 101, 330),  # AU6 +
        "nose_lip": _y(a, 2) - _y(a, 0),  # AU9/AU10 -
        "ala": _y(a, 129, 358),  # AU9 +
        "mouth_width": (_x(a, 291) - _x(a, 61)) / 2,  # AU12/AU20 +
        # lip corners against the lips' midline and the lower lip's centre: raised in a
        # smile (AU12), level in AU20, below in AU15
        "corner_up": 0.5 * (corner - (_y(a, 0) + _y(a, 17)) / 2) + 0.5 * (corner - _y(a, 17)),
        "lip_gap": _y(a, 13) - _y(a, 14),  # AU25 +
        "jaw": _y(a, 2) - _y(a, 152),  # AU26/27 +
        "chin_lip": _y(a, 17) - _y(a, 152),  # AU17 -
    }


# Person offsets from the population bounded to a plausible identity range (cm).
TOL = {"brow_inner": 0.3, "brow_outer": 0.3, "brow_gap": 0.4, "eye_open": 0.25,
       "lower_lid": 0.15, "cheek": 0.3, "nose_lip": 0.3, "ala": 0.3, "mouth_width": 0.3,
       "corner_up": 0.15, "lip_gap": 0.6, "jaw": 0.8, "chin_lip": 0.5}  # fmt: skip


def align(points: np.ndarray) -> np.ndarray:
    """N x 478 x 3 image landmarks (x, y pixels, z) -> N x 468 x 3 aligned to the canonical
    face (NaN rows stay NaN)."""
    canon = canonical_mesh()
    out = np.full((len(points), 468, 3), np.nan)
    target = canon[list(RIGID)]
    tc = target.mean(axis=0)
    for i, p in enumerate(points):
        if not np.isfinite(p).all():
            continue
        q = np.stack([p[:468, 0], -p[:468, 1], -p[:468, 2]], axis=1).astype(np.float64)
        src = q[list(RIGID)]
        sc = src.mean(axis=0)
        u, s, vt = np.linalg.svd((src - sc).T @ (target - tc))
        d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
        rot = u @ d @ vt
        scale = (s * np.diag(d)).sum() / ((src - sc) ** 2).sum()
        out[i] = (q - sc) @ rot * scale + tc
    return out


def _bs(blend: np.ndarray, *names: str) -> np.ndarray:
    return blend[:, [BI[n] for n in names]].mean(axis=1)


# The blendshapes whose quiet says the face is at rest (eye gaze and a slight brow raise are not
# expressions).
QUIET = ("mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
         "mouthStretchLeft", "mouthStretchRight", "mouthPressLeft", "mouthPressRight",
         "mouthUpperUpLeft", "mouthUpperUpRight",
         "mouthLowerDownLeft", "mouthLowerDownRight", "browDownLeft", "browDownRight",
         "jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight",
         "noseSneerLeft", "noseSneerRight", "cheekSquintLeft", "cheekSquintRight")  # fmt: skip
QUIET_MAX = 0.3


@dataclass
class Calibration:
    """The reference the geometry was measured against."""

    method: str  # "neutral frames" | "population prior"
    frames: int  # quiet frames used (0 for the prior)

    def to_json(self) -> dict:
        return {"method": self.method, "neutral_frames": self.frames}


def reference(feats: dict, blend: np.ndarray, ok: np.ndarray) -> tuple[dict, Calibration]:
    """Each feature's reference value: the person's neutral (quiet frames) bounded to TOL of
    the canonical face, else the canonical face."""
    return _reference(feats, ok & quiet_frames(blend))


def quiet_frames(blend: np.ndarray) -> np.ndarray:
    """Frames whose blendshapes call the face at rest (NaN rows are never quiet)."""
    return np.nan_to_num(blend[:, [BI[n] for n in QUIET]]).max(axis=1) < QUIET_MAX


def _reference(feats: dict, quiet: np.ndarray) -> tuple[dict, Calibration]:
    prior = {k: float(v[0]) for k, v in features(canonical_mesh()[None]).items()}
    if quiet.sum() < MIN_QUIET:
        return prior, Calibration("population prior", 0)
    ref = {}
    for k, v in feats.items():
        personal = float(np.median(v[quiet]))
        ref[k] = prior[k] + float(np.clip(personal - prior[k], -TOL[k], TOL[k]))
    return ref, Calibration("neutral frames", int(quiet.sum()))


def _sig(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def au_logits(
    blend: np.ndarray, d: dict, gap: np.ndarray, w: float, method: str
) -> dict[str, np.ndarray]:
    """Per-AU evidence (logits) from blendshapes, the geometry's deviations `d` from the
    reference (weight w) and the lips' gap (cm, absolute: lips part whatever the rest);
    `method` "blendshapes" leaves the geometry out."""
    g = w if method == "combined" else 0.0

    def z(x, t, s):
        return (x - t) / s

    def extra(x, t, s):  # evidence that can only add: a blendshape that is often silent
        return np.clip((x - t) / s, 0.0, None)

    smile = _bs(blend, "mouthSmileLeft", "mouthSmileRight")
    smiling = np.clip(z(smile, 0.3, 0.2), -1.5, 1.5)  # a smile's bounded evidence
    not_smiling = 1.0 - _sig(z(smile, 0.3, 0.1))
    lips_closed = _sig(z(-gap, -0.3, 0.08))
    squint = _bs(blend, "eyeSquintLeft", "eyeSquintRight")
    jaw = _bs(blend, "jawOpen")
    return {
        "1": z(_bs(blend, "browInnerUp"), 0.5, 0.1) + g * z(d["brow_inner"], 0.2, 0.08),
        "2": z(_bs(blend, "browOuterUpLeft", "browOuterUpRight"), 0.4, 0.1)
        + g * z(d["brow_outer"], 0.2, 0.08),
        "4": z(_bs(blend, "browDownLeft", "browDownRight"), 0.3, 0.08)
        + g * z(-d["brow_gap"] - d["brow_inner"], 0.25, 0.08),
        "5": z(_bs(blend, "eyeWideLeft", "eyeWideRight"), 0.35, 0.08)
        + g * z(d["eye_open"], 0.1, 0.04),
        # the cheek's rise is identity-laden against the population: half weight there
        "6": z(squint, 0.45, 0.15)
        + smiling
        + g * (w if w < 1 else 1.0) * z(d["cheek"], 0.15, 0.06)
        + extra(_bs(blend, "cheekSquintLeft", "cheekSquintRight"), 0.3, 0.1),
        "7": z(squint, 0.6, 0.08) - np.clip(smiling, 0.0, None),
        "9": -3.0
        + extra(_bs(blend, "noseSneerLeft", "noseSneerRight"), 0.0, 0.05)
        + g * not_smiling * extra(d["ala"], 0.15, 0.05),
        "10": z(_bs(blend, "mouthUpperUpLeft", "mouthUpperUpRight"), 0.5, 0.1)
        - np.clip(3.0 * smiling, 0.0, None),
        "14": z(_bs(blend, "mouthDimpleLeft", "mouthDimpleRight"), 0.3, 0.1),
        "15": z(_bs(blend, "mouthFrownLeft", "mouthFrownRight"), 0.3, 0.1)
        + g * z(-d["corner_up"], 0.25, 0.08),
        # opening the mouth also shortens lower lip to chin: geometry only with the lips closed
        "17": z(_bs(blend, "mouthShrugLower"), 0.35, 0.1)
        + g * lips_closed * extra(-d["chin_lip"], 0.15, 0.06),
        "20": z(_bs(blend, "mouthStretchLeft", "mouthStretchRight"), 0.25, 0.08)
        + g * (extra(d["mouth_width"], 0.25, 0.08) - extra(d["corner_up"], 0.3, 0.08)),
        "24": z(_bs(blend, "mouthPressLeft", "mouthPressRight"), 0.35, 0.1),
        "25": z(gap, 0.3, 0.08) if method == "combined" else z(jaw, 0.08, 0.03),
        "26": z(jaw, 0.2, 0.06),
        "27": z(jaw, 0.55, 0.08),
        "43": z(_bs(blend, "eyeBlinkLeft", "eyeBlinkRight"), 0.5, 0.08),
    }


FEATURES = tuple(TOL)  # the order of a frame's feature vector


def frame_features(points: np.ndarray) -> np.ndarray:
    """N x 478 x 3 landmarks -> N x len(FEATURES) geometric features of the aligned meshes
    (float64, NaN rows where no face): what the stream keeps of each frame, so that a long
    video costs about 100 bytes a frame, not the 5.7 kB of its mesh."""
    feats = features(align(points))
    return np.stack([feats[k] for k in FEATURES], axis=1)


def stream_probs(
    points: np.ndarray,
    blend: np.ndarray,
    labels,
    fps: float,
    method: str = "combined",
) -> tuple[np.ndarray, Calibration]:
    """N x 478 x 3 landmarks and N x 52 blendshapes of ONE person's video (or one still; NaN
    rows where no face) -> N x len(labels) probabilities (NaN for labels without a rule, 0 on
    frames without a face) and the calibration used."""
    return probs_from_features(frame_features(points), blend, labels, fps, method)


def probs_from_features(
    fvec: np.ndarray,
    blend: np.ndarray,
    labels,
    fps: float,
    method: str = "combined",
    chunk: int = 8192,
) -> tuple[np.ndarray, Calibration]:
    """stream_probs from the frames' feature vectors (frame_features) and blendshapes.

    The reference needs the whole video; the rules are per frame, so they run `chunk` frames
    at a time: an hour of video costs its features and the output, not a dozen N-long
    temporaries per AU (the numbers are the same for any chunk)."""
    n = len(fvec)
    labels = list(labels)
    ok = np.isfinite(blend).all(axis=1) & np.isfinite(fvec).all(axis=1)
    quiet = np.zeros(n, dtype=bool)
    for a in range(0, n, chunk):
        quiet[a : a + chunk] = ok[a : a + chunk] & quiet_frames(blend[a : a + chunk])
    ref, calibration = _reference({k: fvec[:, j] for j, k in enumerate(FEATURES)}, quiet)
    w = 1.0 if calibration.method == "neutral frames" else GEOMETRY_PRIOR_WEIGHT
    out = np.full((n, len(labels)), np.nan, dtype=np.float32)
    blinks = np.zeros(n)
    for a in range(0, n, chunk):
        b, okc = min(a + chunk, n), ok[a : a + chunk]
        bl = np.nan_to_num(blend[a:b])
        feats = {k: fvec[a:b, j] for j, k in enumerate(FEATURES)}
        d = {k: np.nan_to_num(v - ref[k]) for k, v in feats.items()}
        logits = au_logits(bl, d, np.nan_to_num(feats["lip_gap"]), w, method)
        probs = {code: np.where(okc, _sig(zz), 0.0) for code, zz in logits.items()}
        # AU12: the smile blendshape AND the corners raised above the lips' midline
        smile = _bs(bl, "mouthSmileLeft", "mouthSmileRight")
        corners = _sig((d["corner_up"] - 0.8) / 0.07) if method == "combined" else 1.0
        probs["12"] = np.where(okc, _sig((smile - 0.45) / 0.08) * corners, 0.0)
        blinks[a:b] = probs["43"]
        for j, code in enumerate(labels):
            if code in probs and code not in ("43", "45"):
                out[a:b, j] = probs[code]
    # closure vs blink is a question of duration: over the whole video
    p43, p45 = split_blinks(blinks, fps or 25.0)
    for j, code in enumerate(labels):
        if code in ("43", "45"):
            out[:, j] = p43 if code == "43" else p45
    return out, calibration
