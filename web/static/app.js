// facs web demo: record / upload / pick a clip, analyse it on the server, show the AUs over time.
// No libraries: the timeline is drawn on a <canvas>.
"use strict";

const $ = (id) => document.getElementById(id);
// The first five colours go to the clip's top 5; AUs the user adds take the next free one.
const PALETTE = ["#3b5bdb", "#f76707", "#12b886", "#ae3ec9", "#e03131",
  "#0c8599", "#5c940d", "#c2255c", "#6741d9", "#e8590c"];
const Y_MAX = 1.06; // headroom: a line at probability 1.0 stays clear of the plot's top edge

// Everything the page knows; exposed for the browser tests and for curious users.
const state = {
  model: null,
  limits: { max_upload_mb: 64, max_seconds: 30 },
  result: null, // normalised analysis result (see normalise())
  selectedFrame: null,
  videoReady: false,
  busy: false,
  stream: null,
  recorder: null,
  objectUrl: null,
  shown: [], // AU codes on the timeline, in legend order
  colors: {}, // code -> line colour
  annotation: null, // {code: [[first, last], ...]} of a synthetic example, else null
  source: null, // what the current clip is: "camera", "upload", "synthetic", "real"
  localFailed: false, // the browser could not play the local file (no picture)
};
window.facs = state;

// ---------------------------------------------------------------------------------- helpers

function show(el, on = true) { el.classList.toggle("hidden", !on); }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function auLabel(code) {
  const lab = state.model && state.model.labelNames && state.model.labelNames[code];
  return lab || `AU${code}`;
}

function splitLabel(code) {
  // "AU12 Lip Corner Puller" -> ["AU12", "Lip Corner Puller"]
  const full = auLabel(code);
  const i = full.indexOf(" ");
  return i < 0 ? [full, ""] : [full.slice(0, i), full.slice(i + 1)];
}

function fmtPct(p) { return p == null ? "–" : `${Math.round(p * 100)} %`; }

function fmtTime(t) { return `${t.toFixed(2)} s`; }

// ---------------------------------------------------------------------------------- tabs

document.querySelectorAll(".tab").forEach((tab) => {
  tab.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
    document.querySelectorAll(".panel").forEach((p) => show(p, p.id === tab.dataset.panel));
  });
});

// ---------------------------------------------------------------------------------- model

async function loadModel() {
  try {
    const r = await fetch("/api/model");
    const m = await r.json();
    m.labelNames = {};
    for (const l of m.labels || []) m.labelNames[l.code] = l.label;
    state.model = m;
    if (m.limits) state.limits = m.limits;
    $("model-name").textContent = `Model ${m.name}`;
    // What the model is, what faces it learned, and what its numbers mean: no separators to
    // strand at the start of a wrapped line; each fact is its own span.
    const box = $("model-detail");
    box.textContent = "";
    const fact = (text, cls) => box.appendChild(el("span", cls ? `fact ${cls}` : "fact", text));
    if (m.kind) fact(m.kind);
    // The faces it learned, short (the details are in the pill's tooltip).
    const faces = String(m.faces || "").replace(/\s*\(.*\)\s*$/, "");
    if (m.synthetic) fact("learned: drawn faces (facs synth)", "warn");
    else fact(faces.startsWith("no training") ? faces.split(":")[0] : `learned: ${faces}`);
    const f1 = testF1(m.metrics);
    if (f1 != null) {
      fact(m.synthetic
        ? `F1 ${f1.toFixed(2)} on held-out drawn faces, unmeasured on real ones`
        : `test macro F1 ${f1.toFixed(2)}`);
    }
    fact(`${(m.labels || []).length} AUs`);
    $("model-info").classList.toggle("synthetic", !!m.synthetic);
    $("footer-model").textContent = `model ${m.name}: ${m.kind || (m.streams || []).join(" + ")}`;
    buildStreamPicker(m.streams || []);
    $("model-info").classList.add("ready");
    $("model-info").title = [m.description, m.faces, m.trained_on && m.trained_on.data &&
      `trained on ${m.trained_on.data}`].filter(Boolean).join("; ") || m.source || "";
  } catch (e) {
    $("model-name").textContent = "model unavailable";
  }
  $("rec-limit").textContent = String(recordLimit());
  $("upload-limits").textContent =
    `Up to ${state.limits.max_upload_mb} MB and ${state.limits.max_seconds} s; any format the ` +
    "server can decode (mp4, webm, avi, mov, mkv…).";
}

