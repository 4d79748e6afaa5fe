"""The official Node SDK's realtime client (`OpenAIRealtimeWS` from `openai/realtime/ws`, with
intent=transcription) holds transcription sessions against a live Earshot with real Whisper tiny.en
and real speech (tests/node/realtime_checks.mjs): every event it receives is one the SDKs know, the
items and their events come as OpenAI's Realtime API sends them, and the words are the ones the HTTP
endpoint gives for the same audio.

Two sessions, one after the other: (a) server VAD on 24 kHz PCM16 of two sentences, so two items;
(b) G.711 μ-law at 8 kHz of the same clip, committed by hand as one item.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from app.realtime.audio_formats import _TABLES, encode_g711
from tests import real_speech as rs
from tests.conftest import start_server, stop_server
from tests.realtime_client import checked, ffmpeg_wav, int16, items, pcm24, pcm_wav

NODE_DIR = Path(__file__).parent / "node"
MODEL = "gpt-4o-transcribe"
TEXTS = (rs.SENTENCES[2], rs.SENTENCES[4])
LEAD, PAUSE, TAIL = 0.5, 1.0, 1.0
# The session's server VAD (realtime_checks.mjs sends the same): a turn's audio starts 0.3 s before
# the speech and ends min(0.3 s, silence_duration_ms) after it (engines/turns.py).
PREFIX_PADDING, TAIL_PADDING = 0.3, 0.3
# How far the announced turn times may be from those: measured within 0.045 s (the same with
# CT2_FORCE_CPU_ISA=AVX, AVX2 and GENERIC); the VAD scores 32 ms frames.
TURN_SLACK = 0.15

STARTED, STOPPED = "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"
COMMITTED, ADDED, DONE = "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"
DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"


def mulaw_wav(codes: bytes) -> bytes:
    """A pcm_mulaw WAV holding exactly `codes`. FFmpeg's encoder writes the G.711 levels these codes
    decode to with the same codes, except silence: it writes 0 as 0xFF where encode_g711 may have
    chosen 0x7F (both decode to 0). So its header is kept and its data replaced by `codes`."""
    container = ffmpeg_wav(_TABLES["pcmu"][np.frombuffer(codes, np.uint8)], 8000, "pcm_mulaw")
    at = container.rindex(b"data")
    assert int.from_bytes(container[container.index(b"fmt ") + 8 :][:2], "little") == 7  # WAVE_FORMAT_MULAW
    assert len(container) - at - 8 == len(codes)
    return container[: at + 8] + codes


@pytest.fixture(scope="module")
def clip() -> rs.Clip:
    return rs.compose([(text, rs.hibari(text)) for text in TEXTS], lead=LEAD, pauses=(PAUSE,), tail=TAIL)


@pytest.fixture(scope="module")
def mulaw(clip) -> bytes:
    return encode_g711(int16(resample_poly(clip.samples, 1, 2)), "pcmu")


@pytest.fixture(scope="module")
def tls_server(real_store, tls_files, tmp_path_factory):
    """Real tiny.en served over TLS: the Node SDK opens realtime sockets on wss:// only."""
    live = start_server(
        {"EARSHOT_ASR_MODEL": "faster-whisper-tiny.en", "EARSHOT_MODELS_DIR": str(real_store)},
        tmp_path_factory.mktemp("logs") / "tls-server.log", timeout=120, tls=tls_files,
    )  # fmt: skip
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def node(tls_server, tls_files, clip, mulaw, tmp_path_factory):
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "ws").is_dir():
        pytest.fail("Node SDK or ws not installed: run `npm ci --prefix tests/node` (the README's test command does)")
    folder = tmp_path_factory.mktemp("node-realtime")
    pcm_path, mulaw_path = folder / "clip.pcm24", folder / "clip.ulaw"
    pcm_path.write_bytes(pcm24(clip.samples))
    mulaw_path.write_bytes(mulaw)
    proc = subprocess.run(
        ["node", str(NODE_DIR / "realtime_checks.mjs"), tls_server.v1, str(pcm_path), str(len(TEXTS)), str(mulaw_path)],
        capture_output=True, text=True, timeout=180,
        # The SDK itself is unchanged; Node is told to trust the test's own certificate authority.
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(tls_files[0])},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def http(real_client, clip, mulaw, node) -> dict:
    """The HTTP endpoint's transcripts of the same audio (after the sessions: nothing runs beside them).
    `manual`: the μ-law clip as a pcm_mulaw WAV; `sentences`: each sentence alone, ~0.3 s of silence
    around it, as a 24 kHz PCM WAV, with logprobs as session (a) asks for them."""
    tr = real_client.audio.transcriptions
    manual = tr.create(model=MODEL, file=("clip.wav", mulaw_wav(mulaw), "audio/wav"))
    sentences = []
    for text in TEXTS:
        alone = rs.compose([(text, rs.hibari(text))], lead=0.3, tail=0.3)
        body = pcm_wav(pcm24(alone.samples))
        sentences.append(tr.create(model=MODEL, file=("sentence.wav", body, "audio/wav"), include=["logprobs"]))
    return {"manual": manual, "sentences": sentences}


