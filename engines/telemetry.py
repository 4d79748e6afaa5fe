"""Every usage-reporting path of the libraries Earshot runs on, switched off before they load.

Earshot runs air-gapped; "no network" means no attempt at all, DNS lookups included, from
Python and from native code alike. Found by tracing the server's libc calls under a loopback-only
network namespace (tests/test_offline.py):

- onnxruntime (silero VAD) ships Microsoft's 1DS telemetry in its Linux wheels too: its threads
  resolved mobile.events.data.microsoft.com, 8-16 times per request that chunks or diarizes.
  ORT_DISABLE_TELEMETRY is read when its environment is created; `disable_telemetry_events()`
  covers a process where something imported it first.
- huggingface_hub (used by pyannote and faster-whisper to find files) reports usage unless told.
- pyannote.audio sends usage metrics unless PYANNOTE_METRICS_ENABLED says otherwise.
- FastAPI instruments requests with OpenTelemetry; the app turns that off (app/main.py).

These are set whatever the environment says: allowing model downloads is not consent to report
usage. The hub's offline switches are separate (engines/store.py).
"""

from __future__ import annotations

import os

SWITCHES = {
    "ORT_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "PYANNOTE_METRICS_ENABLED": "0",
}


def switch_off() -> None:
    os.environ.update(SWITCHES)


def quiet_onnxruntime(onnxruntime) -> None:
    """Call right after importing onnxruntime, before a session exists."""
    onnxruntime.disable_telemetry_events()