function testF1(metrics) {
  // model.json keeps each stream's test summary ({fixed, calibrated}); show the fused one.
  if (!metrics || typeof metrics !== "object") return null;
  const entry = metrics.fusion || metrics.fused || metrics.fuse;
  if (!entry || typeof entry !== "object") return null;
  for (const mode of ["calibrated", "fixed"]) {
    const sm = entry[mode] || entry;
    const v = sm && (sm.macro_f1 ?? sm.f1_macro);
    if (typeof v === "number") return v;
  }
  return null;
}

function buildStreamPicker(streams) {
  // With several streams the user may analyse with a subset (the API's ?streams=).
  const box = $("stream-picker");
  if (streams.length < 2) return;
  for (const s of streams) {
    const lab = el("label");
    const cb = el("input");
    cb.type = "checkbox";
    cb.checked = true;
    cb.value = s;
    lab.appendChild(cb);
    lab.appendChild(document.createTextNode(s));
    box.appendChild(lab);
  }
  show(box, true);
}

function streamsQuery() {
  const boxes = [...document.querySelectorAll("#stream-picker input")];
  const on = boxes.filter((b) => b.checked).map((b) => b.value);
  if (!boxes.length || on.length === boxes.length) return "";
  if (!on.length) throw new Error("choose at least one stream");
  return `&streams=${encodeURIComponent(on.join(","))}`;
}

function recordLimit() { return Math.max(1, Math.min(10, Math.floor(state.limits.max_seconds))); }

// ---------------------------------------------------------------------------------- examples

async function loadExamples() {
  const box = $("examples");
  try {
    const r = await fetch("/api/examples");
    const { examples } = await r.json();
    box.textContent = "";
    if (!examples.length) {
      box.appendChild(el("p", "hint",
        "No example clips on this server (generate the corpus with `facs synth data/synth`, " +
        "fetch real clips with `facs fetch-examples`)."));
      return;
    }
    for (const ex of examples) {
      const card = el("button", "example-card");
      card.dataset.id = ex.id;
      card.title = ex.description || ex.title;
      card.appendChild(el("span", "title", ex.title));
      const meta = el("span", "hint");
      meta.appendChild(el("span", "tag" + (ex.source === "real" ? " real" : ""), ex.source));
      if (ex.annotated && ex.annotated.length) {
        meta.appendChild(document.createTextNode(
          "annotated: " + ex.annotated.map((c) => `AU${c}`).join(", ")));
      }
      card.appendChild(meta);
      card.addEventListener("click", () => analyseExample(ex));
      box.appendChild(card);
    }
  } catch (e) {
    box.textContent = "Could not load the examples.";
  }
}

function analyseExample(ex) {
  if (state.busy) return;
  document.querySelectorAll(".example-card").forEach((c) =>
    c.classList.toggle("active", c.dataset.id === ex.id));
  setVideoSource(ex.video_url, false);
  const spans = ex.annotation && Object.keys(ex.annotation).length ? ex.annotation : null;
  submit(`/api/examples/${encodeURIComponent(ex.id)}?async=1`, null, ex.title,
    { source: ex.source, annotation: spans });
}

// ---------------------------------------------------------------------------------- upload

const fileInput = $("file-input");
fileInput.addEventListener("change", () => {
  if (fileInput.files.length) analyseFile(fileInput.files[0]);
  fileInput.value = "";
});
const dz = $("dropzone");
dz.addEventListener("dragover", (e) => { e.preventDefault(); dz.classList.add("over"); });
dz.addEventListener("dragleave", () => dz.classList.remove("over"));
dz.addEventListener("drop", (e) => {
  e.preventDefault();
  dz.classList.remove("over");
  if (e.dataTransfer.files.length) analyseFile(e.dataTransfer.files[0]);
});

function analyseFile(file, name, source = "upload") {
  if (state.busy) return;
  const maxBytes = state.limits.max_upload_mb * 1024 * 1024;
  if (file.size > maxBytes) {
    showError(`This file is ${(file.size / 1048576).toFixed(1)} MB; the limit is ` +
      `${state.limits.max_upload_mb} MB.`);
    return;
  }
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = URL.createObjectURL(file);
  setVideoSource(state.objectUrl, true);
  const form = new FormData();
  form.append("video", file, name || file.name || "clip");
  submit("/api/predict?async=1", form, name || file.name, { source, annotation: null });
}

// ---------------------------------------------------------------------------------- record

async function startCamera() {
  if (state.stream) return state.stream;
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    throw new Error("This browser cannot record video (no getUserMedia / MediaRecorder).");
  }
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: 640 }, height: { ideal: 360 } }, audio: false,
  });
  state.stream = stream;
  $("camera-preview").srcObject = stream;
  show($("camera-off"), false);
  $("btn-camera").textContent = "Camera off";
  $("btn-record").disabled = false;
  return stream;
}

