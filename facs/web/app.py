"""`facs serve`: the web demo (one page) and its REST API, served by waitress.

    facs serve [--host 127.0.0.1] [--port 9000] [--model DIR] [--workers N]
               [--max-upload-mb MB] [--max-seconds S] [--debug]

The routes are facs.web.routes (JSON everywhere, errors as {"error", "status"}). Statuses: 413
upload too large, 415 not a video, 422 broken/truncated/too long, 503 + Retry-After when every
analysis worker is busy and the waiting room is full. Prediction itself is
facs.analysis.predict (the same code path as `facs analyze`), run in worker processes.
"""

from __future__ import annotations

import _thread
import argparse
import atexit
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from flask import Flask, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from facs.analysis.model import MODELS_DIR, Model, default_model, load_model
from facs.aus import au_label
from facs.datasets.realfaces import cache_dir as facs_cache
from facs.datasets.realfaces import examples_dir
from facs.errors import FacsError
from facs.web.jobs import AnalysisPool, Job, PoolFull
from facs.web.media import EXAMPLE_ID, Example, list_examples, warm_cache
from facs.web.routes import bp, error
from facs.web.server import PER_PEER, REQUEST_TIMEOUT, make_server
from facs.web.worker import WorkerProcesses

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
DEFAULTS = {
    "workers": 2,
    "queue": 2,
    "max_upload_mb": 64.0,
    "max_seconds": 30.0,
}


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


def model_kind(model: Model) -> str:
    """What the model is, in a few words, from its streams."""
    kinds = [s.kind for s in model.streams.values()]
    parts = []
    cnn = kinds.count("cnn")
    if cnn:
        parts.append(
            {1: "one-stream CNN", 2: "two-stream CNN"}.get(cnn, f"{cnn}-stream CNN")
            + " (Caffe nets run by PyTorch)"
        )
    if "landmarks" in kinds:
        learned = any(
            s.method == "learned" for s in model.streams.values() if s.kind == "landmarks"
        )
        parts.append("classifier on dlib landmarks" if learned else "FACS rules on dlib landmarks")
    if "mediapipe" in kinds:
        parts.append("MediaPipe face landmarks + AU rules")
    return " + ".join(parts) or "no streams"


def describe_model(model: Model, source: str) -> dict:
    """What /api/model and the page show: name, kind, labels, streams, training data, metrics."""
    return {
        "name": model.name,
        "kind": model_kind(model),
        "source": source,
        "created": model.created or None,
        "trained_on": model.trained_on or None,
        "description": model.description or None,
        "faces": model.faces,
        "synthetic": model.synthetic,
        "labels": [{"code": c, "label": au_label(c)} for c in model.labels],
        "streams": list(model.streams),
        "fusion": model.fusion.get("method"),
        "metrics": model.metrics or None,
    }


