"""`facs serve`: the web demo (one page) and its REST API, served by waitress.

    facs serve [--host 127.0.0.1] [--port 9000] [--model DIR] [--workers N]
               [--max-upload-mb MB] [--max-seconds S] [--debug]

REST API (JSON everywhere, errors as {"error": "..."}):

    GET  /api/health                 liveness, model name, pool load
    GET  /api/model                  the active model: labels, streams, what it was trained on
    POST /api/predict                multipart field `video` -> per-frame AU probabilities
    GET  /api/examples               example clips present on this machine
    POST /api/examples/<id>          analyse an example clip
    GET  /api/examples/<id>/video    the example as the browser can play it
    GET  /api/jobs/<id>              progress / result of an analysis started with ?async=1

Statuses: 413 upload too large, 415 not a video, 422 broken/truncated/too long,
503 + Retry-After when every analysis worker is busy and the waiting room is full.
Prediction itself is facs.predict (the same code path as `facs analyze`).
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from facs.errors import FacsError
from facs.web_jobs import AnalysisPool, Job, PoolFull
from facs.web_media import EXAMPLE_ID, browser_playable, list_examples, warm_cache
from facs.web_worker import WorkerProcesses

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
MODELS_DIR = Path("models")
DEFAULTS = {
    "workers": 2,
    "queue": 2,
    "max_upload_mb": 64.0,
    "max_seconds": 30.0,
}


# ---------------------------------------------------------------------------------------------
# The model


def find_default_model(models_dir: Path = MODELS_DIR) -> str:
    """The newest trained model folder under models/, else the built-in geometry model."""
    found = []
    for meta in models_dir.glob("*/model.json"):
        try:
            created = str(json.loads(meta.read_text()).get("created", ""))
        except (OSError, ValueError):
            continue
        found.append((created, meta.stat().st_mtime, meta.parent))
    if not found:
        return "geometry"
    return str(max(found)[2])


def sweep_stale_upload_dirs() -> None:
    """Remove upload folders of servers that died without cleaning up (kill -9, power cut)."""
    for folder in Path(tempfile.gettempdir()).glob("facs-uploads-*-*"):
        pid = folder.name.split("-")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, OverflowError):
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def describe_model(model: Any, source: str) -> dict:
    """What /api/model and the page show: name, labels, streams, training data, metrics.

    `model` is a facs.predict.Model; its `spec` is the model.json as read."""
    from facs.aus import au_label

    spec = model.spec or {}
    fusion = model.fusion or {}
    return {
        "name": model.name,
        "source": source,
        "created": spec.get("created"),
        "trained_on": spec.get("trained_on"),
        "description": spec.get("description"),
        "labels": [{"code": c, "label": au_label(c)} for c in model.labels],
        "streams": list(model.streams),
        "fusion": fusion.get("method") if isinstance(fusion, dict) else fusion,
        "metrics": spec.get("metrics"),
    }


# ---------------------------------------------------------------------------------------------
# The app


def create_app(
    model: str | Path | None = None,
    *,
    workers: int = DEFAULTS["workers"],
    queue: int = DEFAULTS["queue"],
    max_upload_mb: float = DEFAULTS["max_upload_mb"],
    max_seconds: float = DEFAULTS["max_seconds"],
    synth_root: Path | None = Path("data/synth"),
    real_dir: Path | None = None,
    upload_dir: Path | None = None,
    cache_dir: Path | None = None,
    warm_examples: bool = True,
    warm_workers: bool = True,
):
    """The Flask app. `model` is a model folder or name (default: find_default_model()).

    Uploads go to `upload_dir` (default: a private temp folder removed at exit) under
    server-generated names and are deleted after analysis; transcoded example clips are
    cached in `cache_dir` (default: facs' cache folder). `warm_examples` transcodes the
    examples and `warm_workers` starts the worker processes (each loads the model) right away,
    in the background. `close_app(app)` stops the worker processes.

    The workers are spawned processes: a script that calls create_app must do so under
    `if __name__ == "__main__":` (Python re-imports the main module in each worker).
    """
    from flask import Flask, jsonify, request, send_file, send_from_directory
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
    from werkzeug.utils import secure_filename

    from facs import predict
    from facs.realdata import cache_dir as facs_cache

    source = str(model) if model is not None else find_default_model()
    try:
        loaded = predict.load_model(source)
    except FacsError:
        raise
    except Exception as exc:  # a broken model folder is the operator's input error
        raise FacsError(f"{source}: cannot load the model ({exc})") from exc
    model_info = describe_model(loaded, source)

    if real_dir is None:
        from facs.realdata import examples_dir

        real_dir = examples_dir()
    if upload_dir is None:
        sweep_stale_upload_dirs()
        # mode 0700; the pid in the name lets a later server remove it after a kill -9
        upload_dir = Path(tempfile.mkdtemp(prefix=f"facs-uploads-{os.getpid()}-"))
        atexit.register(shutil.rmtree, upload_dir, True)
    upload_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = cache_dir or facs_cache() / "web"

    if not (WEB_DIR / "index.html").is_file():
        raise FacsError(f"{WEB_DIR}: the web page (index.html) is missing")
    app = Flask("facs.web_app", static_folder=str(WEB_DIR / "static"), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    pool = AnalysisPool(workers=workers, queue=queue)
    procs = WorkerProcesses(source, workers, pool.get)
    if warm_workers:
        procs.warm()
    durations: list[float] = []  # recent analysis times, for Retry-After
    started = time.time()
    if warm_examples:
        # Transcode the examples the browser cannot play now, not on the first click.
        threading.Thread(
            target=warm_cache,
            args=(list_examples(synth_root, real_dir), cache_dir),
            daemon=True,
            name="facs-warm-examples",
        ).start()
    app.extensions["facs"] = {
        "pool": pool,
        "model": loaded,
        "model_info": model_info,
        "upload_dir": upload_dir,
        "limits": {"max_upload_mb": max_upload_mb, "max_seconds": max_seconds},
        "close": lambda: (procs.close(), pool.shutdown()),
    }

    def error(status: int, message: str, **headers):
        resp = jsonify({"error": message, "status": status})
        resp.status_code = status
        for k, v in headers.items():
            resp.headers[k.replace("_", "-")] = v
        return resp

    def retry_after() -> str:
        recent = durations[-8:]
        typical = sum(recent) / len(recent) if recent else 5.0
        return str(max(1, min(60, math.ceil(typical))))

    def analyse(job: Job, path: Path, name: str, limit: float, streams: list | None) -> dict:
        """Runs on a pool thread, which waits for a worker process to do the analysis."""
        t0 = time.time()
        result = procs.run(job, path, name, limit, streams)
        durations.append(time.time() - t0)
        del durations[:-32]
        return result

    def requested_streams() -> list[str] | None:
        """?streams=a,b: a subset of the model's streams (ValueError names a wrong one)."""
        raw = request.args.get("streams", "").strip()
        if not raw:
            return None
        names = [s.strip() for s in raw.split(",") if s.strip()]
        unknown = [s for s in names if s not in model_info["streams"]]
        if unknown or not names:
            raise ValueError(
                f"unknown stream(s) {', '.join(unknown) or raw!r}; this model has "
                f"{', '.join(model_info['streams'])}"
            )
        return names

    def start(path: Path, display_name: str, streams, limit: float = max_seconds):
        """Queue the analysis of `path` (removed afterwards); the response for the client."""

        def cleanup() -> None:
            path.unlink(missing_ok=True)

        try:
            job = pool.submit(
                lambda job: analyse(job, path, display_name, limit, streams), cleanup=cleanup
            )
        except PoolFull:
            return error(
                503, "all analysis workers are busy, try again shortly", Retry_After=retry_after()
            )
        if request.args.get("async") in ("1", "true", "yes"):
            resp = jsonify({"job": job.id, "url": f"/api/jobs/{job.id}", **job.public()})
            resp.status_code = 202
            return resp
        job.done_event.wait()
        if job.error is not None:
            return error(*job.error)
        return jsonify(job.result)

    @app.after_request
    def security_headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; media-src 'self' blob:; img-src 'self' data: blob:; "
            "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'",
        )
        return resp

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return error(413, f"upload too large: the limit is {max_upload_mb:g} MB")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/api/"):
            return error(exc.code or 500, exc.description or exc.name)
        return exc

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        app.logger.exception("unhandled error")
        return error(500, f"internal error: {exc.__class__.__name__}")

    @app.get("/")
    def index():
        return send_from_directory(WEB_DIR, "index.html", max_age=0)

    @app.get("/api/health")
    def health():
        return jsonify(
            {
                "status": "ok",
                "model": model_info["name"],
                "uptime_s": round(time.time() - started, 1),
                "pool": pool.busy(),
                "limits": app.extensions["facs"]["limits"],
            }
        )

    @app.get("/api/model")
    def model_route():
        return jsonify({**model_info, "limits": app.extensions["facs"]["limits"]})

    @app.post("/api/predict")
    def predict_route():
        try:
            streams = requested_streams()
        except ValueError as exc:
            return error(400, str(exc))
        upload = request.files.get("video")
        if upload is None:
            return error(400, "send the clip as multipart/form-data in the field 'video'")
        # A server-made name in the private folder: the client's file name is never used.
        path = upload_dir / f"{secrets.token_hex(16)}.upload"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(upload.stream, f, 1 << 20)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return start(path, secure_filename(upload.filename or "") or "upload", streams)

    listing: dict = {"at": -1e9, "examples": {}}

    def examples() -> dict:
        """The example whitelist, rescanned at most every 30 s (a corpus may be large)."""
        if time.time() - listing["at"] > 30:
            listing["examples"] = {e.id: e for e in list_examples(synth_root, real_dir)}
            listing["at"] = time.time()
        return listing["examples"]

    def example_or_404(example_id: str):
        if not EXAMPLE_ID.match(example_id):
            return None
        return examples().get(example_id)  # whitelist: only ids of clips found on disk

    @app.get("/api/examples")
    def examples_route():
        return jsonify({"examples": [e.public() for e in examples().values()]})

    @app.post("/api/examples/<example_id>")
    def example_predict(example_id: str):
        ex = example_or_404(example_id)
        if ex is None:
            return error(404, f"no example clip with id {example_id!r}")
        try:
            streams = requested_streams()
        except ValueError as exc:
            return error(400, str(exc))
        # Analyse a private copy, so that the upload path's cleanup logic applies unchanged.
        path = upload_dir / f"{secrets.token_hex(16)}.upload"
        shutil.copyfile(ex.path, path)
        # The clip length limit guards uploads; the operator's own examples may be longer.
        return start(path, ex.id, streams, limit=math.inf)

    @app.get("/api/examples/<example_id>/video")
    def example_video(example_id: str):
        ex = example_or_404(example_id)
        if ex is None:
            return error(404, f"no example clip with id {example_id!r}")
        playable, mime = browser_playable(ex.path, cache_dir)
        return send_file(playable, mimetype=mime, conditional=True, max_age=3600)

    @app.get("/api/jobs/<job_id>")
    def job_route(job_id: str):
        job = pool.get(job_id) if job_id.isalnum() and len(job_id) <= 64 else None
        if job is None:
            return error(404, "no such analysis (finished results are kept for 10 minutes)")
        body = job.public()
        if job.state == "done":
            body["result"] = job.result
        return jsonify(body)

    return app


