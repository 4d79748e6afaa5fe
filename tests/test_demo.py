"""`earshot serve --demo`: real Whisper tiny.en from the `demo` extra's wheel, through the Python SDK."""

from __future__ import annotations

import openai

from tests import real_speech as rs
from tests.conftest import start_server, stop_server


def test_demo_serves_real_tiny_en(tmp_path):
    live = start_server(
        {"EARSHOT_MODELS_DIR": str(tmp_path / "store"), "XDG_CACHE_HOME": str(tmp_path / "cache")},
        tmp_path / "server.log",
        timeout=120,
        args=("--demo",),
    )
    try:
        assert "DEMO MODEL: Systran/faster-whisper-tiny.en" in live.log()
        client = openai.OpenAI(base_url=live.v1, api_key="unused", max_retries=0, _strict_response_validation=True)
        assert {"whisper-1", "faster-whisper-tiny.en"} <= {m.id for m in client.models.list()}
        # The model folder is laid out from the wheel, not copied: links to the installed files.
        assert (tmp_path / "cache" / "earshot" / "demo-models" / "faster-whisper-tiny.en" / "model.bin").is_symlink()
        sentence = rs.SENTENCES[1]
        clip = rs.compose([(sentence, rs.hibari(sentence))])
        text = client.audio.transcriptions.create(file=("clip.wav", clip.wav()), model="whisper-1").text
        # Measured: 0 errors in 13 words; a bound with room for other CPUs' int8 rounding.
        assert rs.word_error_rate([(sentence, text)]) <= 0.2, text
    finally:
        stop_server(live)