class DemoState:
    """Everything the routes share: the model, the analysis pool and worker processes, the
    upload folder, the examples and the limits (app.extensions["facs"])."""

    def __init__(self, source: str, model: Model, pool: AnalysisPool, procs: WorkerProcesses,
                 upload_dir: Path, cache_dir: Path, limits: dict, synth_root: Path | None,
                 real_dir: Path | None):  # fmt: skip
        self.source, self.model, self.pool, self.procs = source, model, pool, procs
        self.model_info = describe_model(model, source)
        self.upload_dir, self.cache_dir, self.limits = upload_dir, cache_dir, limits
        self.synth_root, self.real_dir = synth_root, real_dir
        self.web_dir = WEB_DIR
        self.started = time.time()
        self.durations: list[float] = []  # recent analysis times, for Retry-After
        self._listing: dict = {"at": -1e9, "examples": {}}
        self.closing = False  # shutting down: new analyses are refused with 503

    def retry_after(self) -> str:
        recent = self.durations[-8:]
        typical = sum(recent) / len(recent) if recent else 5.0
        return str(max(1, min(60, math.ceil(typical))))

    def _analyse(self, job: Job, path: Path, name: str, limit: float, streams, preview: bool):
        """Runs on a pool thread, which waits for a worker process to do the analysis."""
        t0 = time.time()
        target = None
        if preview:
            # Deleted with the job (DELETE /api/jobs/<id>, pruning, shutdown).
            target = self.upload_dir / f"{job.id}.preview.webm"
            job.files += [target, target.with_suffix(".part.webm")]
        result = self.procs.run(job, path, name, limit, streams, target)
        self.durations.append(time.time() - t0)
        del self.durations[:-32]
        if result.pop("preview", False):
            result["preview_url"] = f"/api/jobs/{job.id}/video"
        result["job"] = job.id
        result["csv_url"] = f"/api/jobs/{job.id}?format=csv"
        return result

    def start(
        self, path: Path, name: str, streams, limit: float | None = None, preview: bool = False
    ) -> Job | None:
        """Queue the analysis of `path` (removed afterwards); with `preview`, a copy the
        browser can play is made when it cannot play `path`. None when the pool is full or the
        server is shutting down."""
        limit = self.limits["max_seconds"] if limit is None else limit
        if self.closing:
            path.unlink(missing_ok=True)
            return None
        try:
            return self.pool.submit(
                lambda job: self._analyse(job, path, name, limit, streams, preview),
                cleanup=lambda: path.unlink(missing_ok=True),
            )
        except PoolFull:
            return None

    def examples(self) -> dict[str, Example]:
        """The example whitelist, rescanned at most every 30 s (a corpus may be large)."""
        if time.time() - self._listing["at"] > 30:
            found = list_examples(self.synth_root, self.real_dir)
            self._listing = {"at": time.time(), "examples": {e.id: e for e in found}}
        return self._listing["examples"]

    def example(self, example_id: str) -> Example | None:
        if not EXAMPLE_ID.match(example_id):
            return None
        return self.examples().get(example_id)  # whitelist: only ids of clips found on disk

    def drain(self, grace: float) -> bool:
        """Refuse new analyses and wait (at most `grace` seconds) for those accepted to end;
        True when they all did."""
        self.closing = True
        deadline = time.time() + grace
        while time.time() < deadline:
            busy = self.pool.busy()
            if busy["running"] == 0 and busy["waiting"] == 0:
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        self.closing = True
        self.procs.close()
        self.pool.shutdown()


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
    models_dir: Path = MODELS_DIR,
    warm_examples: bool = True,
    warm_workers: bool = True,
):
    """The Flask app. `model` is a built-in model name or a model folder / name under
    `models_dir` (default: the built-in real-face model `face`).

    Uploads go to `upload_dir` (default: a private temp folder removed at exit) under
    server-generated names and are deleted after analysis; transcoded example clips are
    cached in `cache_dir` (default: facs' cache folder). `warm_examples` transcodes the
    examples and `warm_workers` starts the worker processes (each loads the model) right away,
    in the background. `close_app(app)` stops the worker processes.

    The workers are spawned processes: a script that calls create_app must do so under
    `if __name__ == "__main__":` (Python re-imports the main module in each worker).
    """
    source = str(model) if model is not None else default_model()
    try:
        loaded = load_model(source, models_dir)
    except FacsError:
        raise
    except Exception as exc:  # a broken model folder is the operator's input error
        raise FacsError(f"{source}: cannot load the model ({exc})") from exc
    if not (WEB_DIR / "index.html").is_file():
        raise FacsError(f"{WEB_DIR}: the web page (index.html) is missing")
    if upload_dir is None:
        sweep_stale_upload_dirs()
        # mode 0700; the pid in the name lets a later server remove it after a kill -9
        upload_dir = Path(tempfile.mkdtemp(prefix=f"facs-uploads-{os.getpid()}-"))
        atexit.register(shutil.rmtree, upload_dir, True)
    upload_dir.mkdir(parents=True, exist_ok=True)
    real_dir = examples_dir() if real_dir is None else real_dir
    cache_dir = cache_dir or facs_cache() / "web"

    app = Flask("facs.web.app", static_folder=str(WEB_DIR / "static"), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    pool = AnalysisPool(workers=workers, queue=queue)
    procs = WorkerProcesses(str(loaded.folder or source), workers, pool.get)
    if warm_workers:
        procs.warm()
    limits = {"max_upload_mb": max_upload_mb, "max_seconds": max_seconds}
    st = DemoState(source, loaded, pool, procs, upload_dir, cache_dir, limits, synth_root, real_dir)
    if warm_examples:
        # Transcode the examples the browser cannot play now, not on the first click.
        threading.Thread(
            target=warm_cache,
            args=(list(st.examples().values()), cache_dir),
            daemon=True,
            name="facs-warm-examples",
        ).start()
    app.extensions["facs"] = st
    app.register_blueprint(bp)
    app.after_request(security_headers)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, internal_error)
    return app


