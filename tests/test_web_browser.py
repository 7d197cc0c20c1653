"""The web demo in a real browser: headless Debian Chromium driven by Playwright, a fake camera
playing a real face video. Record / example clip / upload, each to the results: the top-5 list,
the timeline drawn, a click on the timeline seeking the video to that frame. Screenshots go to
test-artifacts/ (look at them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from web_helpers import cut_clip, write_y4m

from facs.web.app import create_app
from facs.web.media import browser_playable
from facs.web.server import BackgroundServer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory, examples_dir):
    tmp = tmp_path_factory.mktemp("web-browser")
    app = create_app(
        None,  # the default: the built-in real-face model
        workers=1,  # one analysis at a time is all a browser asks for
        queue=2,
        max_seconds=12,
        synth_root=None,
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


@pytest.fixture
def page(browser, server):
    # bypass_csp: the page forbids eval, which Playwright's wait_for_function(str) uses.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(server.url + "/")
    pg.wait_for_selector("#model-info.ready")
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
    _shot(page, "web-upload-results.png")


def test_upload_not_a_video_shows_the_error(page, tmp_path):
    junk = tmp_path / "holiday.mp4"
    junk.write_text("this is not a video, whatever its name says\n" * 50)
    page.click("#tab-upload")
    page.set_input_files("#file-input", str(junk))
    page.wait_for_function("document.body.dataset.state === 'error'", timeout=20_000)
    assert "not a video" in page.inner_text("#error")
    assert page.locator("#results").is_hidden()
