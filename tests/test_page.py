"""The web page at `/` in a real headless browser: Debian's Chromium, driven by Playwright.

The page runs against the real-weights server (Whisper tiny.en, random-weight diarization) and is
fed hibari's voice: as an uploaded file, and as the microphone (Chromium's fake capture device
plays a WAV file). Every request the page makes is routed through the test, and anything not on
the server's own origin fails the test: the page must fetch nothing from the internet.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
import wave
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests import real_speech as rs

# Measured through the page: 0 for a single sentence (file, json fallback, live), 0.08 on the
# two-sentence clip when tiny.en writes "riverbank" for "river bank". The bound allows a word or
# two more, not a missing sentence (one of the two sentences alone scores about 0.5).
MAX_WER = 0.15
# Chromium's fake capture plays 16-bit PCM WAV. Measured, what the page sends against the clip: a
# 48 kHz file arrives at 66 dB SNR, a 16 kHz one at 31 dB (Chromium upsamples it on the way in).
MIC_RATE = 48000
SEGMENT_LINE = re.compile(r"^\[(\d\d):(\d\d\.\d) → (\d\d):(\d\d\.\d)\] (?:\((.+?)\) )?(.+)$")


def wer(reference: str, hypothesis: str) -> float:
    return rs.word_error_rate([(reference, hypothesis)])


@pytest.fixture(scope="module")
def mic_clip() -> rs.Clip:
    """What the fake microphone says: 1 s of silence, two sentences 1 s apart, 2 s of silence."""
    parts = [(text, rs.hibari(text)) for text in (rs.SENTENCES[0], rs.SENTENCES[2])]
    return rs.compose(parts, lead=1.0, pauses=(1.0,), tail=2.0)


@pytest.fixture(scope="module")
def mic_wav(mic_clip, tmp_path_factory):
    from scipy.signal import resample_poly

    samples = resample_poly(mic_clip.samples, MIC_RATE // rs.RATE, 1)
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(MIC_RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def browser(mic_wav):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed (the README's test command installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",  # CI runs as root
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic_wav}%noloop",
            ],
        )
        yield browser
        browser.close()


class Visit:
    """One page load, with every request, socket, console line and page error it caused."""

    def __init__(self, page, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.foreign: list[str] = []
        self.requests: list[str] = []
        self.sockets: list[str] = []
        self.sent: list[dict] = []
        self.received: list[dict] = []
        self.console: list[str] = []
        self.errors: list[str] = []

    def same_origin(self, url: str, schemes=("http", "https")) -> bool:
        parts, home = urlsplit(url), urlsplit(self.origin)
        return parts.scheme in schemes and parts.netloc == home.netloc

    def route(self, route) -> None:
        url = route.request.url
        self.requests.append(url)
        if self.same_origin(url):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def on_socket(self, socket) -> None:
        self.sockets.append(socket.url)
        socket.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
        socket.on("framereceived", lambda payload: self.received.append(json.loads(payload)))


@pytest.fixture
def visit(browser, real_server):
    context = browser.new_context()
    page = context.new_page()
    seen = Visit(page, real_server.base_url)
    context.route("**/*", seen.route)
    page.on("websocket", seen.on_socket)
    page.on("console", lambda message: seen.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.goto(real_server.base_url + "/")
    # The model list is the page's first call to the API. (Waits go through locators: the page's
    # Content-Security-Policy forbids the eval that wait_for_function's polling would use.)
    page.locator("#model option").first.wait_for(state="attached")
    yield seen
    context.close()
    assert seen.foreign == [], f"the page fetched from elsewhere: {seen.foreign}"
    assert all(seen.same_origin(url, ("ws", "wss")) for url in seen.sockets), seen.sockets
    assert seen.errors == [], f"uncaught errors in the page: {seen.errors}"


def choose_file(page, path, model: str, timeout: float = 60) -> list[str]:
    page.select_option("#model", model)
    page.set_input_files("#file-input", str(path))
    page.locator("#file-transcript li, #file-error:not([hidden])").first.wait_for(timeout=timeout * 1000)
    return page.locator("#file-transcript .segment").all_inner_texts()


def timed_segments(lines: list[str]) -> list[tuple[float, float, str | None, str]]:
    parsed = []
    for line in lines:
        match = SEGMENT_LINE.match(line.strip())
        assert match, f"not a `[mm:ss.s → mm:ss.s] text` line: {line!r}"
        m1, s1, m2, s2, speaker, text = match.groups()
        parsed.append((int(m1) * 60 + float(s1), int(m2) * 60 + float(s2), speaker, text))
    return parsed


def test_page_is_served_with_its_assets_and_prefers_whisper_1(visit, real_server):
    import httpx

    page = visit.page
    assert page.title() == "Earshot"
    assert page.input_value("#model") == "whisper-1"
    models = httpx.get(real_server.v1 + "/models").json()["data"]
    assert page.locator("#model option").all_inner_texts() == [m["id"] for m in models]
    paths = {urlsplit(url).path for url in visit.requests}
    assert {"/", "/static/page.js", "/static/page.css", "/v1/models"} <= paths
    assert page.get_attribute("#live-transcript", "aria-live") == "polite"
    assert page.get_attribute("#file-transcript", "aria-live") == "polite"


def test_api_key_is_kept_in_the_browser_and_sent_as_bearer(visit):
    page = visit.page
    models = lambda request: urlsplit(request.url).path == "/v1/models"  # noqa: E731
    with page.expect_request(models) as typed:
        page.fill("#api-key", "sk-page-test-1234")
        page.press("#api-key", "Enter")
    assert typed.value.headers.get("authorization") == "Bearer sk-page-test-1234"
    with page.expect_request(models) as reloaded:
        page.reload()
    assert page.input_value("#api-key") == "sk-page-test-1234"
    assert reloaded.value.headers.get("authorization") == "Bearer sk-page-test-1234"
    with page.expect_request(models) as cleared:
        page.fill("#api-key", "")
        page.press("#api-key", "Enter")
    assert "authorization" not in cleared.value.headers


def test_file_shows_timed_segments_with_the_spoken_words(visit, tmp_path):
    text = rs.SENTENCES[1]
    clip = rs.compose([(text, rs.hibari(text))], lead=1.0, tail=0.5)
    path = tmp_path / "sentence.wav"
    path.write_bytes(clip.wav())

    segments = timed_segments(choose_file(visit.page, path, "whisper-1"))

    assert segments, visit.page.inner_text("#file-error")
    assert all(speaker is None for _, _, speaker, _ in segments)
    (speech_start, speech_end), = clip.spans
    assert segments[0][0] <= speech_start + 0.5
    assert all(start < end <= clip.duration + 0.1 for start, end, _, _ in segments)
    assert wer(text, " ".join(words for *_, words in segments)) <= MAX_WER


def test_file_falls_back_to_json_for_a_model_without_timestamps(visit, tmp_path):
    # gpt-4o-transcribe refuses verbose_json (param response_format); the page asks again for json.
    text = rs.SENTENCES[4]
    path = tmp_path / "sentence.wav"
    path.write_bytes(rs.compose([(text, rs.hibari(text))]).wav())

    lines = choose_file(visit.page, path, "gpt-4o-transcribe")

    assert visit.page.locator("#file-error").is_hidden()
    assert len(lines) == 1 and not SEGMENT_LINE.match(lines[0])
    assert wer(text, lines[0]) <= MAX_WER
    assert "(gpt-4o-transcribe, json)" in visit.page.inner_text("#file-status")


def test_diarize_model_shows_speakers(visit, mic_clip, tmp_path):
    path = tmp_path / "two.wav"
    path.write_bytes(mic_clip.wav())

    # The first diarized request loads pyannote in the server: 30-60 s on a busy 2-core box.
    segments = timed_segments(choose_file(visit.page, path, "gpt-4o-transcribe-diarize", timeout=200))

    assert segments, visit.page.inner_text("#file-error")
    # Random-weight speaker models: that every line names a speaker, not which one.
    assert all(speaker for _, _, speaker, _ in segments), segments
    assert wer(mic_clip.text, " ".join(words for *_, words in segments)) <= MAX_WER


def test_error_envelope_is_shown(visit, tmp_path):
    path = tmp_path / "notes.wav"
    path.write_bytes(b"these are not the sounds you are looking for")

    assert choose_file(visit.page, path, "whisper-1") == []

    shown = visit.page.inner_text("#file-error")
    assert shown.startswith("Error 400 (invalid_request_error"), shown


def test_live_microphone_transcript(visit, mic_clip):
    from playwright.sync_api import expect

    page = visit.page
    page.click("#live-button")
    reference = mic_clip.text
    completed: list[str] = []
    deadline = time.monotonic() + mic_clip.duration + 25
    while time.monotonic() < deadline:
        completed = page.locator("#live-transcript .item.completed .text").all_inner_texts()
        if wer(reference, " ".join(completed)) <= MAX_WER:
            break
        page.wait_for_timeout(250)
    events = [event["type"] for event in visit.received]
    assert wer(reference, " ".join(completed)) <= MAX_WER, (completed, events, page.inner_text("#live-error"))

    page.click("#live-button")
    expect(page.locator("#live-button")).to_have_text("Start microphone", timeout=15_000)
    assert page.locator("#live-error").is_hidden(), page.inner_text("#live-error")

    update, *appends = [event for event in visit.sent if event["type"] != "input_audio_buffer.commit"]
    assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert update["session"]["audio"]["input"]["transcription"] == {"model": page.input_value("#model")}
    assert visit.sent[-1] == {"type": "input_audio_buffer.commit"}
    sizes = [len(base64.b64decode(event["audio"])) for event in appends]
    # 100 ms of 24 kHz 16-bit audio each, but the last one (the rest, on stop).
    assert set(sizes[:-1]) == {4800} and 0 < sizes[-1] <= 4800
    # The server counts time in the 24 kHz samples it was sent; two turns start as far apart as the
    # sentences do in the clip only if the page resampled the microphone at the right rate (a
    # 44.1 or 48 kHz stream sent as 24 kHz would stretch the gap by 1.8-2x).
    starts = [event["audio_start_ms"] / 1000 for event in visit.received if event["type"].endswith("speech_started")]
    (first, _), (second, _) = mic_clip.spans
    assert len(starts) >= 2 and abs((starts[1] - starts[0]) - (second - first)) < 0.25, (starts, mic_clip.spans)