function stopCamera() {
  // Releases the device: the browser's camera indicator goes out.
  if (state.recorder && state.recorder.state === "recording") return;
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $("camera-preview").srcObject = null;
  show($("camera-off"), true);
  $("btn-camera").textContent = "Start camera";
}

$("btn-camera").addEventListener("click", () => {
  if (state.stream) stopCamera();
  else startCamera().catch(cameraError);
});
$("btn-record").addEventListener("click", () => record().catch(cameraError));
$("btn-stop").addEventListener("click", () => stopRecording());

function cameraError(e) {
  const msg = e && e.name === "NotAllowedError"
    ? "Camera access was refused; allow it in the browser's address bar and try again."
    : `Camera: ${e && e.message ? e.message : e}`;
  showError(msg);
  resetRecordButtons();
}

function resetRecordButtons() {
  $("btn-record").disabled = false;
  $("btn-stop").disabled = true;
  show($("countdown"), false);
  show($("rec-indicator"), false);
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function record() {
  const stream = await startCamera();
  $("btn-record").disabled = true;
  $("btn-stop").disabled = false;
  hideError();
  const cd = $("countdown");
  state.cancelled = false;
  show(cd, true);
  for (let n = 3; n > 0; n--) {
    cd.textContent = String(n);
    await sleep(1000);
    if (state.cancelled) { resetRecordButtons(); return; }
  }
  show(cd, false);
  const types = ["video/webm;codecs=vp8", "video/webm;codecs=vp9", "video/webm", "video/mp4"];
  const mimeType = types.find((t) => MediaRecorder.isTypeSupported(t)) || "";
  const rec = new MediaRecorder(stream, mimeType ? { mimeType } : undefined);
  const chunks = [];
  rec.ondataavailable = (e) => { if (e.data && e.data.size) chunks.push(e.data); };
  rec.onstop = () => {
    clearInterval(state.recTimer);
    resetRecordButtons();
    const type = rec.mimeType || mimeType || "video/webm";
    const blob = new Blob(chunks, { type });
    const ext = type.includes("mp4") ? "mp4" : "webm";
    state.recording = { bytes: blob.size, seconds: (performance.now() - state.recStart) / 1000 };
    state.recorder = null;
    stopCamera(); // the clip is taken: the camera goes off (Record turns it on again)
    analyseFile(blob, `recording.${ext}`, "camera");
  };
  state.recorder = rec;
  state.recStart = performance.now();
  rec.start(250);
  show($("rec-indicator"), true);
  const limit = recordLimit();
  state.recTimer = setInterval(() => {
    const s = (performance.now() - state.recStart) / 1000;
    $("rec-time").textContent = `${s.toFixed(1)} s / ${limit} s`;
    if (s >= limit) stopRecording();
  }, 100);
}

function stopRecording() {
  state.cancelled = true;
  const rec = state.recorder;
  if (rec && rec.state === "recording") rec.stop();
  else { resetRecordButtons(); state.recorder = null; }
}

// ---------------------------------------------------------------------------------- analysis

function setProgress(stage, frac) {
  show($("progress"), true);
  $("progress-stage").textContent = stage;
  $("progress-pct").textContent = frac == null ? "" : `${Math.round(frac * 100)} %`;
  $("progress-fill").style.width = `${Math.round((frac == null ? 0.05 : frac) * 100)}%`;
}

function showError(msg) {
  const box = $("error");
  box.textContent = msg;
  show(box, true);
}

function hideError() { show($("error"), false); }

function post(url, form) {
  // XMLHttpRequest rather than fetch: it reports upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setProgress("Uploading", e.loaded / e.total);
    };
    xhr.onload = () => resolve({ status: xhr.status, body: xhr.response,
      retryAfter: xhr.getResponseHeader("Retry-After") });
    xhr.onerror = () => reject(new Error("the server could not be reached"));
    xhr.send(form);
  });
}

async function submit(url, form, title, about) {
  if (state.busy) return;
  state.busy = true;
  hideError();
  forgetResult();
  show($("results"), false);
  setProgress(form ? "Uploading" : "Starting", 0);
  $("progress").scrollIntoView({ block: "nearest" });
  document.body.dataset.state = "analysing";
  try {
    let { status, body, retryAfter } = await post(url + streamsQuery(), form);
    if (status === 503) {
      throw new Error(`The server is busy; try again in ${retryAfter || "a few"} seconds.`);
    }
    if (status !== 202 && status !== 200) {
      throw new Error((body && body.error) || `the server answered ${status}`);
    }
    if (status === 202) body = await poll(body.url);
    render(body, title, about || {});
    document.body.dataset.state = "done";
  } catch (e) {
    showError(`Could not analyse ${title ? `“${title}”` : "the clip"}: ${e.message}`);
    document.body.dataset.state = "error";
  } finally {
    state.busy = false;
    show($("progress"), false);
  }
}

