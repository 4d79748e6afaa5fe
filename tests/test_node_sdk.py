"""The official Node SDK (latest, pinned in tests/node/package-lock.json) against the live server."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node(server, wav, tmp_path_factory):
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.fail("Node SDK not installed: run `npm ci --prefix tests/node` (the README's test command does)")
    path = tmp_path_factory.mktemp("node") / "speech.wav"
    path.write_bytes(wav)
    proc = subprocess.run(
        ["node", str(NODE_DIR / "sdk_checks.mjs"), server.v1, str(path), str(NODE_DIR.parent / "assets" / "speech" / "fox.ogg")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def ok(results, name):
    assert "ok" in results[name], results[name]
    return results[name]["ok"]["value"]


def text_of(script, task="transcribe"):
    return "".join(s.text for s in getattr(script, task)).strip()


def test_node_results(node, script, whisper_model_dir):
    assert int(node["version"].split(".")[0]) >= 6
    assert ok(node, "json")["text"] == text_of(script)
    # Node picks its parser from Content-Type: text formats must arrive as text/plain.
    assert ok(node, "text") == text_of(script) + "\n"
    assert ok(node, "srt").startswith("1\n00:00:")
    assert ok(node, "vtt").startswith("WEBVTT\n\n")
    verbose = ok(node, "verbose")
    assert verbose["language"] == "english" and len(verbose["segments"]) == len(script.transcribe)
    assert [w["word"] for w in verbose["words"]] == text_of(script).split()
    logprobs = ok(node, "logprobs")
    assert "".join(t["token"] for t in logprobs["logprobs"]).strip() == text_of(script)
    assert logprobs["usage"]["type"] == "tokens"
    events = ok(node, "stream")
    assert [e["type"] for e in events][-1] == "transcript.text.done"
    assert [e["type"] for e in events].count("transcript.text.done") == 1
    deltas = [e for e in events if e["type"] == "transcript.text.delta"]
    assert deltas and "".join(d["delta"] for d in deltas) == events[-1]["text"] == text_of(script)
    assert sum(len(d["logprobs"]) for d in deltas) == len(events[-1]["logprobs"])
    assert ok(node, "stream_whisper1") == []
    assert ok(node, "to_file")["text"] == text_of(script)
    chunked = ok(node, "chunking_object")["text"]
    repeats = chunked.count(text_of(script))
    assert repeats >= 1 and chunked == " ".join([text_of(script)] * repeats)
    assert ok(node, "translation")["text"] == text_of(script, "translate")
    assert ok(node, "translation_text") == text_of(script, "translate") + "\n"
    assert "whisper-1" in ok(node, "models") and whisper_model_dir.name in ok(node, "models")
    assert ok(node, "model")["id"] == "whisper-1"


@pytest.mark.parametrize(
    "name,cls,status,code",
    [
        ("err_missing_model", "NotFoundError", 404, "model_not_found"),
        ("err_unknown_model", "BadRequestError", 400, "model_not_found"),
        ("err_verbose_gpt4o", "BadRequestError", 400, "unsupported_value"),
        ("err_format", "BadRequestError", 400, None),
        ("err_undecodable_gpt4o", "BadRequestError", 400, "unsupported_format"),
        ("err_too_large", "APIError", 413, None),
    ],
)
def test_node_errors(node, name, cls, status, code):
    got = node[name]
    assert got.get("error") == cls and got["status"] == status and got["code"] == code, got
