"""Deployment files: the Dockerfile linted with hadolint, docker-compose.yml validated against the
compose-spec JSON schema, and the pieces both rely on (`earshot health`, the settings in .env.example).

No Docker engine runs here, so the images are not built in the test suite: README ("Deploy with
Docker") lists what that leaves unproven.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from app.settings import Settings
from tests.conftest import ROOT, free_port

HADOLINT = Path(sys.executable).parent / "hadolint"
COMPOSE_FILE = ROOT / "docker-compose.yml"


def compose_schema() -> dict:
    # The compose-spec schema as vendored (with its licence) by check-jsonschema, a dev dependency.
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def interpolate(value, env: dict[str, str]):
    """Compose's `${VAR}`, `${VAR:-default}` and `$$`, as `docker compose config` applies them."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match) -> str:
        if m[0] == "$$":
            return "$"
        name, default = m["name"], m["default"]
        return env.get(name) or (default if default is not None else "")

    return re.sub(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}", substitute, value)


def hadolint(dockerfile: str) -> list[dict]:
    done = subprocess.run(
        [str(HADOLINT), "--no-color", "--format", "json", "-"], input=dockerfile, capture_output=True, text=True
    )
    assert done.stdout.startswith("["), done.stderr
    return json.loads(done.stdout)


def test_dockerfile_passes_hadolint():
    assert hadolint((ROOT / "Dockerfile").read_text()) == []


def test_readme_dockerfile_recipes_pass_hadolint():
    blocks = re.findall(r"```dockerfile\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README shows how to bake models into a derived image"
    for block in blocks:
        assert hadolint(block) == [], block


def test_hadolint_does_flag_a_bad_dockerfile():
    findings = hadolint("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    assert {f["code"] for f in findings} >= {"DL3007", "DL3003", "DL3013"}


def test_dockerfile_targets_and_runtime_contract():
    text = (ROOT / "Dockerfile").read_text()
    stages = {name: base for base, name in re.findall(r"^FROM (\S+) AS (\S+)$", text, re.M)}
    assert (stages["cuda"], stages["cpu"]) == ("${CUDA_IMAGE}", "${CPU_IMAGE}")
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-", text, re.M)
    assert re.search(r"^ARG CPU_IMAGE=python:\$\{PYTHON_VERSION\}-slim", text, re.M)
    assert text.count("uv sync --locked --no-dev --no-editable") == 2
    for target in ("cpu", "cuda"):
        stage = text.split(f"AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert "USER 10001:10001" in stage
        assert "EARSHOT_MODELS_DIR=/models" in stage and 'VOLUME ["/models"]' in stage
        assert (
            'HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["earshot", "health"]' in stage
        )
        assert 'ENTRYPOINT ["earshot"]' in stage and 'CMD ["serve"]' in stage
        assert "COPY models" not in stage


def test_dockerignore_keeps_models_out_of_the_build_context():
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "uv.lock", "README.md", "app", "engines"}
    # Everything the Dockerfile copies in is allowed in.
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    assert {name for line in copied for name in line.split()} <= allowed


@pytest.mark.parametrize("env", [{}, {"EARSHOT_GPU_COUNT": "all", "EARSHOT_PUBLISH": "0.0.0.0:9000"}])
def test_compose_file_matches_the_compose_schema(env):
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(raw)]
    errors += [f"interpolated {e.json_path}: {e.message}" for e in validator.iter_errors(interpolate(raw, env))]
    assert errors == []


def test_compose_schema_rejects_a_broken_file():
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    service = doc["services"]["earshot"]
    service["restart_policy"] = "always"
    service["deploy"]["resources"]["reservations"]["devices"][0]["driver"] = ["nvidia"]
    paths = {e.json_path for e in validator.iter_errors(doc)}
    assert paths == {"$.services.earshot", "$.services.earshot.deploy.resources.reservations.devices[0].driver"}


def test_compose_services():
    doc = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), {})
    gpu, cpu = doc["services"]["earshot"], doc["services"]["earshot-cpu"]
    assert "profiles" not in gpu and cpu["profiles"] == ["cpu"]
    assert (gpu["build"]["target"], cpu["build"]["target"]) == ("cuda", "cpu")
    device = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device == [{"driver": "nvidia", "count": "1", "capabilities": ["gpu"]}]
    assert cpu["environment"]["EARSHOT_DEVICE"] == "cpu"
    for service in (gpu, cpu):
        assert service["volumes"] == [{"type": "bind", "source": "./models", "target": "/models", "read_only": True}]
        assert service["env_file"] == [{"path": ".env", "required": False}]
        assert service["ports"] == ["127.0.0.1:8000:8000"]
        assert service["environment"]["EARSHOT_MODELS_DIR"] == "/models"
        assert service["healthcheck"]["test"] == ["CMD", "earshot", "health"]
        assert service["restart"] == "unless-stopped"
        assert int(service["stop_grace_period"].removesuffix("s")) > Settings.model_fields["shutdown_timeout"].default


def test_env_example_names_real_settings_and_every_compose_variable():
    settings = {f"EARSHOT_{name.upper()}" for name in Settings.model_fields}
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#? ?(EARSHOT_[A-Z_]+)=", example, re.M))
    used_by_compose = set(re.findall(r"\$\{(EARSHOT_[A-Z_]+)", COMPOSE_FILE.read_text()))
    assert used_by_compose <= named
    assert named - used_by_compose <= settings


def test_health_command_checks_the_server(server):
    port = server.base_url.rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARSHOT_")}
    earshot = str(Path(sys.executable).parent / "earshot")
    up = subprocess.run(
        [earshot, "health"], env={**env, "EARSHOT_HOST": "0.0.0.0", "EARSHOT_PORT": port}, capture_output=True
    )
    assert up.returncode == 0, up.stderr
    down = subprocess.run(
        [earshot, "health"], env={**env, "EARSHOT_PORT": str(free_port())}, capture_output=True, text=True
    )
    assert down.returncode == 1 and "/health" in down.stderr