function jobUrl() {
  const raw = state.result && state.result.raw;
  return raw && raw.job ? `/api/jobs/${encodeURIComponent(raw.job)}` : null;
}

function forgetResult(keepalive = false) {
  // The server keeps a result (and the preview of an upload) only while the page shows it.
  const url = jobUrl();
  if (url) fetch(url, { method: "DELETE", keepalive }).catch(() => {});
}
window.addEventListener("pagehide", () => forgetResult(true));

async function poll(url) {
  for (;;) {
    const r = await fetch(url);
    const job = await r.json();
    if (!r.ok) throw new Error(job.error || `the server answered ${r.status}`);
    if (job.state === "done") return job.result;
    if (job.state === "error") throw new Error(job.error);
    const stage = job.state === "queued" ? "Waiting for a free worker" : (job.stage || "Analysing");
    setProgress(stage.charAt(0).toUpperCase() + stage.slice(1), job.progress);
    await sleep(250);
  }
}

// ---------------------------------------------------------------------------------- results

function topList(list) {
  return (list || []).map((t) => ({ code: String(t.code), prob: Number(t.prob) }));
}

function normalise(raw) {
  const labels = (raw.labels || []).map(String);
  const frames = (raw.per_frame || []).map((f, i) => {
    const probs = Object.fromEntries(labels.map((c, k) => [c, f.probs[k]]));
    return { index: f.index ?? i, time: Number(f.time ?? 0), face: !!f.face, probs,
      top5: topList(f.top5) };
  });
  const fps = Number(raw.fps) || 25;
  const n = frames.length;
  const step = n > 1 ? (frames[n - 1].time - frames[0].time) / (n - 1) || 1 / fps : 1 / fps;
  const thresholds = Object.fromEntries(labels.map((c) => [c, (raw.thresholds || {})[c] ?? 0.5]));
  // Share of the face frames at or above each AU's threshold ("present" frame by frame).
  const faceFrames = frames.filter((f) => f.face);
  const share = Object.fromEntries(labels.map((c) => [c, faceFrames.length
    ? faceFrames.filter((f) => f.probs[c] >= thresholds[c]).length / faceFrames.length : 0]));
  return { raw, labels, frames, fps, step, thresholds, share, clip: raw.clip || {},
    top5: topList(raw.top5), end: n ? frames[n - 1].time + step : 0, message: raw.message || null };
}

