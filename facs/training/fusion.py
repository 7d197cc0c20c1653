"""Late fusion of per-stream AU probabilities (two-stream networks, Simonyan & Zisserman).

A fusion spec is plain JSON, saved in model.json:

    {"method": "average",  "streams": ["spatial", "flow"]}
    {"method": "weighted", "streams": [...], "weights": {"spatial": 0.6, "flow": 0.4}}
    {"method": "logreg" | "svm", "streams": [...], "weights": {...},
     "coef": [[...], ...], "intercept": [...]}
    {"method": "temporal", ..., "context": [3, 9, 18], "mean": [...], "std": [...]}

Learned fusion fits, per label, a linear model on the concatenated logits of all streams
(stream order = "streams", then label order); its output goes through a sigmoid, so 0.5 stays the
decision point. `temporal` is logistic regression on a frame's logits plus their means over
+-3, +-9 and +-18 frames of the same clip (standardised by the fitted mean/std): an AU lasts
seconds, so neighbouring frames say where an onset starts, and how long the eyes stay shut
separates a blink (AU45) from closed eyes (AU43), which single frames cannot.
The SVM's margins are mapped to probabilities by a Platt fit on the same frames.
A label that has a single class in the fitting frames has `null` coefficients and falls back to
the weighted average. When a stream the spec needs is missing (a user may run a subset of the
streams) or has no opinion on a label, `fuse` averages the streams that cover each label.

The stage that fits a fusion on a configuration's validation scores is `facs fuse`
(facs.training.fuse); prediction calls `fuse` with the spec saved in model.json.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold
from sklearn.svm import LinearSVC

from facs.aus import UNKNOWN
from facs.errors import FacsError
from facs.evaluation.metrics import evaluate_scores

METHODS = ("average", "weighted", "logreg", "svm", "temporal")
LEARNED = ("logreg", "svm", "temporal")
CONTEXT = (3, 9, 18)  # frames either side of a frame: the temporal fusion's context windows
TEMPORAL_C = 0.3
EPS = 1e-5


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _weighted(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    present = [s for s in weights if s in scores]
    if not present:
        present = list(scores)
        weights = {s: 1.0 for s in present}
    total = sum(float(weights[s]) for s in present)
    if total <= 0:
        weights, total = {s: 1.0 for s in present}, float(len(present))
    return sum(float(weights[s]) * np.asarray(scores[s], np.float64) for s in present) / total


def smooth(
    probs: np.ndarray,
    window: float,
    frames: np.ndarray | None = None,
    clips: np.ndarray | None = None,
) -> np.ndarray:
    """Temporal smoothing: each frame's probabilities become their mean over the frames of the
    same clip within +-window/2 frames (frames: frame numbers, default 0..N-1; clips: clip of each
    row, default one clip). AUs last many frames, so a frame's neighbours are evidence too."""
    probs = np.asarray(probs, dtype=np.float64)
    if window <= 1 or len(probs) == 0:
        return probs
    n = len(probs)
    frames = np.arange(n) if frames is None else np.asarray(frames, dtype=np.int64)
    clips = np.zeros(n, dtype=int) if clips is None else np.asarray(clips)
    out = np.empty_like(probs)
    half = window / 2.0
    for c in dict.fromkeys(clips.tolist()):
        idx = np.flatnonzero(clips == c)
        idx = idx[np.argsort(frames[idx], kind="stable")]
        f = frames[idx]
        csum = np.concatenate([np.zeros((1, probs.shape[1])), np.cumsum(probs[idx], axis=0)])
        lo = np.searchsorted(f, f - half, side="left")
        hi = np.searchsorted(f, f + half, side="right")
        out[idx] = (csum[hi] - csum[lo]) / (hi - lo)[:, None]
    return out


def fuse(
    scores: dict[str, np.ndarray],
    spec: dict,
    frames: np.ndarray | None = None,
    clips: np.ndarray | None = None,
) -> np.ndarray:
    """Combine stream probabilities (each N x L) into N x L fused probabilities by `spec`, then
    smooth over `spec["smooth_frames"]` frames if the spec says so (rows = consecutive frames of
    one clip unless `frames` / `clips` say otherwise).

    The spec's method runs when `scores` holds exactly the streams it was fitted on and every
    one of them has an opinion on every label. Otherwise (a user picked a subset of the
    streams; a landmark stream has no rule for some AUs: NaN there) each label is the weighted
    average of the streams that cover it, with the spec's validation weights (equal weights
    for `average`); a label no stream covers is 0."""
    plan = _plan(scores, spec)
    out = _fuse_part(scores, spec, plan, frames, clips)
    return smooth(out, float(spec.get("smooth_frames") or 0), frames, clips)


