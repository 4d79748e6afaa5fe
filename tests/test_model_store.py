"""`earshot models`: list, verify, export, import and pull, end to end on a store built from the test models.

The store holds the test-built Whisper model (real CTranslate2 files) and a pipeline folder with
pyannote's layout (config.yaml + sub-model folders; the store treats pipelines as files, so their
bytes are random here). Pulls run the real `earshot models pull` against tests/fake_hub.py on
loopback, through huggingface_hub's own download code.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from app.cli import main
from engines import store as store_module
from engines.model_store import MANIFEST_NAME, human_size
from tests.fake_hub import FakeHub, FakeRepo

EARSHOT = str(Path(sys.executable).parent / "earshot")
PIPELINE_CONFIG = {
    "version": "3.1.0",
    "pipeline": {
        "name": "pyannote.audio.pipelines.SpeakerDiarization",
        "params": {
            "clustering": "VBxClustering",
            "embedding": "$model/embedding",
            "segmentation": "$model/segmentation",
            "plda": "$model/plda",
        },
    },
}


def write_pipeline(folder: Path, config: dict = PIPELINE_CONFIG, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for rel, size in (("segmentation/pytorch_model.bin", 200_000), ("embedding/pytorch_model.bin", 300_000)):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(rng.bytes(size))
    (folder / "plda").mkdir(parents=True, exist_ok=True)
    np.savez(folder / "plda" / "plda.npz", mu=rng.standard_normal(8), psi=rng.standard_normal(8))
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }


@pytest.fixture(scope="module")
def source_store(whisper_model_dir, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("source-store")
    shutil.copytree(whisper_model_dir, store / "tiny-wired")
    write_pipeline(store / "diarization-test")
    (store / "hub").mkdir()  # a Hugging Face cache: not a model
    (store / ".pull" / "interrupted").mkdir(parents=True)  # a pull in progress: not a model
    (store / "registry.toml").write_text('[models."small"]\nmodel = "faster-whisper-small"\nprofile = "native"\n')
    return store


def isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings only from what a test sets; what `offline_switches` changes is put back afterwards."""
    import huggingface_hub.constants as hub_constants

    for name in list(os.environ):
        if name.startswith("EARSHOT_"):
            monkeypatch.delenv(name)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "PYANNOTE_METRICS_ENABLED",
                 "ORT_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.setattr(hub_constants, name, getattr(hub_constants, name))