def security_headers(resp):
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; media-src 'self' blob:; img-src 'self' data: blob:; "
        "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'",
    )
    return resp


def too_large(_exc):
    limit = current_app.extensions["facs"].limits["max_upload_mb"]
    return error(413, f"upload too large: the limit is {limit:g} MB")


def http_error(exc: HTTPException):
    if request.path.startswith("/api/"):
        return error(exc.code or 500, exc.description or exc.name)
    return exc


def internal_error(exc: Exception):
    current_app.logger.exception("unhandled error")
    return error(500, f"internal error: {exc.__class__.__name__}")


# ---------------------------------------------------------------------------------------------
# Serving


def close_app(app) -> None:
    """Stop the app's analysis worker processes and threads."""
    app.extensions["facs"].close()


def graceful_stop(state: DemoState, grace: float = 60.0) -> None:
    """On SIGTERM (a service manager's stop): refuse new analyses with 503, let the accepted
    ones finish and their answers go out, then end the main loop (as Ctrl-C does)."""
    state.drain(grace)
    time.sleep(1.0)  # the last answers leave through the still-running loop
    _thread.interrupt_main()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", type=int, default=9000, help="port (default 9000)")
    parser.add_argument(
        "--model",
        default=None,
        help="built-in model (face: real faces, the default; blendshapes; geometry) or a model "
        "folder / name under models/",
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
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=REQUEST_TIMEOUT,
        help=f"seconds a client may take to send a request (default {REQUEST_TIMEOUT:g})",
    )
    parser.add_argument(
        "--per-peer",
        type=int,
        default=PER_PEER,
        help=f"requests one address may have half-sent at once (default {PER_PEER})",
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
    info = app.extensions["facs"].model_info
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
    print(f"facs serve: the model learned {info['faces']}")
    if info["synthetic"]:
        print("facs serve: WARNING: a model of drawn faces; on a webcam or real video its "
              "numbers are unmeasured (the built-in real-face model: --model face)")  # fmt: skip
    print(
        f"facs serve: {args.workers} workers + {args.queue} waiting, uploads <= "
        f"{args.max_upload_mb:g} MB, clips <= {args.max_seconds:g} s"
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"facs serve: WARNING: listening on {args.host}; the demo has no authentication")
    # A service manager stops us with SIGTERM: drain (new analyses get 503, accepted ones
    # finish), then leave through the same path as Ctrl-C, so that the workers stop and the
    # private upload folder is removed (atexit).
    state = app.extensions["facs"]
    signal.signal(
        signal.SIGTERM,
        lambda *_: threading.Thread(target=graceful_stop, args=(state,), daemon=True).start(),
    )
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
        server = make_server(
            app, args.host, args.port, per_peer=args.per_peer, request_timeout=args.request_timeout
        )
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