function render(raw, title, about) {
  const res = normalise(raw);
  state.result = res;
  state.selectedFrame = null;
  state.source = about.source || null;
  state.annotation = about.annotation || null;
  show($("results"), true);

  // The AUs on the timeline: the clip's top 5, then the annotated ones of a synthetic example.
  state.shown = [];
  state.colors = {};
  for (const t of res.top5) addShown(t.code, false);
  for (const code of Object.keys(state.annotation || {})) {
    if (res.labels.includes(code)) addShown(code, false);
  }

  // Top-5 list: clip score, threshold tick, share of frames.
  const ol = $("top5");
  ol.textContent = "";
  res.top5.forEach((t) => {
    const li = el("li");
    li.dataset.code = t.code;
    const row = el("div", "row");
    const [code, name] = splitLabel(t.code);
    const lab = el("span", "au");
    lab.appendChild(el("span", "code", code + " "));
    lab.appendChild(el("span", "name", name));
    const thr = res.thresholds[t.code];
    if (t.prob >= thr) lab.appendChild(el("span", "present", "present"));
    row.appendChild(lab);
    row.appendChild(el("span", "pct", fmtPct(t.prob)));
    const track = el("div", "track");
    const val = el("div", "val");
    val.style.width = `${Math.max(0, Math.min(1, t.prob || 0)) * 100}%`;
    val.style.background = state.colors[t.code];
    const tick = el("div", "tick");
    tick.style.left = `${Math.max(0, Math.min(1, thr)) * 100}%`;
    tick.title = `threshold ${thr}`;
    track.appendChild(val);
    track.appendChild(tick);
    li.appendChild(row);
    li.appendChild(track);
    li.appendChild(el("div", "share",
      `≥ threshold ${+thr.toFixed(2)} in ${fmtPct(res.share[t.code])} of face frames`));
    ol.appendChild(li);
  });

  const faces = res.frames.filter((f) => f.face).length;
  const msgs = [];
  if (res.message) msgs.push(res.message);
  const m = state.model || {};
  if (m.synthetic && (state.source === "camera" || state.source === "upload")) {
    msgs.push(`Model ${m.name} learned drawn faces (facs synth), not real ones: on a ` +
      `${state.source === "camera" ? "camera recording" : "video you upload"} its numbers are ` +
      "unmeasured and may mean little. The built-in real-face model (facs serve --model face) " +
      "is made for real faces.");
  } else if (!m.synthetic && state.source === "synthetic") {
    msgs.push(`Model ${m.name} learned real faces; this clip is a drawn face, outside what it ` +
      "learned. The bands under the timeline are the clip's annotation.");
  }
  const msg = $("message");
  msg.textContent = "";
  for (const t of msgs) msg.appendChild(el("p", null, t));
  show(msg, msgs.length > 0);

  const facts = $("clip-facts");
  facts.textContent = "";
  const add = (k, v) => { facts.appendChild(el("dt", null, k)); facts.appendChild(el("dd", null, v)); };
  if (title) add("clip", title);
  add("frames", `${res.frames.length} at ${res.fps.toFixed(res.fps % 1 ? 2 : 0)} fps (${fmtTime(res.end)})`);
  add("face found", `${faces} of ${res.frames.length} frames`);
  if (raw.model) {
    const faces = String(raw.trained_on || "").replace(/\s*\(.*\)\s*$/, "");
    add("model", faces ? `${raw.model}, learned ${faces}` : raw.model);
  }
  if (raw.elapsed_s != null) add("analysis", `${raw.elapsed_s.toFixed(1)} s on the server`);

  // Downloads: the CSV is the table `facs analyze` writes for this clip.
  const url = jobUrl();
  show($("downloads"), !!url);
  if (url) {
    $("dl-csv").href = `${url}?format=csv`;
    $("dl-json").href = `${url}?format=json`;
  }

  buildLegend();
  useVideo();
  drawTimeline();
  document.body.dataset.results = String(Date.now());
  $("results").scrollIntoView({ block: "start" });
}

// ---------------------------------------------------------------------------------- AU picker

function addShown(code, redraw = true) {
  if (state.shown.includes(code)) return;
  const used = new Set(Object.values(state.colors));
  state.colors[code] = PALETTE.find((c) => !used.has(c)) || PALETTE[state.shown.length % PALETTE.length];
  state.shown.push(code);
  if (redraw) { buildLegend(); drawTimeline(); }
}

function removeShown(code) {
  state.shown = state.shown.filter((c) => c !== code);
  delete state.colors[code];
  buildLegend();
  drawTimeline();
}

function buildLegend() {
  const res = state.result;
  const legend = $("legend");
  legend.textContent = "";
  for (const code of state.shown) {
    const chip = el("span", "chip");
    chip.dataset.code = code;
    const sw = el("i");
    sw.style.background = state.colors[code];
    chip.appendChild(sw);
    const [c, name] = splitLabel(code);
    chip.appendChild(el("b", null, c));
    chip.appendChild(el("span", "name", name));
    const x = el("button", "remove", "×");
    x.type = "button";
    x.title = `remove ${c} from the timeline`;
    x.setAttribute("aria-label", x.title);
    x.addEventListener("click", () => removeShown(code));
    chip.appendChild(x);
    legend.appendChild(chip);
  }
  // Every other label of the model, strongest first, to add to the timeline.
  const pick = el("select", "au-add");
  pick.id = "au-add";
  pick.setAttribute("aria-label", "add an action unit to the timeline");
  pick.appendChild(new Option("+ add an AU…", ""));
  const rest = res.labels.filter((c) => !state.shown.includes(c))
    .sort((a, b) => (res.clip[b] ?? 0) - (res.clip[a] ?? 0));
  for (const code of rest) pick.appendChild(new Option(`${auLabel(code)} · ${fmtPct(res.clip[code])}`, code));
  pick.disabled = !rest.length;
  pick.addEventListener("change", () => { if (pick.value) addShown(pick.value); });
  legend.appendChild(pick);
  const keys = el("div", "keys");
  if (res.frames.some((f) => !f.face)) {
    const s = el("span", "noface");
    s.appendChild(el("i"));
    s.appendChild(document.createTextNode("no face"));
    keys.appendChild(s);
  }
  if (annotatedShown().length) {
    const s = el("span", "annot");
    s.appendChild(el("i"));
    s.appendChild(document.createTextNode("annotated (the clip's OAO XML), under the plot"));
    keys.appendChild(s);
  }
  if (keys.childNodes.length) legend.appendChild(keys);
}

