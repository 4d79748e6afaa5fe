"""Realtime transcription latency on real Whisper tiny.en, with audio sent at the pace it is spoken.

One server (tiny.en from the dev wheels, server VAD at OpenAI's defaults: threshold 0.5, 300 ms
prefix, 500 ms silence). Each session speaks hibari's sentences through the official Python SDK in
100 ms appends at real time. Measured per turn, from the wall-clock moment its last speech sample
was sent:

- `stopped`: until `speech_stopped` (includes the 500 ms of silence that end a turn);
- `first delta` and `completed`: until the turn's first text and its final transcript;
- side by side in the same run, with as many HTTP clients as sessions: each turn's audio posted
  to the HTTP endpoint when the session said `speech_stopped`, i.e. what a client that waits for
  the end and then uploads would get (ratio = realtime ÷ HTTP).

A long turn (5 sentences with 300 ms pauses, ~20 s) gives the first delta's time after speech
started: text arrives while the speaker is still talking (EARSHOT_REALTIME_PIECE_SECONDS).

    uv run python bench/realtime_latency.py [--sessions 1,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engines.wheel_models import assemble  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402
from tests.real_speech import SENTENCES, hibari  # noqa: E402
from tests.realtime_client import SERVER_VAD, audio_input, pcm24, pcm_wav  # noqa: E402

RATE = 16000
CHUNK = 4800  # 100 ms of 24 kHz 16-bit audio


def layout(sentences: list[np.ndarray], pause: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The clip and each sentence's [start, end) in 16 kHz samples."""
    parts, spans, at = [np.zeros(8000, np.float32)], [], 8000
    for s in sentences:
        spans.append((at, at + len(s)))
        parts += [s, np.zeros(int(pause * RATE), np.float32)]
        at += len(s) + int(pause * RATE)
    parts.append(np.zeros(RATE, np.float32))
    return np.concatenate(parts), spans


async def session(client, clip: np.ndarray, turn_ends: list[int]) -> tuple[float, list[dict]]:
    """Stream `clip` at real time: when sending began, and per turn the latencies after the sample
    `turn_ends[i]` was sent."""
    pcm = pcm24(clip)
    sent_at: dict[int, float] = {}  # 16 kHz sample → wall time when it was sent
    began = time.monotonic()
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await conn.session.update(session={"type": "transcription", "audio": audio_input(turn_detection=SERVER_VAD)})

        async def send() -> None:
            nonlocal began
            start = began = time.monotonic()
            for i, first in enumerate(range(0, len(pcm), CHUNK)):
                await asyncio.sleep(max(0.0, start + i * 0.1 - time.monotonic()))
                await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[first : first + CHUNK]).decode())
                sent_at[(first + CHUNK) * 2 // 3 // 2] = time.monotonic()

        def when_sent(sample: int) -> float:
            return min(t for s, t in sent_at.items() if s >= sample)

        sender = asyncio.create_task(send())
        turns: dict[str, dict] = {}
        async for event in conn:
            now = time.monotonic()
            item = getattr(event, "item_id", None)
            if event.type == "input_audio_buffer.speech_started":
                turns[item] = {"started_sample": event.audio_start_ms * 16}
            elif event.type == "input_audio_buffer.speech_stopped":
                turns[item]["stopped"] = now
            elif event.type.endswith(".delta"):
                turns[item].setdefault("first_delta", now)
            elif event.type.endswith(".completed"):
                turns[item]["completed"] = now
                if sum("completed" in t for t in turns.values()) == len(turn_ends):
                    break
        await sender
    marks = []
    for t, end in zip(turns.values(), turn_ends):
        spoken = when_sent(end)
        mark = {k: t[k] - spoken for k in ("stopped", "first_delta", "completed")}
        mark["after_start"] = t["first_delta"] - when_sent(t["started_sample"] + 4800)  # onset = start + prefix
        marks.append(mark)
    return began, marks


async def http_session(
    http: httpx.AsyncClient, clip: np.ndarray, spans: list[tuple[int, int]], start: float, stopped: list[float]
) -> list[float]:
    """The same speech the HTTP way, at the same moments: a client that starts speaking at `start`
    posts each turn's audio (with the VAD's 300 ms padding) when its realtime session said
    `speech_stopped` (`stopped[i]` s after the turn's end); per turn, seconds from the end of its
    speech to the answer."""
    pcm = pcm24(clip)
    latencies = []
    for (a, b), after in zip(spans, stopped):
        spoken = start + b / RATE
        await asyncio.sleep(max(0.0, spoken + after - time.monotonic()))
        first, last = max(a - 4800, 0), min(b + 4800, len(clip))
        r = await http.post("/audio/transcriptions", data={"model": "whisper-1"},
                            files={"file": ("t.wav", pcm_wav(pcm[first * 3 : last * 3]))})  # fmt: skip
        r.raise_for_status()
        latencies.append(time.monotonic() - spoken)
    return latencies


def median(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f}"


async def main_async(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        assemble("faster-whisper-tiny.en", store)
        server = start_server(
            {"EARSHOT_ASR_MODEL": "faster-whisper-tiny.en", "EARSHOT_MODELS_DIR": str(store),
             "EARSHOT_LOG_LEVEL": "warning", "EARSHOT_PRELOAD": "whisper-1"},
            store / "server.log", timeout=180,
        )  # fmt: skip
        try:
            client = openai.AsyncOpenAI(base_url=server.v1, api_key="unused", max_retries=0)
            sentences = [hibari(s) for s in SENTENCES]
            short, spans = layout(sentences, pause=1.2)
            long, long_spans = layout(sentences[:5], pause=0.3)
            async with httpx.AsyncClient(base_url=server.v1, timeout=300) as http:
                await session(client, short[: spans[0][1] + RATE * 2], [spans[0][1]])  # warm-up
                print("tiny.en, int8 CPU; server VAD 0.5/300/500 ms; audio sent in 100 ms appends at real time")
                print("seconds after a turn's speech ended (medians); HTTP: the same turns posted at speech_stopped")
                print("sessions  stopped  first delta  completed  HTTP clients' answer  completed ÷ HTTP")
                for n in args.sessions:
                    results = await asyncio.gather(*(session(client, short, [e for _, e in spans]) for _ in range(n)))
                    marks = [m for _, r in results for m in r]
                    stopped = statistics.median(m["stopped"] for m in marks)
                    # The HTTP clients start with the sessions' own offsets and post at their own
                    # speech_stopped moments: arrivals as staggered as the sessions' turns.
                    first = min(began for began, _ in results)
                    base = time.monotonic() + 0.5
                    answers = await asyncio.gather(*(
                        http_session(http, short, spans, base + began - first, [m["stopped"] for m in r])
                        for began, r in results
                    ))  # fmt: skip
                    completed = statistics.median(m["completed"] for m in marks)
                    answer = statistics.median(x for a in answers for x in a)
                    print(f"{n:>8}  {stopped:7.2f}  {median([m['first_delta'] for m in marks])}       "
                          f"{completed:6.2f}  {answer:20.2f}  {completed / answer:15.2f}x")
                _, (mark,) = await session(client, long, [long_spans[-1][1]])
                print(f"long turn ({(long_spans[-1][1] - long_spans[0][0]) / RATE:.1f} s of speech, 300 ms pauses): first "
                      f"delta {mark['after_start']:.2f} s after speech started; completed {mark['completed']:.2f} s after it ended")
        finally:
            stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="1,4,8")
    args = parser.parse_args()
    args.sessions = [int(n) for n in args.sessions.split(",")]
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
