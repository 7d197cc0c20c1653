"""The REST API and the page: one small named function per route.

    GET  /                           the page (web/index.html)
    GET  /api/health                 liveness, model name, pool load
    GET  /api/model                  the active model: labels, streams, what it was trained on
    POST /api/predict                multipart field `video` -> per-frame AU probabilities
    GET  /api/examples               example clips present on this machine
    POST /api/examples/<id>          analyse an example clip
    GET  /api/examples/<id>/video    the example as the browser can play it
    GET  /api/jobs/<id>              progress / result of an analysis started with ?async=1
    GET  /api/jobs/<id>/video        the upload as the browser can play it (when it could not)
    DELETE /api/jobs/<id>            forget a finished analysis and delete its preview

A result is JSON by default; `?format=csv` (or `Accept: text/csv`) on POST /api/predict, POST
/api/examples/<id> and GET /api/jobs/<id> answers the per-frame table instead, the same bytes
`facs analyze` writes (facs.analysis.table), as a download; `?format=json` downloads the JSON.

Every handler reads the server's state (facs.web.app.DemoState) from the app; analyses run in
the worker processes (facs.web.worker) through the bounded pool (facs.web.jobs).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import time
from pathlib import Path

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    request,
    send_file,
    send_from_directory,
)
from werkzeug.utils import secure_filename

from facs.analysis.table import result_csv
from facs.web.media import browser_playable

bp = Blueprint("facs", __name__)


def state():
    return current_app.extensions["facs"]


def error(status: int, message: str, **headers):
    """The JSON error every API failure answers with: {"error", "status"}."""
    resp = jsonify({"error": message, "status": status})
    resp.status_code = status
    for k, v in headers.items():
        resp.headers[k.replace("_", "-")] = v
    return resp


def requested_streams() -> list[str] | None:
    """?streams=a,b: a subset of the model's streams (ValueError names a wrong one)."""
    raw = request.args.get("streams", "").strip()
    if not raw:
        return None
    names = [s.strip() for s in raw.split(",") if s.strip()]
    have = state().model_info["streams"]
    unknown = [s for s in names if s not in have]
    if unknown or not names:
        raise ValueError(
            f"unknown stream(s) {', '.join(unknown) or raw!r}; this model has {', '.join(have)}"
        )
    return names


def wanted_format() -> str | None:
    """'csv' or 'json' for a download (?format=, else an Accept header preferring CSV), None for
    the plain JSON answer; ValueError for another format."""
    fmt = request.args.get("format", "").strip().lower()
    if fmt:
        if fmt not in ("csv", "json"):
            raise ValueError(f"unknown format {fmt!r}; use csv or json")
        return fmt
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return "csv" if best == "text/csv" else None


def download(result: dict, fmt: str | None):
    """The result as JSON (fmt None), or as a CSV / JSON file named after the clip."""
    if fmt is None:
        return jsonify(result)
    stem = secure_filename(Path(str(result.get("video") or "result")).stem) or "result"
    if fmt == "csv":
        body, mime = result_csv(result), "text/csv; charset=utf-8"
    else:
        body, mime = json.dumps(result), "application/json"
    return Response(
        body, mimetype=mime, headers={"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'}
    )


def respond(job):
    """202 with the job for ?async=1, else wait for the analysis and answer its result."""
    if job is None:
        if state().closing:
            return error(503, "the server is shutting down; try again later", Retry_After="30")
        return error(503, "all analysis workers are busy, try again shortly",
                     Retry_After=state().retry_after())  # fmt: skip
    if request.args.get("async") in ("1", "true", "yes"):
        resp = jsonify({"job": job.id, "url": f"/api/jobs/{job.id}", **job.public()})
        resp.status_code = 202
        return resp
    job.done_event.wait()
    if job.error is not None:
        return error(*job.error)
    return download(job.result, wanted_format())


@bp.get("/")
def index():
    return send_from_directory(state().web_dir, "index.html", max_age=0)


@bp.get("/api/health")
def health():
    s = state()
    return jsonify(
        {
            "status": "closing" if s.closing else "ok",
            "model": s.model_info["name"],
            "uptime_s": round(time.time() - s.started, 1),
            "pool": s.pool.busy(),
            "limits": s.limits,
        }
    )


@bp.get("/api/model")
def model():
    s = state()
    return jsonify({**s.model_info, "limits": s.limits})


@bp.post("/api/predict")
def predict():
    try:
        streams = requested_streams()
        wanted_format()
    except ValueError as exc:
        return error(400, str(exc))
    upload = request.files.get("video")
    if upload is None:
        return error(400, "send the clip as multipart/form-data in the field 'video'")
    # A server-made name in the private folder: the client's file name is never used.
    path = state().upload_dir / f"{secrets.token_hex(16)}.upload"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(upload.stream, f, 1 << 20)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    name = secure_filename(upload.filename or "") or "upload"
    return respond(state().start(path, name, streams, preview=True))


@bp.get("/api/examples")
def examples():
    return jsonify({"examples": [e.public() for e in state().examples().values()]})


@bp.post("/api/examples/<example_id>")
def example_predict(example_id: str):
    s = state()
    ex = s.example(example_id)
    if ex is None:
        return error(404, f"no example clip with id {example_id!r}")
    try:
        streams = requested_streams()
        wanted_format()
    except ValueError as exc:
        return error(400, str(exc))
    # Analyse a private copy, so that the upload path's cleanup logic applies unchanged.
    path = s.upload_dir / f"{secrets.token_hex(16)}.upload"
    shutil.copyfile(ex.path, path)
    # The clip length limit guards uploads; the operator's own examples may be longer.
    return respond(s.start(path, ex.id, streams, limit=math.inf))


@bp.get("/api/examples/<example_id>/video")
def example_video(example_id: str):
    s = state()
    ex = s.example(example_id)
    if ex is None:
        return error(404, f"no example clip with id {example_id!r}")
    playable, mime = browser_playable(ex.path, s.cache_dir)
    return send_file(playable, mimetype=mime, conditional=True, max_age=3600)


def find_job(job_id: str):
    return state().pool.get(job_id) if job_id.isalnum() and len(job_id) <= 64 else None


NO_JOB = "no such analysis (finished results are kept for 10 minutes)"


@bp.get("/api/jobs/<job_id>")
def job(job_id: str):
    found = find_job(job_id)
    if found is None:
        return error(404, NO_JOB)
    try:
        fmt = request.args.get("format") and wanted_format()
    except ValueError as exc:
        return error(400, str(exc))
    if fmt:
        if found.state != "done":
            return error(409, f"the analysis is {found.state}, not done: no result to download")
        return download(found.result, fmt)
    body = found.public()
    if found.state == "done":
        body["result"] = found.result
    return jsonify(body)


@bp.get("/api/jobs/<job_id>/video")
def job_video(job_id: str):
    found = find_job(job_id)
    preview = found.files[0] if found is not None and found.files else None
    if found is None or found.state != "done" or preview is None or not preview.is_file():
        return error(404, "no preview for this analysis (the browser plays the upload itself)")
    return send_file(preview, mimetype="video/webm", conditional=True, max_age=0)


@bp.delete("/api/jobs/<job_id>")
def forget_job(job_id: str):
    if not (job_id.isalnum() and len(job_id) <= 64) or not state().pool.remove(job_id):
        return error(404, "no finished analysis with this id")
    return "", 204