function annotatedShown() {
  const a = state.annotation || {};
  return state.shown.filter((c) => a[c] && a[c].length);
}

// ---------------------------------------------------------------------------------- video

const video = $("result-video");

function setVideoSource(url, local) {
  state.videoReady = false;
  state.localFailed = false;
  show($("video-note"), false);
  video.removeAttribute("src");
  video.src = url;
  video.dataset.local = local ? "1" : "0";
  video.load();
  if (local) {
    // Some formats load without an error yet show no picture (HEVC in Chromium: audio only).
    setTimeout(() => {
      if (video.dataset.local === "1" && video.src === url && video.readyState === 0) {
        localFailed();
      }
    }, 4000);
  }
}

function localFailed() {
  state.localFailed = true;
  useVideo();
}

function useVideo() {
  // When the browser cannot play the local file, show the copy the server made, if any.
  const note = $("video-note");
  if (!state.localFailed || video.dataset.local !== "1") return;
  const raw = state.result && state.result.raw;
  if (raw && raw.preview_url) {
    setVideoSource(raw.preview_url, false);
    note.textContent = "This browser cannot play the file's format: showing a copy made on the " +
      "server (deleted with this result).";
    show(note, true);
  } else {
    note.textContent = raw
      ? "This browser cannot play this file's format; the analysis below is complete, only the " +
        "picture is missing."
      : "This browser cannot play this file's format; a playable copy follows the analysis.";
    show(note, true);
  }
}

video.addEventListener("loadedmetadata", () => {
  if (video.dataset.local === "1" && video.videoWidth === 0) { localFailed(); return; }
  // MediaRecorder's webm has no duration in its header (Infinity): seeking far ahead makes
  // the browser scan the file and learn it; then go back to the start.
  if (video.duration === Infinity) {
    const fix = () => {
      video.removeEventListener("durationchange", fix);
      video.currentTime = 0;
      state.videoReady = true;
      drawTimeline();
    };
    video.addEventListener("durationchange", fix);
    video.currentTime = 1e101;
  } else {
    state.videoReady = true;
  }
});

video.addEventListener("error", () => {
  if (video.dataset.local === "1") { localFailed(); return; }
  const note = $("video-note");
  note.textContent = "This browser cannot play this video; the analysis is complete, only the " +
    "picture is missing.";
  show(note, true);
});

function tick() {
  drawTimeline();
  if (!video.paused && !video.ended) requestAnimationFrame(tick);
}
video.addEventListener("play", () => requestAnimationFrame(tick));
video.addEventListener("seeked", drawTimeline);
video.addEventListener("timeupdate", drawTimeline);

function seekToFrame(i) {
  const res = state.result;
  if (!res || !res.frames[i]) return;
  state.selectedFrame = i;
  canvas.dataset.selectedFrame = String(i);
  // Aim at the middle of the frame's display interval, so rounding cannot land on its neighbour.
  let target = res.frames[i].time + res.step / 2;
  if (Number.isFinite(video.duration) && video.duration > 0) {
    target = Math.min(target, Math.max(0, video.duration - 0.001));
  }
  video.pause();
  video.currentTime = target;
  drawTimeline();
}

// ---------------------------------------------------------------------------------- timeline

const canvas = $("timeline");
const tooltip = $("tooltip");
const PAD = { left: 44, right: 14, top: 12, bottom: 30 };
const PLOT_H = 230; // the probability plot; annotation lanes add LANE each below it
const LANE = 13;
const LANE_GAP = 10; // between the plot's 0.0 line and the first lane
let hatch = null;

function hatchPattern(ctx) {
  if (hatch) return hatch;
  const c = document.createElement("canvas");
  c.width = c.height = 8;
  const g = c.getContext("2d");
  g.fillStyle = "#f1f3f7";
  g.fillRect(0, 0, 8, 8);
  g.strokeStyle = "#d5dae3";
  g.lineWidth = 2;
  g.beginPath();
  g.moveTo(-2, 10); g.lineTo(10, -2);
  g.moveTo(-2, 2); g.lineTo(2, -2);
  g.moveTo(6, 10); g.lineTo(10, 6);
  g.stroke();
  hatch = ctx.createPattern(c, "repeat");
  return hatch;
}

