"""diarized_json through the live server: the wired Whisper model and a random-weight pyannote
pipeline loaded from its folder (EARSHOT_DIARIZATION_MODEL), with raw HTTP and the official SDKs."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from engines.speakers import letters
from tests import voices
from tests.audio_fixtures import encode, speechlike
from tests.sdk_runs import SDK_1X, run_sdk_checks

HERE = Path(__file__).parent
DIARIZE = {"model": "gpt-4o-transcribe-diarize", "response_format": "diarized_json"}
SEGMENT_KEYS = {"type", "id", "start", "end", "text", "speaker"}


def data_url(data: bytes, fmt: str) -> str:
    return f"data:audio/{fmt};base64,{base64.b64encode(data).decode()}"


@pytest.fixture(scope="module")
def meeting_wav() -> bytes:
    return encode(voices.meeting().audio, "wav")


@pytest.fixture(scope="module")
def references() -> list[str]:
    """Four known speakers' clips (2-10 s), in four formats."""
    return [
        data_url(encode(voices.clip("low-1"), "wav"), "wav"),
        data_url((voices.ASSETS / "high-1.ogg").read_bytes(), "ogg"),
        data_url(encode(voices.clip("low-2"), "mp3"), "mpeg"),
        data_url(encode(voices.stranger(), "flac"), "flac"),
    ]


@pytest.fixture(scope="module")
def client(diarizing_server):
    with httpx.Client(base_url=diarizing_server.base_url, timeout=300) as http:
        yield http


def post(http: httpx.Client, audio: bytes, **fields) -> httpx.Response:
    data = {k if not isinstance(v, list) else f"{k}[]": v for k, v in fields.items()}
    return http.post("/v1/audio/transcriptions", data=data, files={"file": ("meeting.wav", audio, "audio/wav")})


