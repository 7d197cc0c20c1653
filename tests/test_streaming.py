"""Prediction in bounded memory: the streamed pieces give exactly what the in-memory ones give
(the records a CNN stream scores, the median reference, the landmark features, the CSV), and
the decoding pass keeps a small, fixed number of bytes per frame."""

from __future__ import annotations

import numpy as np
import pytest

from facs.analysis import geometry, realface
from facs.analysis.predict import Prediction, Rows, decode_pass, predict
from facs.analysis.table import result_csv
from facs.preprocess.records import (
    ClipRecords,
    FlowParams,
    StreamedMedian,
    StreamInput,
    median_reference,
    streamed_flow_records,
)
from facs.video import open_media


def _crops(n: int, seed: int = 0) -> np.ndarray:
    """Smoothly moving textured crops (so that Farneback finds real flow)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (40, 40, 3)).astype(np.float32)
    base = np.stack([np.convolve(r, np.ones(5) / 5, "same") for r in base.reshape(-1, 40)])
    base = base.reshape(40, 40, 3)
    return np.stack([np.roll(base, (t, 2 * t), axis=(0, 1)) for t in range(n)]).astype(np.uint8)


@pytest.mark.parametrize(
    "n, stride, layout", [(23, 1, "xy"), (23, 3, "x"), (4, 3, "y"), (2, 3, "xy"), (1, 1, "xy")]
)
def test_streamed_flow_records_are_clip_records(n, stride, layout):
    crops = _crops(n)
    inp = StreamInput("flow", stride=stride, layout=layout, flow=FlowParams())
    want = ClipRecords(inp, crops)
    got = list(streamed_flow_records(iter(crops), n, inp))
    assert [t for t, _ in got] == list(range(n))
    for t, rec in got:
        np.testing.assert_array_equal(rec, want.record(t), err_msg=f"frame {t}")


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_streamed_median_is_numpys(n):
    crops = np.random.default_rng(n).integers(0, 256, (n, 6, 5, 3), dtype=np.uint8)
    acc = StreamedMedian(crops.shape[1:])
    for c in crops:
        acc.add(c)
    np.testing.assert_array_equal(acc.median(), median_reference(crops))


def test_landmark_features_in_chunks_are_the_whole_videos():
    rng = np.random.default_rng(1)
    base = rng.uniform(100, 300, (68, 2))
    pts = (base[None] + rng.normal(0, 3, (300, 68, 2))).round().astype(np.int16)
    ok = rng.random(300) > 0.2
    whole = np.full((300, 68, 2), np.nan, np.float32)
    whole[ok] = pts[ok]
    np.testing.assert_array_equal(
        geometry.features_in_chunks(pts, ok, chunk=37), geometry.features_of_points(whole)
    )


def test_rows_grow():
    r = Rows(3, np.float32)
    for i in range(10000):
        r.append(None if i % 7 == 0 else [i, i, i])
    a = r.array()
    assert a.shape == (10000, 3) and np.isnan(a[0]).all() and a[9999, 2] == 9999
    assert (a[1:7, 0] == np.arange(1, 7)).all() and np.isnan(a[7]).all()
    exact = Rows(2, np.int16, 0, capacity=500)
    for i in range(500):
        exact.append([i, -i])
    assert exact.array().base is exact.chunks[0]  # the header's count held: a view, no copy


def test_real_face_rules_run_in_chunks_with_the_same_numbers():
    """The rules run a chunk of frames at a time (an hour of video costs its features and the
    output, not N-long temporaries per AU); the numbers do not depend on the chunk."""
    import tracemalloc

    from facs.analysis.facemesh import BLENDSHAPES

    rng = np.random.default_rng(3)
    n = 20000
    fvec = rng.normal(0, 0.05, (n, len(realface.FEATURES))) + 1.0
    blend = rng.random((n, len(BLENDSHAPES))).astype(np.float32) * 0.4
    fvec[::50] = np.nan  # frames without a face
    blend[::50] = np.nan
    labels = ["1", "2", "4", "6", "12", "25", "43", "45"]
    whole, cal = realface.probs_from_features(fvec, blend, labels, 30.0, chunk=n)
    tracemalloc.start()
    parts, cal2 = realface.probs_from_features(fvec, blend, labels, 30.0, chunk=1000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(parts, whole)
    assert cal == cal2
    # the output (32 B a frame) and a few N-long vectors, not ~1 kB a frame
    assert peak / n < 200, peak / n


def test_the_decoding_pass_keeps_a_few_hundred_bytes_a_frame(examples_dir):
    media = open_media(examples_dir / "single_face.mp4")
    vp = decode_pass(media, {"mediapipe", "landmarks"}, None, lambda n: None)
    arrays = [vp.face, vp.box, vp.confidence, vp.mesh_features, vp.blend, vp.dlib_points,
              vp.dlib_found]  # fmt: skip
    per_frame = sum(a.nbytes for a in arrays) / vp.frames
    assert per_frame < 700, per_frame  # a mesh alone is 5.7 kB, dlib's points as float 1 kB
    assert vp.face.sum() >= 60 and vp.dlib_found.sum() >= 60


def test_streamed_csv_equals_the_json_results_csv(tmp_path, examples_dir):
    pred = predict(examples_dir / "face_noface.mov", "face")
    assert isinstance(pred, Prediction)
    pred.write_csv(tmp_path / "a.csv", chunk=13)  # many chunks, one header
    assert (tmp_path / "a.csv").read_text() == result_csv(pred.json())


@pytest.mark.parametrize(
    "method",
    ["average", "weighted", "logreg", "partial", "temporal", "temporal+smooth", "partial+smooth"],
)
def test_fusion_in_chunks_gives_fuses_numbers(method):
    from facs.training.fusion import fit_fusion, fuse, fuse_in_chunks

    rng = np.random.default_rng(5)
    n, L = 3000, 4
    # AUs that last: runs of frames, so that the temporal context matters
    y = (np.repeat(rng.random((n // 30, L)), 30, axis=0) < 0.3).astype(np.int8)
    scores = {s: np.clip(y * 0.5 + rng.random((n, L)) * 0.6, 0, 1) for s in ("spatial", "flow")}
    base = method.split("+")[0]
    spec, _ = fit_fusion(scores, y, method="logreg" if base == "partial" else base)
    if method.endswith("+smooth"):
        spec = {**spec, "smooth_frames": 9}
    if base == "partial":  # a stream without an opinion on one label: per-label coverage
        scores = {**scores, "geometry": scores["flow"].copy()}
        scores["geometry"][:, 2] = np.nan
    want = np.asarray(fuse(scores, spec), np.float32)
    got = fuse_in_chunks(scores, spec, chunk=700)
    if base == "temporal" or "smooth" in method:  # running sums: equal to float rounding
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        # and each chunk's edge frames see their neighbours (a chunk alone would not)
        alone = np.asarray(fuse({s: v[700:1400] for s, v in scores.items()}, spec), np.float32)
        assert np.abs(alone[:3] - want[700:703]).max() > 1e-4
    else:
        np.testing.assert_array_equal(got, want)


def test_temporal_fusion_of_an_hour_stays_small():
    """The trained two-stream model's fusion (temporal context) on an hour of frames: peak
    memory a few chunks' worth, not the S x L x 4 float64 features of every frame."""
    import tracemalloc

    from facs.training.fusion import CONTEXT, fuse_in_chunks

    n, L = 86_400, 16
    rng = np.random.default_rng(0)
    scores = {s: rng.random((n, L)).astype(np.float32) for s in ("spatial", "flow")}
    width = 2 * L * (1 + len(CONTEXT))
    spec = {"method": "temporal", "streams": ["spatial", "flow"],
            "weights": {"spatial": 0.6, "flow": 0.4}, "context": list(CONTEXT),
            "mean": [0.0] * width, "std": [1.0] * width,
            "coef": [[0.01] * width] * L, "intercept": [0.0] * L}  # fmt: skip
    tracemalloc.start()
    out = fuse_in_chunks(scores, spec)
    peak = tracemalloc.get_traced_memory()[1] - out.nbytes
    tracemalloc.stop()
    whole = n * width * 8  # the context features alone, unchunked
    assert peak < whole / 4, (peak / 1e6, whole / 1e6)


