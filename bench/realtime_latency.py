"""Realtime transcription latency on real Whisper tiny.en, with audio sent at the pace it is spoken.

One server (tiny.en from the dev wheels, server VAD at OpenAI's defaults: threshold 0.5, 300 ms
prefix, 500 ms silence). Each session speaks hibari's sentences through the official Python SDK in
100 ms appends at real time. Measured per turn, from the wall-clock moment its last speech sample
was sent:

- `stopped`: until `speech_stopped` (includes the 500 ms of silence that end a turn);
- `first delta` and `completed`: until the turn's first text and its final transcript;
- side by side in the same run: an HTTP upload of the same turn's audio made at that moment, i.e.
  what a client waiting for the end and then POSTing would get (ratio = realtime ÷ HTTP).

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


async def session(client, http: httpx.AsyncClient, clip: np.ndarray, turn_ends: list[int], compare: bool) -> list[dict]:
    """Stream `clip` at real time; per turn: latencies after the sample `turn_ends[i]` was sent."""
    pcm = pcm24(clip)
    sent_at: dict[int, float] = {}  # 16 kHz sample → wall time when it was sent
    marks: list[dict] = []
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await conn.session.update(session={"type": "transcription", "audio": audio_input(turn_detection=SERVER_VAD)})

        async def send() -> None:
            start = time.monotonic()
            for i, first in enumerate(range(0, len(pcm), CHUNK)):
                await asyncio.sleep(max(0.0, start + i * 0.1 - time.monotonic()))
                await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[first : first + CHUNK]).decode())
                sent_at[(first + CHUNK) * 2 // 3 // 2] = time.monotonic()

        def when_sent(sample: int) -> float:
            return min(t for s, t in sent_at.items() if s >= sample)

        sender = asyncio.create_task(send())
        turns: dict[str, dict] = {}
        order: list[str] = []
        async for event in conn:
            now = time.monotonic()
            item = getattr(event, "item_id", None)
            if event.type == "input_audio_buffer.speech_started":
                turns[item] = {"started_sample": event.audio_start_ms * 16}
                order.append(item)
            elif event.type == "input_audio_buffer.speech_stopped":
                turns[item]["stopped"] = now
                turns[item]["audio"] = (turns[item]["started_sample"], event.audio_end_ms * 16)
            elif event.type.endswith(".delta"):
                turns[item].setdefault("first_delta", now)
            elif event.type.endswith(".completed"):
                turns[item]["completed"] = now
                if len([t for t in turns.values() if "completed" in t]) == len(turn_ends):
                    break
        await sender
    for item, end in zip(order, turn_ends):
        t = turns[item]
        spoken = when_sent(end)
        mark = {k: t[k] - spoken for k in ("stopped", "first_delta", "completed")}
        mark["after_start"] = t["first_delta"] - when_sent(t["started_sample"] + 4800)  # onset = start + prefix
        if compare:
            a, b = t["audio"]
            data = pcm_wav(pcm[a * 3 : b * 3])
            began = time.monotonic()
            r = await http.post("/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("t.wav", data)})
            r.raise_for_status()
            # The HTTP client would post when it knew the turn was over: at speech_stopped.
            mark["http"] = (t["stopped"] - spoken) + (time.monotonic() - began)
        marks.append(mark)
    return marks


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
            async with httpx.AsyncClient(base_url=server.v1, timeout=120) as http:
                await session(client, http, short[: spans[0][1] + RATE * 2], [spans[0][1]], False)  # warm-up
                print("tiny.en, int8 CPU; server VAD 0.5/300/500 ms; audio sent in 100 ms appends at real time")
                print("sessions  stopped  first delta  completed  HTTP at stop  completed ÷ HTTP   (s after speech ended; medians)")
                for n in args.sessions:
                    results = await asyncio.gather(
                        *(session(client, http, short, [e for _, e in spans], compare=(i == 0)) for i in range(n))
                    )
                    marks = [m for r in results for m in r]
                    timed = [m for m in results[0]]
                    ratio = statistics.median(m["completed"] / m["http"] for m in timed)
                    print(f"{n:>8}  {median([m['stopped'] for m in marks])}  {median([m['first_delta'] for m in marks])}"
                          f"       {median([m['completed'] for m in marks])}  {median([m['http'] for m in timed])}"
                          f"        {ratio:.2f}x")
                (mark,) = await session(client, http, long, [long_spans[-1][1]], compare=False)
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
