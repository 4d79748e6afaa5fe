"""`earshot models pull`: Hugging Face snapshots into the model store, on a host with internet access.

A pull downloads into `<store>/.pull/<name>/` and moves the model into place only when it is
complete and its manifest is written, so the store never shows half a model. Downloads go
through huggingface_hub: a connection that drops mid-file is resumed with a Range request, and
running the same pull again after a failure fetches only the files not yet complete. The token
for gated repositories (pyannote's) comes from the environment (`HF_TOKEN`), and `HF_ENDPOINT`
points at a mirror if there is one.

A pyannote pipeline whose config.yaml names its sub-models by repo id (pyannote 3.x style) gets
them pulled into sub-folders and its config rewritten to `$model/<sub-folder>`, so the folder is
self-contained and loads with no hub.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from engines.model_store import StoreError, build_manifest, check_name, model_kind
from engines.store import looks_like_repo_id

STAGING = ".pull"


@dataclass
class Pulled:
    name: str
    repo: str
    revision: str
    action: str  # "pulled", "replaced" or "present"
    files: int = 0
    bytes: int = 0


def whisper_aliases() -> dict[str, str]:
    """faster-whisper's short names (`large-v3`, `turbo`, …) for its converted models on the hub."""
    from faster_whisper.utils import _MODELS  # private but stable; faster-whisper is pinned in uv.lock

    return dict(_MODELS)


def pull(ref: str, store: Path, force: bool = False) -> Pulled:
    repo, _, revision = ref.partition("@")
    if "/" not in repo:
        repo = whisper_aliases().get(repo, repo)
    if not looks_like_repo_id(repo):
        raise StoreError(
            f"{ref!r} is not a Hugging Face repo id (owner/name[@revision]) nor a faster-whisper model name "
            f"({', '.join(whisper_aliases())})"
        )
    name = check_name(repo.split("/")[1])
    dest = store / name
    if dest.exists() and not force:
        return Pulled(name, repo, revision, "present")
    staging = store / STAGING / name
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write to the model store {store}: {exc}") from None
    commit = _snapshot(repo, revision or None, staging)
    source: dict = {"repo": repo, "revision": commit}
    kind = model_kind(staging)
    if kind == "unknown":
        shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(
            f"{repo} holds neither a CTranslate2 Whisper model (model.bin + config.json) nor a pipeline "
            "(config.yaml); nothing was added to the store"
        )
    if kind == "pipeline" and (submodels := _pull_submodels(staging)):
        source["submodels"] = submodels
    for bookkeeping in list(staging.rglob(".cache")):
        shutil.rmtree(bookkeeping, ignore_errors=True)
    manifest = build_manifest(staging, name, source)
    manifest.write(staging)
    if dest.exists():
        old = store / STAGING / f".{name}.replaced"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dest, old)
        os.rename(staging, dest)
        shutil.rmtree(old, ignore_errors=True)
        action = "replaced"
    else:
        os.rename(staging, dest)
        action = "pulled"
    try:
        (store / STAGING).rmdir()
    except OSError:  # other pulls in progress or failed pulls to continue: keep it
        pass
    return Pulled(name, repo, commit, action, len(manifest.files), manifest.total_bytes)


def _snapshot(repo: str, revision: str | None, local_dir: Path) -> str:
    """Download one repo snapshot into `local_dir`; returns the commit it came from."""
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if constants.HF_HUB_OFFLINE:
        raise StoreError("HF_HUB_OFFLINE is set: `earshot models pull` needs the network; unset it on this host")
    page = f"{constants.ENDPOINT}/{repo}"
    try:
        commit = HfApi().model_info(repo, revision=revision).sha
        # Pinning the commit keeps every file of the snapshot from the same revision.
        snapshot_download(repo, revision=commit, local_dir=local_dir)
    except GatedRepoError:
        raise StoreError(
            f"{repo} is gated: accept its conditions at {page} with your Hugging Face account, then set "
            "HF_TOKEN to a read token of that account and pull again"
        ) from None
    except RevisionNotFoundError:
        raise StoreError(f"{repo} has no revision {revision!r} ({page})") from None
    except RepositoryNotFoundError:
        raise StoreError(f"{repo}: no such repository at {page} (if it is private, set HF_TOKEN)") from None
    except Exception as exc:  # HTTP status errors, and the HTTP client's own connection and timeout errors
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise StoreError(
            f"pulling {repo} failed ({type(exc).__name__}: {reason}). Completed files are kept in {local_dir}: "
            "run the same command again to continue."
        ) from exc
    return commit


def _pull_submodels(folder: Path) -> dict[str, str]:
    """Pull the sub-models a pipeline config names by repo id; point the config at the local copies."""
    import yaml

    config_path = folder / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) or {}
    params = (config.get("pipeline") or {}).get("params") or {}
    pulled = {}
    for key, value in params.items():
        if not isinstance(value, str) or value.startswith("$"):
            continue
        repo, _, revision = value.partition("@")
        if not looks_like_repo_id(repo) or (folder / value).exists():  # a path inside the folder already
            continue
        sub = folder / check_name(key)
        commit = _snapshot(repo, revision or None, sub)
        params[key] = f"$model/{key}"
        pulled[key] = f"{repo}@{commit}"
    if pulled:
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return pulled