@pytest.fixture()
def cli(capsys, monkeypatch):
    """`earshot models …` in this process."""
    isolate(monkeypatch)

    def run(store: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        code = main(["models", "--models-dir", str(store), *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="module")
def bundle(source_store, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "earshot-models.tar"
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch)
        assert main(["models", "--models-dir", str(source_store), "export", str(path)]) == 0
    return path


@pytest.fixture()
def imported(bundle, tmp_path, cli) -> Path:
    store = tmp_path / "imported"
    code, out, err = cli(store, "import", str(bundle))
    assert code == 0, err
    return store


def test_list_shows_models_sizes_manifests_and_routes(source_store, cli):
    env = {
        "EARSHOT_ASR_MODEL": "tiny-wired",
        "EARSHOT_DIARIZATION_MODEL": "diarization-test",
        "EARSHOT_REGISTRY_FILE": str(source_store / "registry.toml"),
    }
    code, out, _ = cli(source_store, "list", "--json", env=env)
    assert code == 0
    report = json.loads(out)
    models = {m["name"]: m for m in report["models"]}
    assert set(models) == {"tiny-wired", "diarization-test"}
    whisper, pipeline = models["tiny-wired"], models["diarization-test"]
    assert (whisper["kind"], pipeline["kind"]) == ("whisper", "pipeline")
    for name, row in models.items():
        files = files_of(source_store / name)
        assert row["files"] == len(files) and row["bytes"] == sum(map(len, files.values()))
        assert row["manifest"] == "no"
    assert {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "tiny-wired"} <= set(whisper["serves"])
    assert "small" not in whisper["serves"]
    assert pipeline["serves"] == ["diarization (EARSHOT_DIARIZATION_MODEL)"]
    assert report["missing"] == {"faster-whisper-small": ["small"]}

    code, out, _ = cli(source_store, "list", env=env)
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("tiny-wired "))
    assert row.split()[:3] == ["tiny-wired", "whisper", human_size(whisper["bytes"]).split()[0]]
    assert "whisper-1" in row
    missing = next(line for line in out.splitlines() if line.startswith("missing:"))
    assert "'faster-whisper-small', needed by small" in missing and "earshot models import" in missing


def test_export_then_import_carries_every_file_and_verifies(source_store, bundle, imported, cli):
    with tarfile.open(bundle) as tar:
        members = tar.getnames()
    assert members[-1] == "earshot-bundle.json"
    for name in ("tiny-wired", "diarization-test"):
        assert files_of(imported / name) == files_of(source_store / name)
        assert (imported / name / MANIFEST_NAME).is_file()
    assert sorted(p.name for p in imported.iterdir()) == ["diarization-test", "tiny-wired"]

    code, out, _ = cli(imported, "verify")
    assert code == 0
    expected = []
    for name in ("diarization-test", "tiny-wired"):
        files = files_of(source_store / name)
        expected.append(f"{name}: ok ({len(files)} files, {human_size(sum(map(len, files.values())))})")
    assert out.splitlines() == expected
    code, out, _ = cli(imported, "import", str(bundle))
    assert code == 0 and out.count(": unchanged") == 2
    code, out, _ = cli(imported, "list", "--json")
    assert {m["manifest"] for m in json.loads(out)["models"]} == {"yes"}


def test_verify_names_corrupted_and_missing_files(imported, bundle, cli):
    model_bin = imported / "tiny-wired" / "model.bin"
    with open(model_bin, "r+b") as f:  # same size, one byte different
        f.seek(model_bin.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    (imported / "tiny-wired" / "tokenizer.json").unlink()
    embedding = imported / "diarization-test" / "embedding" / "pytorch_model.bin"
    embedding.write_bytes(embedding.read_bytes()[:1000])
    (imported / "tiny-wired" / "notes.txt").write_text("left by someone")

    code, out, err = cli(imported, "verify")
    assert code == 1
    lines = out.splitlines()
    assert "diarization-test: DAMAGED" in lines and "tiny-wired: DAMAGED" in lines
    assert "  embedding/pytorch_model.bin: corrupted (1000 bytes, manifest says 300000)" in lines
    assert any(line.startswith("  model.bin: corrupted (sha256 ") for line in lines)
    assert "  tokenizer.json: missing" in lines
    assert "  not in the manifest (ignored): notes.txt" in lines
    assert "2 damaged models" in err

    code, out, _ = cli(imported, "verify", "diarization-test")
    assert code == 1 and "tiny-wired" not in out
    code, _, err = cli(imported, "verify", "no-such-model")
    assert code == 1 and "no-such-model" in err and "diarization-test" in err

    # A damaged store is not carried on.
    damaged_bundle = imported.parent / "damaged.tar"
    code, _, err = cli(imported, "export", str(damaged_bundle), "tiny-wired")
    assert code == 1 and "cannot export tiny-wired: model.bin is corrupted" in err
    assert list(imported.parent.glob("damaged.tar*")) == []

    # Importing the bundle again with --replace repairs it.
    code, out, err = cli(imported, "import", "--replace", str(bundle))
    assert code == 0, err
    assert "tiny-wired: replaced" in out and "diarization-test: replaced" in out
    code, out, _ = cli(imported, "verify")
    assert code == 0 and "DAMAGED" not in out
    assert not (imported / "tiny-wired" / "notes.txt").exists()


def _member(bundle: Path, name: str) -> tarfile.TarInfo:
    with tarfile.open(bundle) as tar:
        return tar.getmember(name)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("cut inside model.bin", "is truncated or damaged"),
        ("cut before the index", "is incomplete: its index (earshot-bundle.json, the last member) is missing"),
        ("flipped byte in model.bin", "tiny-wired/model.bin: corrupted (sha256 "),
        ("flipped byte in the index", "does not match its manifest"),
    ],
)
def test_import_refuses_a_damaged_bundle_and_changes_nothing(bundle, tmp_path, cli, damage, message):
    data = bytearray(bundle.read_bytes())
    model_bin = _member(bundle, "tiny-wired/model.bin")
    index = _member(bundle, "earshot-bundle.json")
    if damage == "cut inside model.bin":
        data = data[: model_bin.offset_data + model_bin.size // 2]
    elif damage == "cut before the index":
        data = data[: index.offset]
    elif damage == "flipped byte in model.bin":
        data[model_bin.offset_data + 12345] ^= 0xFF
    else:  # one hex digit of a recorded sha256 changes
        text = data[index.offset_data : index.offset_data + index.size]
        at = index.offset_data + text.index(b'"sha256": "') + len('"sha256": "')
        data[at] = ord("0") if data[at] != ord("0") else ord("1")
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(data))
    store = tmp_path / "store"
    store.mkdir()
    (store / "keep-me").mkdir()
    (store / "keep-me" / "config.yaml").write_text("pipeline: {}\n")

    code, out, err = cli(store, "import", str(damaged))
    assert code == 1, out
    assert message in err and "nothing was imported" in err
    assert sorted(p.name for p in store.iterdir()) == ["keep-me"]  # no model added, no staging left


