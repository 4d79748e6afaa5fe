"""Run an app object under uvicorn in a thread, so tests can wrap its engines with probes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from engines.base import Transcription

from tests.conftest import free_port


@contextmanager
def serve_app(app) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("in-process server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class Probe:
    """Wraps the real engine's segment iterator to observe (and hold) the decoding."""

    def __init__(self, hold_after_first: bool = False, fail_after: int | None = None, delay: float = 0.0) -> None:
        self.hold_after_first = hold_after_first
        self.fail_after = fail_after
        self.delay = delay
        self.release = threading.Event()
        self.produced = 0
        self.finished = threading.Event()
        self.closed_early = False

    def wrap(self, engine):
        probe = self
        original = engine.transcribe

        def transcribe(audio, options):
            inner = original(audio, options)

            def segments():
                completed = False
                try:
                    for segment in inner.segments:
                        if probe.fail_after is not None and probe.produced >= probe.fail_after:
                            raise RuntimeError("injected engine failure")
                        probe.produced += 1
                        yield segment
                        if probe.hold_after_first and probe.produced == 1:
                            probe.release.wait(timeout=20)
                        time.sleep(probe.delay)
                    completed = True
                finally:
                    probe.closed_early = not completed
                    probe.finished.set()

            return Transcription(inner.info, segments())

        engine.transcribe = transcribe
        return engine
