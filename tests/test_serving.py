"""Serving behaviour: the event loop stays free while engines work; registry, store and CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from engines.registry import OPENAI_NAMES, Registry, RegistryError
from engines.store import ModelNotFound, resolve
from tests.audio_fixtures import encode, speechlike
from tests.inprocess import Probe


def test_health_answers_while_a_long_file_decodes(probed):
    probe = Probe(hold_after_first=True)
    result = {}
    with probed(probe) as base:
        def transcribe():
            with httpx.Client(base_url=base, timeout=60) as http:
                result["resp"] = http.post(
                    "/v1/audio/transcriptions", data={"model": "whisper-1"},
                    files={"file": ("long.wav", encode(speechlike(65.0), "wav"), "audio/wav")},
                )

        worker = threading.Thread(target=transcribe)
        worker.start()
        for _ in range(200):
            if probe.produced:
                break
            threading.Event().wait(0.05)
        assert probe.produced == 1 and not probe.finished.is_set()
        # The engine is parked mid-file on a worker thread; the loop must still answer.
        with httpx.Client(base_url=base, timeout=5) as http:
            assert http.get("/health").status_code == 200
            assert http.get("/v1/models").status_code == 200
        probe.release.set()
        worker.join(timeout=60)
    assert result["resp"].status_code == 200


def test_registry_defaults_route_every_openai_name(tmp_path):
    registry = Registry.build("/srv/models/faster-whisper-large-v3", None)
    ids = [e.id for e in registry]
    assert ids[: len(OPENAI_NAMES)] == list(OPENAI_NAMES)
    assert {"/srv/models/faster-whisper-large-v3", "faster-whisper-large-v3"} <= set(ids)
    assert registry.get("faster-whisper-large-v3").rules.granularities_need_verbose_json is False
    assert registry.get("whisper-1").rules.stream is False
    assert registry.get("gpt-4o-transcribe").rules.response_formats == {"json", "text"}


def test_registry_file_overrides_rules_and_adds_names(tmp_path):
    (tmp_path / "m").mkdir()
    path = tmp_path / "registry.toml"
    path.write_text(
        '[models."gpt-4o-transcribe"]\nresponse_formats = ["json", "text", "srt"]\n'
        '[models."office"]\nmodel = "m"\nprofile = "whisper-1"\nstream = true\n'
    )
    registry = Registry.build("/srv/asr", path)
    assert registry.get("gpt-4o-transcribe").rules.response_formats == {"json", "text", "srt"}
    assert registry.get("gpt-4o-transcribe").model == "/srv/asr"
    office = registry.get("office")
    assert office.model == str(tmp_path / "m") and office.rules.stream and office.rules.translate


@pytest.mark.parametrize(
    "text,message",
    [
        ('[models."x"]\nprofile = "nope"\n', "unknown profile"),
        ('[models."x"]\nresponse_formats = ["xml"]\n', "unknown response formats"),
        ('[models."x"]\nstreem = true\n', "unknown keys"),
        ("[models\n", "cannot read"),
    ],
)
def test_registry_file_errors_are_named(tmp_path, text, message):
    path = tmp_path / "registry.toml"
    path.write_text(text)
    with pytest.raises(RegistryError, match=message):
        Registry.build("/srv/asr", path)


def test_store_resolution_is_offline(tmp_path):
    (tmp_path / "faster-whisper-small").mkdir()
    (tmp_path / "Systran--faster-whisper-tiny").mkdir()
    assert resolve("faster-whisper-small", tmp_path) == tmp_path / "faster-whisper-small"
    assert resolve("Systran/faster-whisper-tiny", tmp_path) == tmp_path / "Systran--faster-whisper-tiny"
    assert resolve(str(tmp_path / "faster-whisper-small"), Path("/nonexistent")) == tmp_path / "faster-whisper-small"
    with pytest.raises(ModelNotFound, match="neither in the model store"):
        resolve("Systran/faster-whisper-huge", tmp_path)
    with pytest.raises(ModelNotFound):
        resolve("nothing-here", tmp_path)


def test_cli_help_lists_every_setting():
    from app.settings import Settings

    out = subprocess.run(
        [str(Path(sys.executable).parent / "earshot"), "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in Settings.model_fields:
        assert f"EARSHOT_{name.upper()}" in out