def assert_error(response: httpx.Response, param: str, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param, error
    return error


def lines_of(segments: list[dict]) -> str:
    """The speaker-labelled transcript, rebuilt from the segments: one line per turn."""
    lines: list[list] = []
    for s in segments:
        if lines and lines[-1][0] == s["speaker"]:
            lines[-1][1].append(s["text"])
        else:
            lines.append([s["speaker"], [s["text"]]])
    return "\n".join(f"{speaker}: {' '.join(texts)}" for speaker, texts in lines)


def check_diarized(body: dict, duration: float) -> list[dict]:
    assert set(body) == {"task", "duration", "text", "segments", "usage"}
    assert body["task"] == "transcribe" and body["duration"] == pytest.approx(duration, abs=0.01)
    segments = body["segments"]
    assert segments
    assert all(set(s) == SEGMENT_KEYS and s["type"] == "transcript.text.segment" for s in segments)
    assert len({s["id"] for s in segments}) == len(segments)
    assert all(s["start"] <= s["end"] and s["text"] for s in segments)
    assert all(a["start"] <= b["start"] for a, b in itertools.pairwise(segments))
    assert body["text"] == lines_of(segments)
    assert body["usage"]["type"] == "tokens"
    return segments


def check_stream(events: list[dict]) -> list[dict]:
    """Delta and segment event pairs, then done with the labelled transcript; returns the segments."""
    assert [e["type"] for e in events[-1:]] == ["transcript.text.done"]
    deltas, segments = events[:-1][0::2], events[:-1][1::2]
    assert segments and all(e["type"] == "transcript.text.segment" and set(e) == SEGMENT_KEYS for e in segments)
    assert [e["type"] for e in deltas] == ["transcript.text.delta"] * len(segments)
    assert [d["segment_id"] for d in deltas] == [s["id"] for s in segments] == [f"seg_{i}" for i in range(len(segments))]
    assert events[-1]["text"] == lines_of(segments)
    return segments


def first_appearances(segments: list[dict]) -> list[str]:
    return list(dict.fromkeys(s["speaker"] for s in segments))


def test_diarized_json(client, meeting_wav):
    duration = len(voices.meeting().audio) / 16000
    body = post(client, meeting_wav, **DIARIZE).raise_for_status().json()
    assert list(body) == ["task", "duration", "text", "segments", "usage"]
    segments = check_diarized(body, duration)
    # Letters in order of first appearance, and the pieces together are the plain transcript.
    speakers = first_appearances(segments)
    assert speakers == list(itertools.islice(letters(), len(speakers)))
    plain = post(client, meeting_wav, model="gpt-4o-transcribe-diarize").raise_for_status().json()
    assert list(plain) == ["text", "usage"]
    assert " ".join(s["text"] for s in segments).split() == plain["text"].split()
    text = post(client, meeting_wav, model="gpt-4o-transcribe-diarize", response_format="text")
    assert text.headers["content-type"].startswith("text/plain") and text.text == plain["text"] + "\n"


def test_known_speakers_name_the_voices_and_letters_skip_their_names(client, meeting_wav, references):
    names = ["A", "Bob", "Carol", "Dave"]
    body = post(
        client, meeting_wav, **DIARIZE, known_speaker_names=names, known_speaker_references=references
    ).raise_for_status().json()
    segments = check_diarized(body, len(voices.meeting().audio) / 16000)
    shown = first_appearances(segments)
    # This server names a speaker after every reference it can (threshold -1); speakers with too
    # little speech for a voice print keep letters, and "A" is a known name, so letters start at B.
    assert set(shown) & set(names)
    unnamed = [s for s in shown if s not in names]
    assert unnamed == [letter for letter in itertools.islice(letters(), 30) if letter not in names][: len(unnamed)]


def test_a_stream_carries_the_same_segments(client, meeting_wav):
    body = post(client, meeting_wav, **DIARIZE).raise_for_status().json()
    streamed = post(client, meeting_wav, **DIARIZE, stream="true")
    assert streamed.status_code == 200
    events = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "transcript.text.done"
    assert events[-1]["text"] == body["text"] and events[-1]["usage"] == body["usage"]
    segment_events = check_stream(events)
    assert segment_events == body["segments"]
    deltas = events[:-1][0::2]
    assert "".join(d["delta"] for d in deltas) == " ".join(s["text"] for s in segment_events)


def test_the_native_name_diarizes_when_a_diarization_model_is_configured(client, meeting_wav, whisper_model_dir):
    body = post(client, meeting_wav, model=whisper_model_dir.name, response_format="diarized_json")
    check_diarized(body.raise_for_status().json(), len(voices.meeting().audio) / 16000)


@pytest.mark.parametrize(
    "fields,param",
    [
        ({"response_format": "srt"}, "response_format"),
        ({"response_format": "vtt"}, "response_format"),
        ({"response_format": "verbose_json"}, "response_format"),
        ({"prompt": "Meeting notes."}, "prompt"),
        ({"include": ["logprobs"]}, "include"),
        ({"timestamp_granularities": ["word"]}, "timestamp_granularities"),
        ({"known_speaker_names": ["a", "b"], "known_speaker_references": ["data:audio/wav;base64,AAAA"]}, "known_speaker_names"),
        ({"known_speaker_names": ["a", "a"], "known_speaker_references": ["REF", "REF"]}, "known_speaker_names"),
        ({"known_speaker_names": [" "], "known_speaker_references": ["REF"]}, "known_speaker_names"),
        ({"known_speaker_names": list("abcde"), "known_speaker_references": ["REF"] * 5}, "known_speaker_names"),
        ({"known_speaker_names": ["a"], "known_speaker_references": ["https://example.com/a.wav"]}, "known_speaker_references"),
        ({"known_speaker_names": ["a"], "known_speaker_references": ["data:audio/wav;base64,@@@"]}, "known_speaker_references"),
        ({"known_speaker_names": ["a"], "known_speaker_references": ["data:audio/wav;base64,AAAAAAAA"]}, "known_speaker_references"),
    ],
)
def test_what_the_diarizing_model_refuses(client, meeting_wav, references, fields, param):
    fields = {**DIARIZE, **fields}
    if "known_speaker_references" in fields:
        fields["known_speaker_references"] = [references[0] if r == "REF" else r for r in fields["known_speaker_references"]]
    assert_error(post(client, meeting_wav, **fields), param)


@pytest.mark.parametrize("seconds", [1.5, 11.0])
def test_references_must_last_2_to_10_seconds(client, meeting_wav, seconds):
    ref = data_url(encode(speechlike(seconds), "wav"), "wav")
    response = post(client, meeting_wav, **DIARIZE, known_speaker_names=["a"], known_speaker_references=[ref])
    assert "known_speaker_references[0]" in assert_error(response, "known_speaker_references")["message"]


def test_chunking_strategy_is_required_over_30_seconds(client):
    meeting = voices.meeting().audio
    samples = np.concatenate([meeting, np.zeros(16000, np.float32), meeting])
    long = encode(samples, "wav")
    error = assert_error(post(client, long, **DIARIZE), "chunking_strategy")
    assert "30" in error["message"]
    body = post(client, long, **DIARIZE, chunking_strategy="auto").raise_for_status().json()
    check_diarized(body, len(samples) / 16000)
    # json and text do not diarize: no chunking needed.
    assert post(client, long, model="gpt-4o-transcribe-diarize").status_code == 200


def test_without_a_diarization_model_diarized_json_is_refused(http, wav, whisper_model_dir):
    for model in ("gpt-4o-transcribe-diarize", whisper_model_dir.name):
        response = http.post(
            "/v1/audio/transcriptions",
            data={"model": model, "response_format": "diarized_json"},
            files={"file": ("a.wav", wav, "audio/wav")},
        )
        assert_error(response, "response_format")


# ---------------------------------------------------------------- official SDKs


def known_file(path: Path, names, refs) -> str:
    """References are too big for a command line: they travel in a file."""
    path.write_text(json.dumps({"names": names, "references": refs}))
    return str(path)


def run_python_sdk(sdk: str, server, audio_path: Path, known: str) -> dict:
    return run_sdk_checks(sdk, "diarize_checks.py", server.v1, str(audio_path), known)


@pytest.fixture(scope="module")
def audio_path(meeting_wav, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("diarize-sdk") / "meeting.wav"
    path.write_bytes(meeting_wav)
    return path


NAMES = ["agent", "customer"]


@pytest.mark.parametrize("sdk", ["latest", SDK_1X])
def test_python_sdk(sdk, diarizing_server, audio_path, references):
    got = run_python_sdk(sdk, diarizing_server, audio_path, known_file(audio_path.with_suffix(".json"), NAMES, references[:2]))
    duration = len(voices.meeting().audio) / 16000

    def ok(name):
        assert "ok" in got[name], got[name]
        return got[name]["ok"]

    if sdk == "latest":
        assert int(got["version"].split(".")[0]) >= 3
        assert ok("diarized")["type"] == ok("diarized_known")["type"] == "TranscriptionDiarized"
    else:
        assert got["version"] == "1.109.1"
    check_diarized(ok("diarized")["value"], duration)
    known = ok("diarized_known")["value"]
    assert set(first_appearances(check_diarized(known, duration))) & set(NAMES)
    assert ok("json")["value"]["text"] and ok("text")["value"].endswith("\n")
    for name, param in [("err_srt", "response_format"), ("err_prompt", "prompt"), ("err_bad_reference", "known_speaker_references")]:
        assert got[name].get("status") == 400 and got[name]["param"] == param, got[name]
    if sdk == "latest":
        # (A stream's first VAD chunk is cut short for latency, so its transcript may differ from
        # the plain response's; test_a_stream_carries_the_same_segments compares without chunking.)
        check_stream(ok("stream")["value"])


def test_node_sdk(diarizing_server, audio_path, references):
    node_dir = HERE / "node"
    if shutil.which("node") is None or not (node_dir / "node_modules" / "openai").is_dir():
        pytest.fail("Node SDK not installed: run `npm ci --prefix tests/node` (the README's test command does)")
    proc = subprocess.run(
        [
            "node", str(node_dir / "diarize_checks.mjs"), diarizing_server.v1, str(audio_path),
            known_file(audio_path.with_suffix(".json"), NAMES, references[:2]),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)

    def ok(name):
        assert "ok" in got[name], got[name]
        return got[name]["ok"]["value"]

    known = check_diarized(ok("diarized_known"), len(voices.meeting().audio) / 16000)
    assert set(first_appearances(known)) & set(NAMES)
    assert ok("text").endswith("\n")
    check_stream(ok("stream"))
    assert got["err_granularities"]["status"] == 400 and got["err_granularities"]["param"] == "timestamp_granularities"
    assert got["err_mismatch"]["status"] == 400 and got["err_mismatch"]["param"] == "known_speaker_names"


def _float_wav(samples: np.ndarray) -> bytes:
    """32-bit float WAV: the one common format whose samples can hold NaN and infinity."""
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as out:
        stream = out.add_stream("pcm_f32le", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def _voiceless(kind: str) -> bytes:
    n = 3 * 16000
    rng = np.random.default_rng(5)
    if kind == "silence":
        return encode(np.zeros(n, np.float32), "wav")
    if kind == "noise":
        return encode((rng.standard_normal(n) * 0.1).astype(np.float32), "wav")
    if kind == "hum":
        return encode((0.3 * np.sin(2 * np.pi * 50 * np.arange(n) / 16000)).astype(np.float32), "wav")
    if kind == "speech-then-silence":  # 0.5 s of a real voice, then 2.5 s of nothing
        voice = voices.clip("low-1")[: 8000]
        return encode(np.concatenate([voice, np.zeros(n - len(voice), np.float32)]), "wav")
    samples = np.full(n, np.nan if kind == "nan" else np.inf, np.float32)
    samples[::3] = 0.05
    return _float_wav(samples)


@pytest.mark.parametrize("kind", ["silence", "nan", "inf", "noise", "hum", "speech-then-silence"])
def test_a_reference_without_a_voice_is_refused_by_index(client, meeting_wav, references, kind):
    """A reference with no usable voice names nobody: the request is refused, naming the entry."""
    response = post(
        client, meeting_wav, **DIARIZE,
        known_speaker_names=["alice", "bob"],
        known_speaker_references=[references[0], data_url(_voiceless(kind), "wav")],
    )  # fmt: skip
    message = assert_error(response, "known_speaker_references")["message"]
    assert "known_speaker_references[1]" in message, message


def test_a_client_leaving_mid_diarization_is_logged_once_at_info(diarizing_server):
    """Stopping the diarization when its client leaves is expected: one info line with the request
    id, and no asyncio error about an exception never retrieved."""
    import time

    meeting = voices.meeting().audio
    long = encode(np.concatenate([meeting] * 8), "wav")
    for wait in (0.6, 1.0):
        with httpx.Client(base_url=diarizing_server.base_url) as http:
            with pytest.raises(httpx.ReadTimeout):
                http.post(
                    "/v1/audio/transcriptions",
                    data={**DIARIZE, "chunking_strategy": "auto"},
                    files={"file": ("meeting.wav", long, "audio/wav")},
                    timeout=httpx.Timeout(30, read=wait),
                )
    def stopped_lines():
        lines = [json.loads(line) for line in diarizing_server.log().splitlines() if line.startswith("{")]
        return lines, [e for e in lines if "diarization stopped" in e["message"]]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stopped_lines()[1]:
        time.sleep(0.5)
    time.sleep(2)  # a second stop, and whatever asyncio would report when the future is collected
    lines, stopped = stopped_lines()
    # A client gone before its diarization started leaves nothing to stop; at least one had it running.
    assert stopped, diarizing_server.log()[-3000:]
    assert all(e["level"] == "info" and e.get("request_id", "").startswith("req_") for e in stopped)
    request_ids = [e["request_id"] for e in stopped]
    assert len(set(request_ids)) == len(request_ids)  # once per request
    assert "never retrieved" not in diarizing_server.log()
    assert not [e for e in lines if e["level"] == "error" and "Diarization" in json.dumps(e)]