def test_import_needs_replace_to_overwrite_other_contents(bundle, tmp_path, cli):
    store = tmp_path / "store"
    write_pipeline(store / "diarization-test", seed=1)  # same name, other bytes
    before = files_of(store / "diarization-test")

    code, _, err = cli(store, "import", str(bundle))
    assert code == 1 and "diarization-test" in err and "--replace" in err
    assert files_of(store / "diarization-test") == before
    assert not (store / "tiny-wired").exists()  # all or nothing

    code, out, err = cli(store, "import", "--replace", str(bundle))
    assert code == 0, err
    assert "diarization-test: replaced" in out and "tiny-wired: added" in out
    assert files_of(store / "diarization-test") != before


@pytest.mark.parametrize(
    "kind, message",
    [
        ("parent path", "is refused: unsafe path 'x/../../escaped.txt'"),
        ("absolute path", "is refused: '' cannot be a model name"),
        ("symlink", "is not a regular file"),
    ],
)
def test_import_refuses_members_that_leave_the_store(tmp_path, cli, kind, message):
    bundle = tmp_path / "evil.tar"
    with tarfile.open(bundle, "w") as tar:
        if kind == "symlink":
            info = tarfile.TarInfo("model/config.yaml")
            info.type, info.linkname = tarfile.SYMTYPE, str(tmp_path / "escaped.txt")
            tar.addfile(info)
        else:
            payload = b"escaped\n"
            name = "model/x/../../escaped.txt" if kind == "parent path" else str(tmp_path / "escaped.txt")
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    store = tmp_path / "store"
    code, _, err = cli(store, "import", str(bundle))
    assert code == 1 and message in err, err
    assert not (tmp_path / "escaped.txt").exists()
    assert list(store.iterdir()) == []


# --- pull, against a fake hub on loopback -----------------------------------------------------


def repo_files(model_dir: Path) -> dict[str, bytes]:
    """The test model's files with a random stand-in for model.bin: a pull moves bytes and never loads them.

    24 MB, so that half of it is more than huggingface_hub's 10 MB download chunk: a drop half way
    leaves written bytes to resume from.
    """
    return files_of(model_dir) | {"model.bin": np.random.default_rng(7).bytes(24_000_000)}


def pull(store: Path, hub: FakeHub, *names: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EARSHOT_", "HF_")) and k != "TRANSFORMERS_OFFLINE"}
    env.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(store.parent / "hf-home"), "EARSHOT_MODELS_DIR": str(store)})
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([EARSHOT, "models", "pull", *names], env=env, capture_output=True, text=True, timeout=120)


def test_pull_gated_model_with_token_resumes_a_dropped_download(whisper_model_dir, tmp_path, cli):
    files = repo_files(whisper_model_dir) | {"README.md": b"# a test model\n"}
    store = tmp_path / "store"
    with FakeHub() as hub:
        repo = hub.repos["acme/faster-whisper-tiny-wired"] = FakeRepo(files, token="hf_test_token")
        hub.cut_once.add("acme/faster-whisper-tiny-wired/model.bin")

        refused = pull(store, hub, "acme/faster-whisper-tiny-wired")
        assert refused.returncode == 1
        assert "is gated" in refused.stderr and "HF_TOKEN" in refused.stderr
        assert not (store / "faster-whisper-tiny-wired").exists()

        start = len(hub.requests)
        done = pull(store, hub, "acme/faster-whisper-tiny-wired", token="hf_test_token")
        assert done.returncode == 0, done.stderr
        repo_requests = [r for r in hub.requests[start:] if "faster-whisper-tiny-wired" in r.path]
        model_bin_gets = hub.downloads("acme/faster-whisper-tiny-wired", "model.bin")
        again = pull(store, hub, "acme/faster-whisper-tiny-wired", token="hf_test_token")

    assert f"pulled acme/faster-whisper-tiny-wired@{repo.commit}" in done.stdout
    assert "100%" in done.stderr  # huggingface_hub's progress bar
    # The connection dropped half way through model.bin; the download went on from where it stopped.
    assert [g.range for g in model_bin_gets][0] is None
    resumed_at = [int(g.range.removeprefix("bytes=").rstrip("-")) for g in model_bin_gets[1:]]
    assert resumed_at and 0 < resumed_at[0] <= len(files["model.bin"]) // 2
    assert repo_requests and all(r.authorization == "Bearer hf_test_token" for r in repo_requests)

    folder = store / "faster-whisper-tiny-wired"
    assert files_of(folder) == files
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["source"] == {"repo": "acme/faster-whisper-tiny-wired", "revision": repo.commit}
    assert manifest["kind"] == "whisper" and set(manifest["files"]) == set(files)
    assert cli(store, "verify")[0] == 0
    assert sorted(p.name for p in store.iterdir()) == ["faster-whisper-tiny-wired"]  # no .pull, no .cache
    assert again.returncode == 0 and "already in the store" in again.stdout