def test_landmark_rules_run_in_chunks_with_the_same_numbers():
    rng = np.random.default_rng(4)
    n = 5000
    feats = (1.0 + rng.normal(0, 0.08, (n, len(geometry.FEATURES)))).astype(np.float32)
    feats[::40] = np.nan
    labels = [*geometry.LABELS, "99"]
    whole = geometry.rule_probs(feats, labels, 30.0, chunk=n)
    np.testing.assert_array_equal(geometry.rule_probs(feats, labels, 30.0, chunk=333), whole)
    assert np.isnan(whole[:, -1]).all() and (whole[::40, :-1] == 0).all()


def test_landmark_neutral_runs_in_chunks_with_the_same_numbers():
    """The neutral estimate keeps one activity value a frame, not every rule's evidence: the
    same rest pose and neutral frames for any chunk."""
    rng = np.random.default_rng(5)
    n = 5000
    feats = (1.0 + rng.normal(0, 0.08, (n, len(geometry.FEATURES)))).astype(np.float32)
    feats[::40] = np.nan
    rest, neutral = geometry.neutral_rest(feats, chunk=n)
    rest2, neutral2 = geometry.neutral_rest(feats, chunk=333)
    np.testing.assert_array_equal(rest2, rest)
    np.testing.assert_array_equal(neutral2, neutral)
    assert neutral.sum() == int(np.ceil(geometry.NEUTRAL_FRACTION * (n - n // 40)))
