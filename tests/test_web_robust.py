"""The server under hostile but fair load: uploads far over the limit, a worker that dies,
clients that start an upload and stall, and SIGTERM with analyses in flight."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from web_helpers import cut_clip

from facs.web.app import close_app, create_app
from facs.web.server import BackgroundServer


def _get_json(url: str, timeout: float = 10) -> tuple[int, dict]:
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("GET", u.path)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body


def _post(url: str, data: bytes, name: str = "c.mp4", timeout: float = 120):
    boundary = "facsboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("POST", u.path + (f"?{u.query}" if u.query else ""), body,
                 {"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), json.loads(raw)


@pytest.fixture(scope="module")
def long_clip(examples_dir, tmp_path_factory) -> Path:
    """A 19 s real clip at 320 px: a few seconds of analysis per request."""
    d = tmp_path_factory.mktemp("robust")
    return cut_clip(examples_dir / "WolfgangLanger_Pexels.mp4", d / "long.mp4", width=320)


def _app(tmp_path: Path, **kw):
    return create_app(
        "geometry",
        synth_root=None,
        real_dir=tmp_path / "none",
        upload_dir=tmp_path / "up",
        cache_dir=tmp_path / "cache",
        warm_examples=False,
        **kw,
    )


def test_far_over_the_limit_is_a_json_413(tmp_path):
    """A 50 MB upload against a 1 MB limit: waitress refuses it from its headers, before the
    body, with the API's JSON error."""
    app = _app(tmp_path, workers=1, max_upload_mb=1.0)
    try:
        with BackgroundServer(app, close=False) as srv:
            u = urlparse(srv.url)
            s = socket.create_connection((u.hostname, u.port), timeout=10)
            s.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                b"boundary=b\r\nContent-Length: 52428800\r\n\r\n" + b"\0" * 4096
            )
            raw = b""
            while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                raw += chunk
            s.close()
    finally:
        close_app(app)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"Content-Type: application/json" in head
    assert json.loads(body) == {"error": "upload too large: the limit is 1 MB", "status": 413}


def test_a_crashed_worker_costs_one_request(tmp_path, long_clip):
    """Two analyses on two workers; one worker is killed (kill -9): its request fails (500),
    the other's finishes (200), and the pool has two live workers again."""
    app = _app(tmp_path, workers=2, queue=0, max_seconds=60)
    state = app.extensions["facs"]
    try:
        with BackgroundServer(app, close=False) as srv:
            data = long_clip.read_bytes()
            jobs = [_post(srv.url + "/api/predict?async=1", data)[2]["job"] for _ in range(2)]
            deadline = time.time() + 60
            while time.time() < deadline:
                states = [_get_json(f"{srv.url}/api/jobs/{j}")[1] for j in jobs]
                if all(s["state"] == "running" and s["progress"] > 0.05 for s in states):
                    break
                time.sleep(0.2)
            pids = state.procs.pids()
            assert len(pids) == 2
            os.kill(pids[0], signal.SIGKILL)
            final = {}
            while time.time() < deadline and len(final) < 2:
                for j in jobs:
                    status, body = _get_json(f"{srv.url}/api/jobs/{j}")
                    if body["state"] in ("done", "error"):
                        final[j] = body
                time.sleep(0.3)
            health = _get_json(srv.url + "/api/health")[1]
    finally:
        close_app(app)
    outcomes = sorted(b["state"] for b in final.values())
    assert outcomes == ["done", "error"], final
    failed = next(b for b in final.values() if b["state"] == "error")
    assert failed["status"] == 500 and "crashed" in failed["error"]
    assert health["status"] == "ok"


def test_close_does_not_wait_for_a_model_load(tmp_path):
    """Stopping right after a start (workers still importing and loading the model, the
    moment a service manager's stop or a busy machine makes long) ends every worker within a
    few seconds instead of waiting for the loads."""
    from facs.web.worker import WorkerProcesses

    procs = WorkerProcesses("geometry", 2, lambda _id: None)
    procs.warm()
    deadline = time.time() + 30
    while len(procs.pids()) < 2 and time.time() < deadline:
        time.sleep(0.05)
    started = [p for ex in procs._all for p in (ex._processes or {}).values()]
    assert len(started) == 2
    t0 = time.monotonic()
    procs.close()
    took = time.monotonic() - t0
    assert not any(p.is_alive() for p in started)
    assert took < 2, f"close took {took:.1f} s (a model load takes ~5 s on an idle machine)"


def _stall(url: str, n: int) -> list[socket.socket]:
    """n uploads that send their headers and 1 KB of a declared 208 KB body, then stall."""
    u = urlparse(url)
    socks = []
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nContent-Length: 212992\r\n\r\n"
    )
    for _ in range(n):
        s = socket.create_connection((u.hostname, u.port), timeout=5)
        s.sendall(head + b"\0" * 1024)
        socks.append(s)
    return socks


def _closed_by_server(s: socket.socket, wait: float) -> bool:
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_stalled_uploads_do_not_lock_anyone_out(tmp_path, examples_dir):
    """120 half-open uploads from one peer: health and a real upload still answer at once; the
    peer keeps at most `per_peer` of them, and the rest go after `request_timeout`."""
    clip = cut_clip(examples_dir / "single_face.mp4", tmp_path / "s.mp4", width=320, frames=20)
    app = _app(tmp_path, workers=1, max_upload_mb=1.0)
    try:
        with BackgroundServer(app, close=False, per_peer=8, request_timeout=4.0) as srv:
            socks = _stall(srv.url, 120)
            time.sleep(1.5)  # a guard round or two
            t0 = time.perf_counter()
            status, body = _get_json(srv.url + "/api/health", timeout=5)
            health_s = time.perf_counter() - t0
            code, _, result = _post(srv.url + "/api/predict", clip.read_bytes(), timeout=60)
            early = sum(_closed_by_server(s, 0.05) for s in socks)
            time.sleep(4.0)
            late = sum(_closed_by_server(s, 0.5) for s in socks)
            for s in socks:
                s.close()
    finally:
        close_app(app)
    assert status == 200 and body["status"] == "ok" and health_s < 2.0
    assert code == 200 and result["frames"] == 20
    assert early >= 112  # beyond the 8 a peer may keep
    assert late == 120  # none outlives the request timeout


def test_sigterm_finishes_the_accepted_and_refuses_the_new(tmp_path, long_clip):
    """`facs serve`, 2 workers + 2 waiting, 4 analyses in flight, SIGTERM: the 4 finish (200),
    a request during the drain gets a JSON 503, no 500 anywhere, exit status 0."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "facs.cli", "serve", "--port", "0", "--workers", "2",
           "--queue", "2", "--model", "geometry", "--max-seconds", "60",
           "--data", str(tmp_path / "none")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)  # fmt: skip
    url = None
    for line in proc.stdout:
        if "http://" in line:
            url = line.split()[2].rstrip("/")
            break
    assert url
    data = long_clip.read_bytes()
    results: list = [None] * 4

    def client(i: int) -> None:
        results[i] = _post(url + "/api/predict", data)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while time.time() < deadline:
        pool = _get_json(url + "/api/health")[1]["pool"]
        if pool["running"] == 2 and pool["waiting"] == 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    late = _post(url + "/api/predict", data)
    for t in threads:
        t.join(timeout=120)
    rc = proc.wait(timeout=120)
    assert [r[0] for r in results] == [200] * 4, [r[:1] + (r[2].get("error"),) for r in results]
    assert late[0] == 503 and "shutting down" in late[2]["error"]
    assert rc == 0
