"""The geometry stream: 68 landmarks -> normalised features -> per-person calibration -> AUs.

1. Normalisation (`normalise`, `features`). The face's own frame: origin at the midpoint of the
   four eye corners, u along the line between the two eyes' corner midpoints (roll removed),
   v perpendicular to it, pointing down, both in inter-ocular distances (IOD). Vertical
   features are measured against nearby rigid points (brows against the eye line, lip corners
   and chin against the nose base), so a scale error moves them little. Head turns: seen from
   afar, yaw compresses u and the IOD alike (u / IOD is unchanged); turning the head (yaw or
   pitch) also shifts points by their depth, which `correct_pose` removes relative to the
   video's median pose using the nose tip's motion and a rough depth per landmark. Features of
   bilateral AUs average the two sides, so every feature is invariant to mirroring the clip.
2. Calibration (`neutral_rest`, `calibrate`). Like OpenFace's per-person neutral, deviations
   are measured from the person's resting value of each feature in the same video. OpenFace
   takes the median over all frames, which assumes the face is neutral most of the time; a
   short clip of a posed smile breaks that. Here the neutral frames are the quarter of the
   frames with the least AU evidence (eyes open, lips together, found iteratively), so the
   person must be at rest in a good part of the video; a video without any resting face (e.g.
   crying, then laughing) is measured against its least expressive stretch instead.
3. Rules (`RULES`, `rule_probs`): each AU is a weighted sum of calibrated feature deviations,
   `d = sum(w_k * (f_k - rest_k))`, turned into a probability `1 / (1 + exp(-(d - t) / s))`.
   The features, signs and weights follow the FACS descriptions of the AUs (DESIGN.md §5a); t
   is about half of a clear, visible change and s a quarter of t. Lips part (AU25) is measured
   from closed lips, eye closure (AU43) as a fraction of the person's own aperture, and
   closures shorter than 0.5 s are blinks (AU45).
4. Learned (`LearnedGeometry`): a logistic regression per label on the calibrated deviations
   and the rules' evidence, fitted where labelled frames exist (the synthetic corpus, MMI);
   saved as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facs.analysis.landmarks import MIRROR
from facs.errors import FacsError
from facs.fileio import write_json


def normalise(points: np.ndarray) -> np.ndarray:
    """68 x 2 pixel points (or N x 68 x 2) -> the face's frame: (u, v) in inter-ocular
    distances, origin between the eyes, u along the eye line, v down; roll removed."""
    p = np.asarray(points, dtype=np.float64)
    right = (p[..., 36, :] + p[..., 39, :]) / 2  # subject's right eye (image left)
    left = (p[..., 42, :] + p[..., 45, :]) / 2
    centre = (right + left) / 2
    axis = left - right
    iod = np.linalg.norm(axis, axis=-1, keepdims=True)
    ex = axis / np.maximum(iod, 1e-6)
    ey = np.stack([-ex[..., 1], ex[..., 0]], axis=-1)  # x right -> y down
    rel = p - centre[..., None, :]
    u = (rel * ex[..., None, :]).sum(-1)
    v = (rel * ey[..., None, :]).sum(-1)
    return np.stack([u / iod, v / iod], axis=-1)


# Rough depth of each landmark in front of the eye corners' plane, in units of the nose tip's
# (anthropometric guesses, symmetric left/right): the nose tip protrudes most (1.0), the nose
# base and lip centres about half as much, the jaw's sides lie far behind.
_DEPTH_HALF = {  # point on the subject's right (image left) -> depth; mirrored below
    0: -1.6, 1: -1.5, 2: -1.3, 3: -1.0, 4: -0.7, 5: -0.4, 6: -0.1, 7: 0.15, 8: 0.3,
    17: -0.2, 18: 0.0, 19: 0.1, 20: 0.2, 21: 0.25,
    27: 0.35, 28: 0.55, 29: 0.8, 30: 1.0, 31: 0.45, 32: 0.65, 33: 0.7,
    36: -0.15, 37: 0.05, 38: 0.05, 39: 0.15, 40: 0.05, 41: 0.05,
    48: 0.1, 49: 0.35, 50: 0.5, 51: 0.55, 57: 0.45, 58: 0.4, 59: 0.3,
    60: 0.1, 61: 0.4, 62: 0.5, 66: 0.45, 67: 0.4,
}  # fmt: skip


def _depths() -> np.ndarray:
    z = np.full(68, np.nan)
    for i, d in _DEPTH_HALF.items():
        z[i] = z[MIRROR[i]] = d
    assert np.isfinite(z).all()
    return z


DEPTH = _depths()


NOSE_DEPTH = 0.5  # the nose tip's depth in front of the eye corners, in IOD (~30 of ~62 mm)


def pose_medians(nose: np.ndarray) -> tuple[float, float]:
    """The video's median nose tip (u, then v with the yaw's IOD shrinking undone) from its
    N x 2 normalised positions (point 30): what correct_pose measures head turns against."""
    m_u = np.median(nose[:, 0])
    cos_yaw = 1.0 / np.sqrt(1.0 + ((nose[:, 0] - m_u) / NOSE_DEPTH) ** 2)
    return float(m_u), float(np.median(nose[:, 1] * cos_yaw))


def correct_pose(q: np.ndarray, medians: tuple[float, float] | None = None) -> np.ndarray:
    """N x 68 x 2 normalised points of ONE video -> the same with head turns (yaw, pitch)
    relative to the video's median pose (`medians`: pose_medians of the whole video, which a
    caller working in chunks passes) taken out (orthographic view, rigid head).

    The nose tip, rigid and the most protruding point, moves against the eye corners when the
    head turns: by (du, dv) from its median position, so tan(yaw) = du / NOSE_DEPTH and
    sin(pitch) = dv / NOSE_DEPTH. A point at relative depth z (DEPTH) shifts by z * (du, dv),
    which is subtracted; yaw also shrinks the IOD, which inflates every v by 1 / cos(yaw), and
    pitch shrinks v by cos(pitch). Without this, a head tilted back lowers the lip corners
    against the nose base about as much as a smile raises them.
    """
    if medians is None:
        if len(q) < 2:
            return q
        medians = pose_medians(q[:, 30])
    du = q[:, 30:31, 0] - medians[0]
    cos_yaw = 1.0 / np.sqrt(1.0 + (du / NOSE_DEPTH) ** 2)
    v = q[..., 1] * cos_yaw  # undo the IOD's shrinking first: it would look like pitch
    dv = v[:, 30:31] - medians[1]
    cos_pitch = np.sqrt(1.0 - np.clip(dv / NOSE_DEPTH, -0.9, 0.9) ** 2)
    z = DEPTH[None, :]
    return np.stack([q[..., 0] - z * du, (v - z * dv) / cos_pitch], axis=-1)


# Feature names in a fixed order; each is symmetric over the subject's left and right.
FEATURES = (
    "brow_inner",  # height of the inner brow ends above the eye line      (AU1 +, AU4 -)
    "brow_outer",  # height of the outer brow ends above the eye line      (AU2 +)
    "brow_gap",  # horizontal distance between the inner brow ends         (AU4 -)
    "upper_lid",  # height of the upper lids above the eye line            (AU5 +, AU43 -)
    "lower_lid",  # height of the lower lids (less negative = raised)       (AU6 +, AU7 +)
    "eye_open",  # eye aperture, upper lid to lower lid                    (AU5 +, AU7/43/45 -)
    "nostril",  # height of the nostril wings                              (AU9 +)
    "nose_lip",  # nose base to the top of the upper lip                    (AU9/AU10 -)
    "mouth_width",  # lip corner to lip corner                             (AU12 +, AU20 +, AU23 -)
    "corner_height",  # lip corners relative to the nose base              (AU12 +, AU15 -)
    "corner_vs_centre",  # lip corners above the upper lip's centre     (AU12 +, AU15 -)
    "lip_gap",  # gap between the inner lip contours                      (AU25/26/27 +)
    "lip_red",  # thickness of both lips' red parts                       (AU23/24 -)
    "jaw",  # depth of the chin below the nose base                       (AU26/27 +)
    "chin_lip",  # lower lip to chin                                        (AU17 -)
)


def features(points: np.ndarray, pose: bool = True, medians=None) -> np.ndarray:
    """N x 68 x 2 pixel landmarks of ONE video -> N x len(FEATURES) normalised features
    (with `pose`, head turns relative to the video's median pose corrected: `correct_pose`)."""
    q = normalise(np.asarray(points, dtype=np.float64).reshape(-1, 68, 2))
    if pose:
        q = correct_pose(q, medians)
    u, v = q[..., 0], q[..., 1]

    def pair(a, b):  # mean of a point on the subject's right and its mirror on the left
        return (v[:, a] + v[:, b]) / 2

    brow_inner = -(pair(21, 22) + pair(20, 23)) / 2
    brow_outer = -(pair(17, 26) + pair(18, 25)) / 2
    brow_gap = u[:, 22] - u[:, 21]
    upper_lid = -(pair(37, 44) + pair(38, 43)) / 2
    lower_lid = -(pair(41, 46) + pair(40, 47)) / 2
    eye_open = upper_lid - lower_lid
    nostril = -pair(31, 35)
    nose_lip = v[:, 51] - v[:, 33]
    mouth_width = u[:, 54] - u[:, 48]
    corner_height = v[:, 33] - pair(48, 54)
    corner_vs_centre = v[:, 51] - pair(48, 54)
    lip_gap = (v[:, 66] - v[:, 62] + pair(67, 65) - pair(61, 63)) / 2
    lip_red = (v[:, 62] - v[:, 51]) + (v[:, 57] - v[:, 66])
    jaw = v[:, 8] - v[:, 33]
    chin_lip = v[:, 8] - v[:, 57]
    cols = [
        brow_inner,
        brow_outer,
        brow_gap,
        upper_lid,
        lower_lid,
        eye_open,
        nostril,
        nose_lip,
        mouth_width,
        corner_height,
        corner_vs_centre,
        lip_gap,
        lip_red,
        jaw,
        chin_lip,
    ]
    return np.stack(cols, axis=1).astype(np.float32)


FI = {name: i for i, name in enumerate(FEATURES)}


@dataclass(frozen=True)
class Rule:
    """AU evidence d = sum(w * (feature - rest)); p = logistic((d - t) / s), s = t / 4.

    `absolute`: measured from 0, not from the person's rest (lips part whatever the rest).
    `relative`: d is divided by the rest value of the first feature (eye closure as a fraction
    of the person's own eye aperture)."""

    terms: tuple[tuple[str, float], ...]
    t: float
    absolute: bool = False
    relative: bool = False

    @property
    def s(self) -> float:
        return self.t / 4


# Thresholds t: about half of a clearly visible change, in inter-ocular distances (the brows sit
# about 0.4 above the eye line, the lip corners about 0.3 below the nose base, an open eye is
# about 0.13 high).
RULES: dict[str, Rule] = {
    "1": Rule((("brow_inner", 1.0),), 0.07),
    "2": Rule((("brow_outer", 1.0),), 0.07),
    "4": Rule((("brow_inner", -1.0), ("brow_gap", -1.0)), 0.06),
    "5": Rule((("upper_lid", 1.0),), 0.04),
    "6": Rule((("lower_lid", 1.0), ("corner_height", 0.25)), 0.04),
    "7": Rule((("lower_lid", 1.0), ("corner_height", -0.25)), 0.04),
    # AU9/AU10 lift the nostrils / upper lip without lifting the lip corners (unlike a smile)
    "9": Rule((("nostril", 1.0), ("corner_height", -1.0), ("brow_inner", -0.5)), 0.06),
    "10": Rule((("nose_lip", -1.0), ("corner_height", -0.5)), 0.06),
    "12": Rule((("corner_height", 1.0), ("mouth_width", 0.5)), 0.08),
    "15": Rule((("corner_vs_centre", -1.0), ("corner_height", -0.5)), 0.04),
    # AU17 shortens lower lip to chin with the lips closed (parting lips also shortens it)
    "17": Rule((("chin_lip", -1.0), ("lip_gap", -1.0)), 0.06),
    # AU20 pulls the corners sideways, AU12 obliquely up: outward at less than ~27 degrees
    "20": Rule((("mouth_width", 1.0), ("corner_height", -2.0)), 0.08),
    "23": Rule((("lip_red", -1.0), ("mouth_width", -0.5)), 0.06),
    "24": Rule((("lip_red", -1.0), ("lip_gap", -2.0)), 0.06),
    "25": Rule((("lip_gap", 1.0),), 0.06, absolute=True),
    "26": Rule((("jaw", 1.0),), 0.15),
    "27": Rule((("jaw", 1.0),), 0.40),
    "43": Rule((("eye_open", -1.0),), 0.50, relative=True),  # half of the own aperture
}
# AU45 (blink) is AU43's evidence in closures shorter than BLINK_S; AU43 is the longer ones.
BLINK_S = 0.5
LABELS = tuple(sorted([*RULES, "45"], key=int))
NEUTRAL_FRACTION = 0.25  # share of a person's face frames taken as their neutral


def _evidence(feats: np.ndarray, rest: np.ndarray, codes) -> np.ndarray:
    """N x len(codes) rule evidence in units of each rule's threshold (1 = threshold)."""
    out = np.zeros((feats.shape[0], len(codes)), dtype=np.float64)
    for j, code in enumerate(codes):
        rule = RULES[code]
        d = np.zeros(feats.shape[0], dtype=np.float64)
        for name, w in rule.terms:
            k = FI[name]
            d += w * (feats[:, k] - (0.0 if rule.absolute else rest[k]))
        if rule.relative:
            d /= max(abs(float(rest[FI[rule.terms[0][0]]])), 1e-3)
        out[:, j] = d / rule.t
    return out


def neutral_rest(
    feats: np.ndarray, iterations: int = 3, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """One person's resting feature values and the mask of the frames taken as neutral.

    OpenFace uses the median over all frames, which assumes the face is neutral most of the
    time; in a short clip of a posed smile it is not. Here the neutral frames are the quarter
    of the face frames with the least facial activity: first the frames with the most closed
    lips (the strongest single cue of a resting face), then, iteratively, the frames with the
    least total AU evidence measured against the median of the current neutral frames.
    A resting face has its eyes open and its lips together, so frames with the eyes closed to
    less than 60 % of the clip's wide-open aperture (90th percentile) or with the lips apart
    (AU25's threshold) are not candidates, unless fewer than a tenth of the frames are left.
    """
    ok = np.isfinite(feats).all(axis=1)
    rest = np.full(feats.shape[1], np.nan, dtype=np.float64)
    if not ok.any():
        return rest, ok
    eye, gap = feats[:, FI["eye_open"]], feats[:, FI["lip_gap"]]
    with np.errstate(invalid="ignore"):
        cand = ok & (eye >= 0.6 * np.percentile(eye[ok], 90)) & (gap < RULES["25"].t)
    if cand.sum() < max(5, 0.1 * ok.sum()):
        cand = ok
    n_ok = int(cand.sum())
    n_keep = min(n_ok, max(5, int(np.ceil(NEUTRAL_FRACTION * ok.sum()))))
    idx = np.flatnonzero(cand)

    def lowest(score: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(feats), dtype=bool)
        mask[idx[np.argsort(score[idx], kind="stable")[:n_keep]]] = True
        return mask

    neutral = lowest(feats[:, FI["lip_gap"]])
    codes = [c for c in RULES if not RULES[c].absolute]
    activity = np.empty(len(feats))
    for _ in range(iterations):
        rest = np.median(feats[neutral], axis=0)
        # a chunk of frames at a time: one number a frame is kept, not every rule's evidence
        for a in range(0, len(feats), chunk):
            ev = _evidence(feats[a : a + chunk], rest, codes)
            activity[a : a + chunk] = np.clip(ev, 0, None).sum(axis=1)
        neutral = lowest(activity)
    rest = np.median(feats[neutral], axis=0)
    return rest, neutral


def calibrate(feats: np.ndarray) -> np.ndarray:
    """N x F features of one person -> deviations from their neutral (NaN rows where no face)."""
    rest, _ = neutral_rest(feats)
    return (feats - rest).astype(np.float32)


def split_blinks(p43: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Eye closure evidence -> (AU43, AU45): closures shorter than BLINK_S are blinks."""
    p43 = p43.copy()
    p45 = np.zeros_like(p43)
    closed = p43 > 0.5
    i, n, short = 0, len(p43), max(1, int(round(BLINK_S * fps)))
    while i < n:
        if not closed[i]:
            i += 1
            continue
        j = i
        while j < n and closed[j]:
            j += 1
        if j - i < short:
            # the blink's frames, widened by one on each side for the half-closed lids
            a, b = max(0, i - 1), min(n, j + 1)
            p45[a:b] = p43[a:b]
            p43[a:b] = np.minimum(p43[a:b], 1.0 - p45[a:b])
        i = j
    return p43, p45


def rule_probs(
    feats: np.ndarray, labels=LABELS, fps: float = 25.0, chunk: int = 8192
) -> np.ndarray:
    """N x F features of ONE person's video -> N x len(labels) AU probabilities by the rules.

    Rows without a face give 0; labels without a rule give NaN. The rest pose needs the whole
    video; the rules run `chunk` frames at a time (the same numbers for any chunk)."""
    rest, _ = neutral_rest(feats)
    rest = np.nan_to_num(rest)
    n = feats.shape[0]
    labels = list(labels)
    out = np.full((n, len(labels)), np.nan, dtype=np.float32)
    codes = list(RULES)
    blinks = np.zeros(n)
    for a in range(0, n, chunk):
        part = feats[a : a + chunk]
        ok = np.isfinite(part).all(axis=1)
        ev = _evidence(np.nan_to_num(part), rest, codes)
        z = np.clip((ev - 1.0) * 4.0, -30, 30)  # (d - t) / s with s = t / 4
        p = np.where(ok[:, None], 1.0 / (1.0 + np.exp(-z)), 0.0)
        for j, code in enumerate(labels):
            if code in codes and code not in ("43", "45"):
                out[a : a + chunk, j] = p[:, codes.index(code)]
        blinks[a : a + chunk] = p[:, codes.index("43")]
    p43, p45 = split_blinks(blinks, fps)  # closure vs blink: a question of duration
    for j, code in enumerate(labels):
        if code in ("43", "45"):
            out[:, j] = p43 if code == "43" else p45
    return out


def smooth(feats: np.ndarray, k: int = 3) -> np.ndarray:
    """Temporal median over k consecutive frames (landmark jitter), within runs of face frames."""
    if k <= 1 or len(feats) < k:
        return feats
    out = feats.copy()
    ok = np.isfinite(feats).all(axis=1)
    h = k // 2
    for i in range(len(feats)):
        if not ok[i]:
            continue
        lo, hi = i, i
        while lo > i - h and lo > 0 and ok[lo - 1]:
            lo -= 1
        while hi < i + h and hi < len(feats) - 1 and ok[hi + 1]:
            hi += 1
        out[i] = np.median(feats[lo : hi + 1], axis=0)
    return out


def points_array(faces) -> np.ndarray:
    """List of FaceLandmarks | None -> N x 68 x 2 float32 pixel points (NaN where no face)."""
    out = np.full((len(faces), 68, 2), np.nan, np.float32)
    for i, f in enumerate(faces):
        if f is not None:
            out[i] = f.points
    return out


def features_of_points(pts: np.ndarray) -> np.ndarray:
    """N x 68 x 2 landmarks of ONE video (NaN rows where no face) -> N x F features (NaN rows
    where no face), median-smoothed over 3 frames."""
    ok = np.isfinite(pts).all(axis=(1, 2))
    feats = np.full((len(pts), len(FEATURES)), np.nan, np.float32)
    if ok.any():
        feats[ok] = features(pts[ok])
    return smooth(feats)


def features_in_chunks(points: np.ndarray, ok: np.ndarray, chunk: int = 512) -> np.ndarray:
    """features_of_points of a long video stored compactly (N x 68 x 2 integer pixel points,
    as dlib gives them; `ok`: the face frames), a chunk of frames at a time: the same numbers
    without a float64 copy of every frame's points."""
    idx = np.flatnonzero(ok)
    feats = np.full((len(points), len(FEATURES)), np.nan, np.float32)
    if not len(idx):
        return feats
    medians = None
    if len(idx) >= 2:  # the pose medians over every face frame, first
        nose = np.concatenate(
            [
                # a copy: a view would keep every chunk's normalised points alive
                normalise(points[idx[a : a + chunk]].astype(np.float32))[:, 30].copy()
                for a in range(0, len(idx), chunk)
            ]
        )
        medians = pose_medians(nose)
    for a in range(0, len(idx), chunk):
        part = idx[a : a + chunk]
        feats[part] = features(points[part].astype(np.float32), medians is not None, medians)
    return smooth(feats)


def landmarks_to_features(faces) -> np.ndarray:
    """List of FaceLandmarks | None -> N x F features (NaN rows where no face), smoothed."""
    return features_of_points(points_array(faces))


def stream_probs(
    feats: np.ndarray, labels, fps: float, classifier: LearnedGeometry | None = None
) -> np.ndarray:
    """The landmark stream of ONE video: N x len(labels) AU probabilities by the rules, or by a
    learned classifier; NaN for a label the stream has no opinion on (no rule, or a label the
    classifier was not fitted on); 0 on frames without a face."""
    labels = list(labels)
    if classifier is None:
        return rule_probs(feats, labels, fps=fps)
    p = classifier.predict(learned_inputs(feats, fps))
    pos = {c: i for i, c in enumerate(classifier.labels)}
    out = np.full((len(p), len(labels)), np.nan, dtype=np.float32)
    for j, c in enumerate(labels):
        if c in pos:
            out[:, j] = p[:, pos[c]]
    return out


def learned_inputs(feats: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """Inputs of the learned classifier for ONE person's video: calibrated deviations and the
    rules' evidence (logit of each rule's probability), N x (F + len(LABELS)); NaN rows where
    no face."""
    dev = calibrate(feats)
    p = np.clip(rule_probs(feats, LABELS, fps=fps), 1e-4, 1 - 1e-4)
    x = np.concatenate([dev, np.log(p / (1 - p))], axis=1).astype(np.float32)
    x[~np.isfinite(feats).all(axis=1)] = np.nan
    return x


INPUT_NAMES = [f"dev_{n}" for n in FEATURES] + [f"rule_AU{c}" for c in LABELS]


class LearnedGeometry:
    """Per-label logistic regression on `learned_inputs` (JSON-serialisable).

    Plain (unweighted) classes and sklearn's default C = 1: on a 16-subject drawn-face corpus
    this beat class-balanced weights, whose many false positives cost F1 at threshold 0.5."""

    def __init__(self, labels, mean, scale, coef, intercept) -> None:
        self.labels = list(labels)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)  # L x inputs
        self.intercept = np.asarray(intercept, dtype=np.float64)  # L

    @classmethod
    def fit(
        cls, x: np.ndarray, y: np.ndarray, labels, c: float = 1.0, class_weight=None
    ) -> LearnedGeometry:
        """x: N x len(INPUT_NAMES) from `learned_inputs` (per person), y: N x L in {0,1}, or
        UNKNOWN (-1) for a cell not coded: each label is fitted on its coded frames."""
        from sklearn.linear_model import LogisticRegression

        ok = np.isfinite(x).all(axis=1)
        x, y = x[ok].astype(np.float64), y[ok]
        mean, scale = x.mean(0), x.std(0) + 1e-6
        xs = (x - mean) / scale
        coef = np.zeros((len(labels), x.shape[1]))
        icpt = np.zeros(len(labels))
        for j in range(len(labels)):
            coded = y[:, j] != -1  # facs.aus.UNKNOWN
            yj = y[coded, j].astype(int)
            if len(yj) == 0 or yj.min() == yj.max():  # never (or always) on: constant prior
                pr = float(np.clip(yj.mean() if len(yj) else 0.0, 1e-3, 1 - 1e-3))
                icpt[j] = np.log(pr / (1 - pr))
                continue
            clf = LogisticRegression(C=c, class_weight=class_weight, max_iter=500)
            clf.fit(xs if coded.all() else xs[coded], yj)
            coef[j], icpt[j] = clf.coef_[0], clf.intercept_[0]
        return cls(labels, mean, scale, coef, icpt)

    def predict(self, x: np.ndarray) -> np.ndarray:
        ok = np.isfinite(x).all(axis=1)
        xs = (np.nan_to_num(x.astype(np.float64)) - self.mean) / self.scale
        z = np.clip(xs @ self.coef.T + self.intercept, -30, 30)
        p = 1.0 / (1.0 + np.exp(-z))
        p[~ok] = 0.0
        return p.astype(np.float32)

    def to_json(self) -> dict:
        return {
            "kind": "logistic",
            "inputs": INPUT_NAMES,
            "calibration": "deviation from the median of the person's neutral frames",
            "labels": self.labels,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json(), indent=None)

    @classmethod
    def load(cls, path: str | Path) -> LearnedGeometry:
        try:
            d = json.loads(Path(path).read_text())
            return cls(d["labels"], d["mean"], d["scale"], d["coef"], d["intercept"])
        except (OSError, ValueError, KeyError) as exc:
            raise FacsError(f"{path}: not a geometry classifier ({exc})") from None
