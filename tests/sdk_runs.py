"""Runs a check script of tests/sdk/ under an official Python SDK: the latest (this project's
environment) or a pinned release (`uv run --with`, fetched on first use), and reads its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SDK_1X = "openai==1.109.1"
SCRIPTS = Path(__file__).parent / "sdk"


def run_sdk_checks(sdk: str, script: str, *args: str) -> dict:
    path = str(SCRIPTS / script)
    if sdk == "latest":
        cmd = [sys.executable, path]
    else:
        uv = Path(sys.executable).parent / "uv"
        cmd = [str(uv), "run", "--no-project", "--quiet", "--python", sys.executable, "--with", sdk, "python", path]
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