def test_a_failed_pull_continues_with_the_missing_files_only(whisper_model_dir, tmp_path):
    files = repo_files(whisper_model_dir)
    store = tmp_path / "store"
    with FakeHub() as hub:
        hub.repos["acme/tiny"] = FakeRepo(files)
        hub.fail["acme/tiny/model.bin"] = 1
        first = pull(store, hub, "acme/tiny")
        assert first.returncode == 1
        assert "run the same command again to continue" in first.stderr
        assert not (store / "tiny").exists()
        second = pull(store, hub, "acme/tiny")
        assert second.returncode == 0, second.stderr
        gets = {path: len(hub.downloads("acme/tiny", path)) for path in files}
    assert gets == {path: 2 if path == "model.bin" else 1 for path in files}
    assert files_of(store / "tiny") == files


def test_pull_pipeline_brings_its_hub_submodels_into_the_folder(tmp_path):
    parts = write_pipeline(tmp_path / "parts")
    segmentation = {
        "pytorch_model.bin": (parts / "segmentation" / "pytorch_model.bin").read_bytes(),
        "config.yaml": b"x: 1\n",
    }
    embedding = {"pytorch_model.bin": (parts / "embedding" / "pytorch_model.bin").read_bytes()}
    store = tmp_path / "store"
    with FakeHub() as hub:
        seg = hub.repos["acme/segmentation-9"] = FakeRepo(segmentation, token="tok")
        emb = hub.repos["acme/embedding-9"] = FakeRepo(embedding, token="tok")
        config = {
            "version": "3.1.0",
            "pipeline": {
                "name": "pyannote.audio.pipelines.SpeakerDiarization",
                "params": {
                    "clustering": "AgglomerativeClustering",
                    "embedding": "acme/embedding-9",
                    "segmentation": f"acme/segmentation-9@{seg.commit}",
                    "segmentation_batch_size": 32,
                },
            },
            "params": {"clustering": {"threshold": 0.7}},
        }
        pipeline = hub.repos["acme/diarization-9"] = FakeRepo(
            {"config.yaml": yaml.safe_dump(config, sort_keys=False).encode(), "README.md": b"gated\n"}, token="tok"
        )
        done = pull(store, hub, "acme/diarization-9", token="tok")
    assert done.returncode == 0, done.stderr
    folder = store / "diarization-9"
    assert files_of(folder / "segmentation") == segmentation and files_of(folder / "embedding") == embedding
    rewritten = yaml.safe_load((folder / "config.yaml").read_text())
    assert rewritten["pipeline"]["params"] == {
        "clustering": "AgglomerativeClustering",
        "embedding": "$model/embedding",
        "segmentation": "$model/segmentation",
        "segmentation_batch_size": 32,
    }
    assert rewritten["params"] == config["params"]
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["kind"] == "pipeline"
    assert manifest["source"] == {
        "repo": "acme/diarization-9",
        "revision": pipeline.commit,
        "submodels": {
            "embedding": f"acme/embedding-9@{emb.commit}",
            "segmentation": f"acme/segmentation-9@{seg.commit}",
        },
    }
    assert set(manifest["files"]) == set(files_of(folder))


def test_pull_refuses_what_is_not_a_model(tmp_path):
    store = tmp_path / "store"
    with FakeHub() as hub:
        hub.repos["acme/just-docs"] = FakeRepo({"README.md": b"nothing here\n"})
        done = pull(store, hub, "acme/just-docs", "acme/does-not-exist")
    assert done.returncode == 1
    assert "acme/just-docs holds neither a CTranslate2 Whisper model" in done.stderr
    assert "acme/does-not-exist: no such repository" in done.stderr
    assert [p.name for p in store.iterdir() if not p.name.startswith(".")] == []


def test_missing_model_message_says_how_to_bring_it_in(tmp_path):
    with pytest.raises(store_module.ModelNotFound) as caught:
        store_module.resolve("faster-whisper-large-v3", tmp_path)
    message = str(caught.value)
    assert "'faster-whisper-large-v3'" in message and str(tmp_path) in message
    assert "earshot models pull" in message and "earshot models import earshot-models.tar" in message