# ---------------------------------------------------------------------------------------------
# Serving


def close_app(app) -> None:
    """Stop the app's analysis worker processes and threads."""
    app.extensions["facs"]["close"]()


def make_server(app, host: str = "127.0.0.1", port: int = 9000, threads: int | None = None):
    """A waitress server for `app` (port 0 picks a free port: see `server.effective_port`).

    Waitress buffers a whole request before the app sees it, so its own body limit is set just
    above the app's: larger bodies are refused by waitress itself without reaching Flask.
    """
    from waitress.server import create_server

    state = app.extensions["facs"]
    pool: AnalysisPool = state["pool"]
    max_body = int(state["limits"]["max_upload_mb"] * 1024 * 1024 * 1.5) + (1 << 20)
    # Enough request threads that a full pool still answers 503 quickly.
    threads = threads or pool.capacity + 4
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=max_body,
        ident="facs",
        clear_untrusted_proxy_headers=True,
    )


class BackgroundServer:
    """Run a waitress server in a thread (tests, benchmarks): `with BackgroundServer(app) as s:`.

    Leaving the block stops the server and, unless `close=False`, the app's workers."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, close: bool = True):
        self.app, self._close_app = app, close
        self.server = make_server(app, host, port)
        self.url = f"http://{host}:{self.server.effective_port}"
        self._closing = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError):
            if not self._closing:  # closing the socket under select() is the way to stop
                raise

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing = True
        self.server.task_dispatcher.shutdown(timeout=5)
        self.server.close()
        self._thread.join(timeout=5)
        if self._close_app:
            close_app(self.app)


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", type=int, default=9000, help="port (default 9000)")
    parser.add_argument(
        "--model",
        default=None,
        help="model folder or name under models/ (default: the newest trained model, "
        "else the built-in geometry model)",
    )
    parser.add_argument(
        "--workers", type=int, default=DEFAULTS["workers"], help="parallel analyses (default 2)"
    )
    parser.add_argument(
        "--queue",
        type=int,
        default=DEFAULTS["queue"],
        help="analyses that may wait for a worker before the server answers 503 (default 2)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULTS["max_upload_mb"],
        help="largest upload in MB; larger ones get 413 (default 64)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULTS["max_seconds"],
        help="longest uploaded clip in seconds; longer ones get 422 (default 30)",
    )
    parser.add_argument(
        "--data", default="data/synth", help="synthetic corpus whose clips the page offers"
    )
    for action in parser._actions:  # the CLI's shared --debug means more here
        if "--debug" in action.option_strings:
            action.help = "Flask's debug server with tracebacks instead of waitress (not for use)"


def run(args: argparse.Namespace) -> int:
    if args.workers < 1 or args.queue < 0:
        raise FacsError("--workers must be >= 1 and --queue >= 0")
    if args.max_upload_mb <= 0 or args.max_seconds <= 0:
        raise FacsError("--max-upload-mb and --max-seconds must be positive")
    app = create_app(
        args.model,
        workers=args.workers,
        queue=args.queue,
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        synth_root=Path(args.data),
    )
    info = app.extensions["facs"]["model_info"]
    trained = info.get("trained_on") or {}
    print(
        f"facs serve: model {info['name']} ({info['source']}), streams "
        f"{' + '.join(info['streams'])}, {len(info['labels'])} AUs"
    )
    if trained:
        subjects = len(trained.get("train_subjects") or [])
        print(
            f"facs serve: trained on {trained.get('data')} (profile {trained.get('profile')}, "
            f"config {trained.get('config')}, {trained.get('label_mode')} labels, "
            f"{subjects} train subjects)"
        )
    print(
        f"facs serve: {args.workers} workers + {args.queue} waiting, uploads <= "
        f"{args.max_upload_mb:g} MB, clips <= {args.max_seconds:g} s"
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"facs serve: WARNING: listening on {args.host}; the demo has no authentication")
    # A service manager stops us with SIGTERM: leave through the same path as Ctrl-C, so that
    # the workers stop and the private upload folder is removed (atexit).
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if args.debug:
        print(f"facs serve: Flask debug server on http://{args.host}:{args.port}/ (not for use)")
        try:
            app.run(host=args.host, port=args.port, debug=True, use_reloader=False, threaded=True)
        except KeyboardInterrupt:
            pass
        finally:
            close_app(app)
        return 0
    try:
        server = make_server(app, args.host, args.port)
    except OSError as exc:
        close_app(app)
        raise FacsError(f"{args.host}:{args.port}: cannot listen ({exc.strerror or exc})") from None
    print(f"facs serve: http://{args.host}:{server.effective_port}/  (Ctrl-C stops)")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        close_app(app)
    return 0