function geometry() {
  const w = canvas.clientWidth, h = canvas.clientHeight;
  const res = state.result;
  const end = res && res.end > 0 ? res.end : 1;
  const lanes = annotatedShown();
  const bottom = h - PAD.bottom - (lanes.length ? lanes.length * LANE + LANE_GAP : 0);
  const x = (t) => PAD.left + (t / end) * (w - PAD.left - PAD.right);
  const y = (p) => PAD.top + ((Y_MAX - p) / Y_MAX) * (bottom - PAD.top);
  const tOf = (px) => ((px - PAD.left) / (w - PAD.left - PAD.right)) * end;
  return { w, h, x, y, tOf, end, bottom, lanes };
}

function frameAt(px) {
  const res = state.result;
  if (!res || !res.frames.length) return null;
  const t = geometry().tOf(px);
  // Nearest frame by its centre time.
  let best = 0, bestD = Infinity;
  for (let i = 0; i < res.frames.length; i++) {
    const d = Math.abs(res.frames[i].time + res.step / 2 - t);
    if (d < bestD) { bestD = d; best = i; }
  }
  return best;
}

function drawTimeline() {
  const res = state.result;
  if (!res) return;
  const n = annotatedShown().length;
  const want = `${PLOT_H + PAD.top + PAD.bottom + (n ? n * LANE + LANE_GAP : 0)}px`;
  if (canvas.style.height !== want) canvas.style.height = want;
  const dpr = window.devicePixelRatio || 1;
  const cw = Math.round(canvas.clientWidth * dpr), ch = Math.round(canvas.clientHeight * dpr);
  if (canvas.width !== cw || canvas.height !== ch) { canvas.width = cw; canvas.height = ch; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const { w, h, x, y, end, bottom, lanes } = geometry();
  ctx.clearRect(0, 0, w, h);

  // No-face bands.
  ctx.fillStyle = hatchPattern(ctx);
  let i = 0;
  while (i < res.frames.length) {
    if (res.frames[i].face) { i++; continue; }
    let j = i;
    while (j + 1 < res.frames.length && !res.frames[j + 1].face) j++;
    const x0 = x(res.frames[i].time), x1 = x(res.frames[j].time + res.step);
    ctx.fillRect(x0, PAD.top, Math.max(1, x1 - x0), bottom - PAD.top);
    i = j + 1;
  }

  // Grid and axes.
  ctx.fillStyle = "#667085";
  ctx.lineWidth = 1;
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath();
    ctx.setLineDash(p === 0.5 ? [4, 4] : []);
    ctx.strokeStyle = p === 0.5 ? "#adb5bd" : "#e3e7ef";
    ctx.moveTo(PAD.left, Math.round(y(p)) + 0.5);
    ctx.lineTo(w - PAD.right, Math.round(y(p)) + 0.5);
    ctx.stroke();
    ctx.fillText(p.toFixed(p % 0.5 ? 2 : 1), PAD.left - 6, y(p));
  }
  ctx.setLineDash([]);

  // Annotation lanes: one per shown AU the clip's annotation has, in the AU's colour.
  let bands = 0;
  lanes.forEach((code, k) => {
    const top = bottom + LANE_GAP + k * LANE;
    ctx.fillStyle = "#f4f6fa";
    ctx.fillRect(PAD.left, top, w - PAD.left - PAD.right, LANE - 3);
    ctx.fillStyle = state.colors[code];
    for (const [a, b] of state.annotation[code]) {
      const fa = res.frames[Math.min(a, res.frames.length - 1)];
      const fb = res.frames[Math.min(b, res.frames.length - 1)];
      if (!fa || !fb) continue;
      ctx.fillRect(x(fa.time), top, Math.max(2, x(fb.time + res.step) - x(fa.time)), LANE - 3);
      bands++;
    }
    ctx.textAlign = "right";
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillText(splitLabel(code)[0], PAD.left - 4, top + (LANE - 3) / 2);
  });
  canvas.dataset.bands = String(bands);

  ctx.fillStyle = "#667085";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const stepT = niceStep(end / Math.max(3, Math.floor(w / 90)));
  for (let t = 0; t <= end + 1e-9; t += stepT) {
    const px = x(t);
    ctx.beginPath();
    ctx.strokeStyle = "#c3cbe0";
    ctx.moveTo(px + 0.5, h - PAD.bottom);
    ctx.lineTo(px + 0.5, h - PAD.bottom + 4);
    ctx.stroke();
    ctx.fillText(`${+t.toFixed(2)} s`, px, h - PAD.bottom + 7);
  }

  // One line per shown AU, broken where there is no face; nodes on sparse clips.
  const dots = res.frames.length <= 160;
  for (const code of state.shown) {
    const color = state.colors[code];
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    let pen = false;
    for (const f of res.frames) {
      const p = f.face ? f.probs[code] : null;
      if (p == null) { pen = false; continue; }
      const px = x(f.time + res.step / 2), py = y(p);
      if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      pen = true;
    }
    ctx.stroke();
    if (dots) {
      for (const f of res.frames) {
        const p = f.face ? f.probs[code] : null;
        if (p == null) continue;
        ctx.beginPath();
        ctx.arc(x(f.time + res.step / 2), y(p), 2.2, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
  canvas.dataset.lines = state.shown.join(",");

  // Selected frame and play-head.
  if (state.selectedFrame != null && res.frames[state.selectedFrame]) {
    const f = res.frames[state.selectedFrame];
    ctx.fillStyle = "rgba(59, 91, 219, .12)";
    ctx.fillRect(x(f.time), PAD.top, Math.max(2, x(f.time + res.step) - x(f.time)),
      h - PAD.top - PAD.bottom);
  }
  if (state.videoReady || video.readyState >= 1) {
    const t = Math.min(video.currentTime || 0, end);
    const px = Math.round(x(t)) + 0.5;
    canvas.dataset.marker = String(px); // where the play-head was last drawn (tests read it)
    ctx.strokeStyle = "#1d2433";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(px, PAD.top);
    ctx.lineTo(px, h - PAD.bottom);
    ctx.stroke();
    ctx.fillStyle = "#1d2433";
    ctx.beginPath();
    ctx.moveTo(px - 5, PAD.top - 2);
    ctx.lineTo(px + 5, PAD.top - 2);
    ctx.lineTo(px, PAD.top + 5);
    ctx.closePath();
    ctx.fill();
  }
  canvas.dataset.drawn = String(res.frames.length);
}

function niceStep(raw) {
  const pow = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-6)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * pow) return m * pow;
  return 10 * pow;
}

canvas.addEventListener("click", (e) => {
  const r = canvas.getBoundingClientRect();
  const i = frameAt(e.clientX - r.left);
  if (i != null) seekToFrame(i);
});

canvas.addEventListener("mousemove", (e) => {
  const res = state.result;
  if (!res) return;
  const r = canvas.getBoundingClientRect();
  const px = e.clientX - r.left;
  const i = frameAt(px);
  if (i == null) return;
  const f = res.frames[i];
  tooltip.textContent = "";
  tooltip.appendChild(el("b", null, `frame ${f.index} · ${fmtTime(f.time)}`));
  if (!f.face) {
    tooltip.appendChild(el("div", null, "no face found"));
  } else {
    // The shown AUs at this frame, strongest first, each in its line's colour.
    const rows = state.shown.map((code) => ({ code, prob: f.probs[code] }))
      .sort((a, b) => b.prob - a.prob);
    for (const t of rows) {
      const row = el("div", "tt-row");
      const name = el("span");
      const sw = el("i");
      sw.style.background = state.colors[t.code];
      name.appendChild(sw);
      name.appendChild(document.createTextNode(splitLabel(t.code)[0]));
      row.appendChild(name);
      const on = t.prob >= res.thresholds[t.code];
      row.appendChild(el("span", on ? "on" : null, fmtPct(t.prob) + (on ? " ✓" : "")));
      tooltip.appendChild(row);
    }
    const a = state.annotation || {};
    const truth = Object.keys(a).filter((c) => a[c].some(([s0, s1]) => s0 <= f.index && f.index <= s1));
    if (state.annotation) {
      tooltip.appendChild(el("div", "tt-truth",
        `annotated: ${truth.length ? truth.map((c) => `AU${c}`).join(", ") : "none"}`));
    }
  }
  show(tooltip, true);
  const left = Math.min(px + 14, canvas.clientWidth - tooltip.offsetWidth - 4);
  tooltip.style.left = `${Math.max(0, left)}px`;
  tooltip.style.top = `${Math.max(0, e.clientY - r.top - 20)}px`;
});
canvas.addEventListener("mouseleave", () => show(tooltip, false));
canvas.addEventListener("keydown", (e) => {
  // Arrow keys step through the frames of a focused timeline.
  const res = state.result;
  if (!res || (e.key !== "ArrowLeft" && e.key !== "ArrowRight")) return;
  e.preventDefault();
  const cur = state.selectedFrame ?? 0;
  const next = Math.max(0, Math.min(res.frames.length - 1, cur + (e.key === "ArrowRight" ? 1 : -1)));
  seekToFrame(next);
});
window.addEventListener("resize", drawTimeline);

// ---------------------------------------------------------------------------------- start

loadModel();
loadExamples();
