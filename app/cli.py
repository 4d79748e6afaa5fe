"""`earshot` command line: `earshot serve` starts the HTTP server."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import get_args

from app.settings import Settings


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        overrides = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
        settings = Settings(**overrides)
        return serve(settings)
    return 2


def serve(settings: Settings) -> int:
    import uvicorn

    from app.main import create_app

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0


if __name__ == "__main__":
    sys.exit(main())