def fuse_in_chunks(scores: dict[str, np.ndarray], spec: dict, chunk: int = 4096) -> np.ndarray:
    """fuse(scores, spec) of ONE clip's consecutive frames as float32, `chunk` rows at a time:
    an hour of video then costs its output, not several float64 copies of it (the temporal
    fusion's context features alone are S x L x 4 float64 values a frame, 200 MB an hour).
    A chunk is fused with the frames its temporal context and smoothing reach on either side,
    so each frame sees the neighbours fuse() gives it; the choice fuse() makes over the whole
    video (the spec's method, or per-label coverage) is made once. Frame-by-frame methods
    give fuse()'s numbers exactly; windowed ones to float rounding (their running sums start
    at the chunk, not at the video's first frame)."""
    first = next(iter(scores.values()), None)
    if first is None or len(first) <= chunk:
        return np.asarray(fuse(scores, spec), dtype=np.float32)
    n = len(first)
    plan = _plan(scores, spec)
    window = float(spec.get("smooth_frames") or 0)
    # frames a fused frame depends on, either side: the context windows' (+-w), then the
    # smoothing's (+-window/2) over fused frames
    temporal = plan.whole and spec.get("method") == "temporal"
    reach = max(spec.get("context") or [0]) if temporal else 0
    reach += int(np.ceil(window / 2)) if window > 1 else 0
    out = np.empty((n, np.shape(first)[1]), dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        lo, hi = max(0, a - reach), min(n, b + reach)
        fused = _fuse_part({s: v[lo:hi] for s, v in scores.items()}, spec, plan)
        out[a:b] = smooth(fused, window)[a - lo : b - lo]
    return out


class _Plan(NamedTuple):
    """fuse()'s choice for a video, made over all its frames: `whole` = the spec's method runs
    (`fitted` streams); else per-label coverage with `covered` (S x L: which stream has an
    opinion on which label)."""

    fitted: list[str]
    whole: bool
    covered: np.ndarray | None


def _plan(scores: dict[str, np.ndarray], spec: dict) -> _Plan:
    if not scores:
        raise FacsError("fusion: no stream scores to fuse")
    fitted = list(spec.get("streams") or scores)
    finite = {s: np.isfinite(p).all(axis=0) for s, p in scores.items()}
    whole = set(scores) == set(fitted) and all(f.all() for f in finite.values())
    return _Plan(fitted, whole, None if whole else np.stack(list(finite.values())))


def _fuse_part(scores, spec, plan: _Plan, frames=None, clips=None) -> np.ndarray:
    """fuse() without smoothing, of some rows of the video `plan` was made for."""
    if plan.whole:
        return _combine(scores, {**spec, "streams": plan.fitted}, frames, clips)
    return _by_coverage(scores, spec, plan.covered)


def _by_coverage(scores: dict[str, np.ndarray], spec: dict, covered: np.ndarray) -> np.ndarray:
    names = list(scores)
    n, n_labels = np.shape(scores[names[0]])
    weights = {s: w for s, w in (spec.get("weights") or {}).items() if s in names}
    if spec.get("method", "average") == "average" or not weights:
        weights = {s: 1.0 for s in names}
    # a stream the fusion was not fitted with (a built-in one a user added) weighs as much as
    # the fitted ones on average
    mean_w = float(np.mean(list(weights.values())))
    weights = {s: float(weights.get(s, mean_w)) for s in names}
    out = np.zeros((n, n_labels), dtype=np.float64)
    for pattern in {tuple(col) for col in covered.T}:
        cols = np.flatnonzero((covered.T == pattern).all(axis=1))
        use = [s for s, on in zip(names, pattern, strict=True) if on]
        if len(use) == 1:
            out[:, cols] = np.asarray(scores[use[0]], np.float64)[:, cols]
        elif use:
            sub = {s: np.asarray(scores[s])[:, cols] for s in use}
            out[:, cols] = _weighted(sub, {s: weights[s] for s in use})
    return out


def context_features(
    scores: dict[str, np.ndarray],
    streams: list[str],
    context: tuple[int, ...] | list[int] = (),
    frames: np.ndarray | None = None,
    clips: np.ndarray | None = None,
) -> np.ndarray:
    """N x (S*L*(1+len(context))): every stream's logits, then their means over +-w frames of
    the same clip for each w in `context`."""
    x = np.concatenate([_logit(scores[s]) for s in streams], axis=1)
    return np.concatenate([x] + [smooth(x, 2 * w + 1, frames, clips) for w in context], axis=1)


def _features(scores, spec, frames=None, clips=None) -> np.ndarray:
    x = context_features(scores, spec["streams"], spec.get("context") or (), frames, clips)
    fitted = spec.get("mean") or next((c for c in spec.get("coef") or [] if c is not None), None)
    if fitted is not None and len(fitted) != x.shape[1]:
        raise FacsError(
            f"fusion: the {spec.get('method')} model was fitted on {len(fitted)} features, "
            f"these scores give {x.shape[1]} (different streams or labels)"
        )
    if spec.get("mean") is not None:
        x = (x - np.asarray(spec["mean"])) / np.asarray(spec["std"])
    return x


def _combine(scores: dict[str, np.ndarray], spec: dict, frames=None, clips=None) -> np.ndarray:
    """The spec's method on the scores of exactly the streams it was fitted on."""
    method = spec.get("method", "average")
    streams = list(spec["streams"])
    weights = spec.get("weights") or {s: 1.0 for s in streams}
    if method in ("average", "weighted"):
        if method == "average":
            weights = {s: 1.0 for s in streams}
        return _weighted(scores, weights)
    if method not in METHODS:
        raise FacsError(f"fusion: unknown method {method!r}; choose from {', '.join(METHODS)}")
    x = _features(scores, {**spec, "streams": streams}, frames, clips)
    out = _weighted(scores, weights)
    for j, (coef, b) in enumerate(zip(spec["coef"], spec["intercept"], strict=True)):
        if coef is not None:
            out[:, j] = _sigmoid(x @ np.asarray(coef, np.float64) + float(b))
    return out


def _macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    labels = [str(i) for i in range(y.shape[1])]
    return evaluate_scores(y, p, labels)["summary"]["f1_macro"] or 0.0


def _fit_linear(x: np.ndarray, y: np.ndarray, method: str, seed: int) -> tuple[list, float]:
    if method in ("logreg", "temporal"):
        m = LogisticRegression(C=TEMPORAL_C if method == "temporal" else 1.0, max_iter=2000)
        m.fit(x, y)
        return m.coef_[0].tolist(), float(m.intercept_[0])
    svm = LinearSVC(C=0.1, max_iter=20000, random_state=seed)
    svm.fit(x, y)
    d = svm.decision_function(x)[:, None]
    platt = LogisticRegression(C=1e4, max_iter=2000).fit(d, y)  # margin -> probability
    a, c = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    return (a * svm.coef_[0]).tolist(), a * float(svm.intercept_[0]) + c


def _fit_learned(scores, y, streams, method, weights, seed=0, frames=None, clips=None) -> dict:
    spec: dict = {"method": method, "streams": streams, "weights": weights}
    if method == "temporal":
        x = context_features(scores, streams, CONTEXT, frames, clips)
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
        spec.update(
            context=list(CONTEXT),
            mean=[round(float(v), 6) for v in mean],
            std=[round(float(v), 6) for v in std],
        )
        x = _features(scores, spec, frames, clips)  # with the rounded mean/std fuse() will use
    else:
        x = context_features(scores, streams)
    coefs, intercepts = [], []
    for j in range(y.shape[1]):
        coded = y[:, j] != UNKNOWN  # each label is fitted on the frames that code it
        col = y[coded, j].astype(int)
        if 0 < col.sum() < len(col):
            c, b = _fit_linear(x if coded.all() else x[coded], col, method, seed)
            coefs.append([round(v, 8) for v in c])
            intercepts.append(round(b, 8))
        else:
            coefs.append(None)
            intercepts.append(0.0)
    return {**spec, "coef": coefs, "intercept": intercepts}


def _fit_weights(scores, y, streams) -> tuple[dict[str, float], float]:
    """Grid over the weight simplex (step 0.05 for two streams, 0.1 for more), best val macro F1."""
    step = 0.05 if len(streams) == 2 else 0.1
    grid = np.round(np.arange(0, 1 + 1e-9, step), 4)
    best: tuple[float, float, dict] | None = None
    if len(streams) == 1:
        return {streams[0]: 1.0}, _macro_f1(y, scores[streams[0]])
    combos = [(w, 1 - w) for w in grid] if len(streams) == 2 else []
    if len(streams) > 2:
        import itertools

        for c in itertools.product(grid, repeat=len(streams) - 1):
            if sum(c) <= 1 + 1e-9:
                combos.append((*c, 1 - sum(c)))
    for c in combos:
        w = {s: round(float(v), 4) for s, v in zip(streams, c, strict=True)}
        f = _macro_f1(y, _weighted(scores, w))
        # Ties go to the most even weighting: the least fitted choice.
        key = (round(f, 6), -float(np.std(c)))
        if best is None or key > best[:2]:
            best = (key[0], key[1], w)
    assert best is not None
    return best[2], best[0]


def _cv_predict(scores, y, streams, method, groups, weights, seed, frames, clips) -> np.ndarray:
    """Out-of-fold predictions (folds by `groups`, whole clips stay in one fold)."""
    n = len(y)
    frames = np.arange(n) if frames is None else np.asarray(frames)
    clips = np.zeros(n, dtype=int) if clips is None else np.asarray(clips)
    if groups is not None and len(set(groups)) >= 3:
        splits = GroupKFold(n_splits=min(5, len(set(groups)))).split(np.zeros(n), groups=groups)
    else:
        splits = KFold(n_splits=5).split(np.zeros(n))
    out = np.zeros(y.shape)
    for tr, te in splits:
        sub = {s: scores[s][tr] for s in streams}
        spec = _fit_learned(sub, y[tr], streams, method, weights, seed, frames[tr], clips[tr])
        out[te] = fuse({s: scores[s][te] for s in streams}, spec, frames[te], clips[te])
    return out


SMOOTH_FRAMES = (0, 5, 9, 15, 25)


def fit_fusion(
    val_scores: dict[str, np.ndarray],
    val_labels: np.ndarray,
    method: str = "auto",
    groups: np.ndarray | None = None,
    seed: int = 0,
    frames: np.ndarray | None = None,
    clips: np.ndarray | None = None,
    smooth_frames: tuple[float, ...] = (0,),
) -> tuple[dict, np.ndarray]:
    """Fit a fusion spec on validation frames; also return the validation predictions it was
    judged by. `auto` picks the method with the best validation macro F1, the learned ones
    judged on cross-validated predictions (grouped by `groups`, e.g. subject) so that they do
    not win by fitting the frames they are judged on; thresholds calibrated afterwards should
    use these out-of-fold predictions for the same reason."""
    streams = sorted(val_scores, key=lambda s: (s != "spatial", s))
    y = np.asarray(val_labels).astype(np.int8)  # 1, 0, UNKNOWN
    partial = [s for s in streams if not np.isfinite(val_scores[s]).all()]
    if partial:
        raise FacsError(
            f"fusion: stream(s) {', '.join(partial)} have no opinion (NaN) on some labels; "
            "fitting a fusion needs every label of every stream (for the landmark stream: "
            "facs geometry --scores learned)"
        )
    weights, wf1 = _fit_weights(val_scores, y, streams)
    candidates = [method] if method != "auto" else list(METHODS)
    for m in candidates:
        if m not in METHODS:
            raise FacsError(f"fusion: unknown method {m!r}; choose from auto, {', '.join(METHODS)}")
    val_f1: dict[str, float] = {}
    preds: dict[str, np.ndarray] = {}
    for m in candidates:
        if m == "average":
            preds[m] = _weighted(val_scores, {s: 1.0 for s in streams})
        elif m == "weighted":
            preds[m] = _weighted(val_scores, weights)
        else:
            preds[m] = _cv_predict(val_scores, y, streams, m, groups, weights, seed, frames, clips)
        val_f1[m] = _macro_f1(y, preds[m])
    chosen = max(candidates, key=lambda m: (round(val_f1[m], 6), -candidates.index(m)))
    if chosen in LEARNED:
        spec = _fit_learned(val_scores, y, streams, chosen, weights, seed, frames, clips)
    elif chosen == "weighted":
        spec = {"method": "weighted", "streams": streams, "weights": weights}
    else:
        spec = {"method": "average", "streams": streams}
    spec["val_f1_macro"] = {m: round(v, 6) for m, v in val_f1.items()}
    pred = preds[chosen]
    if len(smooth_frames) > 1 or smooth_frames[0]:
        # The window (frames) with the best validation macro F1; ties go to the shortest.
        f1s = {w: _macro_f1(y, smooth(preds[chosen], w, frames, clips)) for w in smooth_frames}
        spec["smooth_frames"] = max(smooth_frames, key=lambda w: (round(f1s[w], 6), -w))
        spec["val_f1_macro_smooth"] = {str(w): round(v, 6) for w, v in f1s.items()}
        pred = smooth(pred, spec["smooth_frames"], frames, clips)
    return spec, pred