def session(node, name: str) -> dict:
    return node["sessions"][name]


@pytest.mark.parametrize("name", ["vad", "manual"])
def test_the_sdk_opens_and_closes_a_transcription_session(node, name):
    assert int(node["version"].split(".")[0]) >= 6 and node["ws"].startswith("8."), node
    record = session(node, name)
    assert record["exception"] is None, record["exception"]
    # The URL is the SDK's own: its /realtime under the base URL, with the transcription intent.
    assert record["url"].startswith("wss://127.0.0.1:") and record["url"].endswith("/v1/realtime?intent=transcription")
    assert not record["timed_out"] and record["errors"] == [], record
    assert [e for e in record["events"] if e["type"] == "error"] == []
    # The SDK closes with 1000 and Earshot's close answers it.
    assert record["closed"] is not None and record["closed"]["code"] == 1000, record["closed"]


@pytest.mark.parametrize("name", ["vad", "manual"])
def test_every_event_is_one_the_sdk_knows(node, name):
    events = session(node, name)["events"]
    assert events and events[0]["type"] == "session.created"
    for event in events:
        checked(event)
    assert len({e["event_id"] for e in events}) == len(events)
    assert [e["type"] for e in events].count("session.updated") == 1


def test_session_updated_shows_what_was_asked(node):
    vad = next(e for e in session(node, "vad")["events"] if e["type"] == "session.updated")["session"]
    assert vad["type"] == "transcription"
    audio = vad["audio"]["input"]
    assert audio["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio["transcription"]["model"] == MODEL
    assert audio["turn_detection"] == {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
    }  # fmt: skip
    assert vad["include"] == ["item.input_audio_transcription.logprobs"]
    manual = next(e for e in session(node, "manual")["events"] if e["type"] == "session.updated")["session"]
    assert manual["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert manual["audio"]["input"]["turn_detection"] is None
    assert manual["audio"]["input"]["transcription"]["model"] == MODEL


# --- (a) server VAD, PCM16 24 kHz ---------------------------------------------------------------


def test_server_vad_finds_one_item_per_sentence_with_its_events_in_order(node, clip):
    events = session(node, "vad")["events"]
    by_item = items(events)
    assert len(by_item) == len(TEXTS), {k: [e["type"] for e in v] for k, v in by_item.items()}
    order = [STARTED, STOPPED, COMMITTED, ADDED, DONE, COMPLETED]
    previous = None
    for (item, seen), span in zip(by_item.items(), clip.spans):
        kinds = [e["type"] for e in seen]
        assert [k for k in kinds if k != DELTA] == order, kinds
        first, last = kinds.index(DELTA), len(kinds) - 1 - kinds[::-1].index(DELTA)
        # Deltas go out as the item is decoded: after speech started, before completed; these turns
        # are shorter than a piece (10 s), so decoding starts once the turn is committed.
        assert kinds.index(STARTED) < first and last < kinds.index(COMPLETED)
        assert kinds.index(DONE) < first
        committed, added, done = (next(e for e in seen if e["type"] == k) for k in (COMMITTED, ADDED, DONE))
        assert committed["previous_item_id"] == previous == added["previous_item_id"] == done["previous_item_id"]
        for event in (added, done):
            assert event["item"]["type"] == "message" and event["item"]["role"] == "user"
            assert event["item"]["content"][0]["type"] == "input_audio"
        previous = item
        # Turn times on the stream's clock: speech onset minus the prefix padding, end of speech
        # plus the tail padding.
        start = next(e for e in seen if e["type"] == STARTED)["audio_start_ms"] / 1000
        end = next(e for e in seen if e["type"] == STOPPED)["audio_end_ms"] / 1000
        assert start == pytest.approx(span[0] - PREFIX_PADDING, abs=TURN_SLACK), (start, span)
        assert end == pytest.approx(span[1] + TAIL_PADDING, abs=TURN_SLACK), (end, span)
    # Items are transcribed one after another.
    completed = [e["item_id"] for e in events if e["type"] == COMPLETED]
    assert completed == list(by_item)


def test_server_vad_deltas_logprobs_and_usage(node):
    for item, seen in items(session(node, "vad")["events"]).items():
        deltas = [e for e in seen if e["type"] == DELTA]
        completed = next(e for e in seen if e["type"] == COMPLETED)
        assert completed["transcript"] and "".join(d["delta"] for d in deltas) == completed["transcript"]
        assert {d["content_index"] for d in deltas} == {0} == {completed["content_index"]}
        # Logprobs were asked for: on every delta, and the completed event's are the deltas' together.
        # Whisper's tokens carry their leading space, which the item's first delta drops.
        for delta in deltas:
            assert delta["logprobs"], delta
            assert "".join(p["token"] for p in delta["logprobs"]).lstrip() == delta["delta"].lstrip(), delta
        assert completed["logprobs"] == [p for d in deltas for p in d["logprobs"]]
        assert all(p["logprob"] <= 0 for p in completed["logprobs"])
        usage = completed["usage"]
        assert usage["type"] == "tokens", usage
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_server_vad_transcripts_match_http_on_each_sentence(node, http):
    transcripts = [e["transcript"] for e in session(node, "vad")["events"] if e["type"] == COMPLETED]
    references = [r.text for r in http["sentences"]]
    # The words are the clip's words...
    assert rs.word_error_rate(list(zip(TEXTS, transcripts))) <= 0.2, transcripts
    # ...and the HTTP endpoint's on each sentence's own audio. The item's audio is the turn as the
    # VAD cut it (padding of the clip's own samples, its own length) where the reference has 0.3 s of
    # exact silence, so the audio differs and only the words are compared. Measured: the very same
    # text, punctuation and all (tiny.en's "Thursday, afternoon."), with 0.2, 0.3 and 0.5 s of
    # silence around the reference and under CT2_FORCE_CPU_ISA=AVX, AVX2 and GENERIC alike; but
    # punctuation is what differing audio flips first on another CPU's numerics.
    assert [rs.normalise(t) for t in transcripts] == [rs.normalise(r) for r in references]


# --- (b) manual commit, G.711 μ-law 8 kHz -------------------------------------------------------


def test_manual_commit_gives_one_item_in_order(node):
    events = session(node, "manual")["events"]
    kinds = [e["type"] for e in events]
    assert STARTED not in kinds and STOPPED not in kinds  # no turn detection
    by_item = items(events)
    assert len(by_item) == 1, kinds
    (item, seen), = by_item.items()
    item_kinds = [e["type"] for e in seen]
    assert item_kinds[:3] == [COMMITTED, ADDED, DONE] and item_kinds[-1] == COMPLETED, item_kinds
    assert set(item_kinds[3:-1]) == {DELTA}
    assert seen[0]["previous_item_id"] is None  # a new session: its first item
    completed = seen[-1]
    assert "".join(e["delta"] for e in seen if e["type"] == DELTA) == completed["transcript"]
    # No logprobs were asked for in this session.
    assert all(e.get("logprobs") is None for e in seen)
    assert completed["usage"]["type"] == "tokens" and completed["usage"]["input_tokens"] > 0


def test_manual_commit_transcript_is_the_http_endpoints_exactly(node, http, clip):
    transcript = next(e["transcript"] for e in session(node, "manual")["events"] if e["type"] == COMPLETED)
    # Both sentences, in one item...
    assert rs.word_error_rate([(clip.text, transcript)]) <= 0.2, transcript
    # ...and the very text of the HTTP endpoint on a WAV of the same μ-law codes: the streamed decoder
    # gives the upload's exact samples (tests/test_realtime_audio.py), the options are the same, and
    # both run on the one server, so this holds on any CPU.
    assert transcript == http["manual"].text
