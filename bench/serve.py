"""Latency of `facs serve` for a 5 s real face clip at 1, 2 and 4 concurrent clients, and of
/api/health and an upload while 120 half-open uploads stall the server.

    python bench/serve.py [--model geometry] [--workers 2] [--requests 3] [--seconds 5]

Starts the real server (waitress, loopback, a free port) with the given model and pool size;
each client posts the clip to POST /api/predict `--requests` times in a row. Prints median and
p95 latency per level, throughput, and the ratios to the single-client numbers, side by side.
The clip is the first `--seconds` of WolfgangLanger_Pexels.mp4 (640x360, a real talking face).
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from facs.datasets.realfaces import example_video
from facs.web.app import create_app
from facs.web.server import BackgroundServer


def cut(src: Path, dst: Path, seconds: float) -> tuple[Path, int]:
    """The first `seconds` of `src` as H.264 MP4, frame for frame."""
    with av.open(os.fspath(src)) as inp, av.open(os.fspath(dst), "w") as out:
        ist = inp.streams.video[0]
        rate = ist.average_rate or Fraction(25)
        ost = out.add_stream("libx264", rate=rate)
        ost.width, ost.height, ost.pix_fmt = (
            ist.codec_context.width,
            ist.codec_context.height,
            "yuv420p",
        )
        n = 0
        for frame in inp.decode(ist):
            if n >= round(seconds * float(rate)):
                break
            img = frame.reformat(format="yuv420p")
            img.pts, img.time_base = n, Fraction(1) / rate
            for p in ost.encode(img):
                out.mux(p)
            n += 1
        for p in ost.encode():
            out.mux(p)
    return dst, n


def post(host: str, port: int, body: bytes, boundary: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.request(
        "POST", "/api/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, time.perf_counter() - t0


def client(host, port, body, boundary, requests, lat, bad, lock) -> None:
    """One client: `requests` posts in a row; latencies of 200s into `lat`, other statuses
    into `bad`."""
    for _ in range(requests):
        status, seconds = post(host, port, body, boundary)
        with lock:
            if status == 200:
                lat.append(seconds)
            else:
                bad.append(status)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="geometry")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--requests", type=int, default=3, help="requests per client per level")
    ap.add_argument("--seconds", type=float, default=5.0, help="clip length")
    ap.add_argument("--levels", default="1,2,4")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="facs-bench-serve-"))
    clip, frames = cut(example_video("WolfgangLanger_Pexels.mp4"), tmp / "clip.mp4", args.seconds)
    boundary = secrets.token_hex(8)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="clip.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + clip.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )

    app = create_app(
        args.model,
        workers=args.workers,
        queue=max(levels),  # every client waits for a worker: latency, not refusals
        max_seconds=args.seconds + 1,
        synth_root=None,
        upload_dir=tmp / "uploads",
        cache_dir=tmp / "cache",
        warm_examples=False,
    )
    print(
        f"bench/serve: model {args.model}, {args.workers} workers, clip {args.seconds:g} s "
        f"({frames} frames 640x360), {args.requests} requests per client, {os.cpu_count()} CPUs"
    )
    rows = []
    with BackgroundServer(app) as srv:
        host, port = "127.0.0.1", srv.server.effective_port
        # Warm-up: one request per worker process at once (each loads the model once).
        warm: list[float] = []
        bad: list[int] = []
        lock = threading.Lock()
        threads = [
            threading.Thread(target=client, args=(host, port, body, boundary, 1, warm, bad, lock))
            for _ in range(args.workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if bad:
            print(f"bench/serve: warm-up requests answered {bad}", file=sys.stderr)
            return 1
        print(f"bench/serve: warm-up requests {', '.join(f'{w:.2f}' for w in warm)} s")
        for clients in levels:
            lat: list[float] = []
            bad: list[int] = []
            lock = threading.Lock()

            t0 = time.perf_counter()
            threads = [
                threading.Thread(
                    target=client, args=(host, port, body, boundary, args.requests, lat, bad, lock)
                )
                for _ in range(clients)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            a = np.asarray(lat)
            rows.append(
                (
                    clients,
                    len(lat),
                    bad,
                    float(np.median(a)),
                    float(np.percentile(a, 95)),
                    len(lat) / wall,
                )
            )

        stalled = half_open(host, port, body, boundary, 120)

    base_med, base_tp = rows[0][3], rows[0][5]
    print(
        f"{'clients':>7} {'n':>3} {'median s':>9} {'p95 s':>7} {'clips/s':>8} "
        f"{'x realtime':>10} {'median/1':>9} {'tput/1':>7}"
    )
    for clients, n, bad, med, p95, tp in rows:
        print(
            f"{clients:>7} {n:>3} {med:>9.2f} {p95:>7.2f} {tp:>8.3f} "
            f"{args.seconds / med:>10.2f} {med / base_med:>9.2f} {tp / base_tp:>7.2f}"
            + (f"  errors: {bad}" if bad else "")
        )
    print("half-open uploads (1 KB sent of a declared 208 KB, from one peer), side by side:")
    for name, (health, upload) in stalled.items():
        print(f"  {name:>24}: /api/health {health * 1000:7.1f} ms, an upload {upload:6.2f} s")
    return 0


def half_open(host: str, port: int, body: bytes, boundary: str, n: int) -> dict:
    """Health and upload latency with no stalled client, then with `n` of them."""
    import socket

    def measure() -> tuple[float, float]:
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(host, port, timeout=120)
        conn.request("GET", "/api/health")
        conn.getresponse().read()
        conn.close()
        health = time.perf_counter() - t0
        status, upload = post(host, port, body, boundary)
        return health, upload if status == 200 else float("nan")

    out = {"none stalled": measure()}
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nContent-Length: 212992\r\n\r\n"
    )
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(head + b"\0" * 1024)
        socks.append(s)
    time.sleep(1.0)
    out[f"{n} stalled"] = measure()
    for s in socks:
        s.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
