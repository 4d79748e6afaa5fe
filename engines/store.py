"""Finding a model on local disk: the model store first, then the Hugging Face cache.

Nothing here goes online unless downloads were explicitly allowed.
"""

from __future__ import annotations

import os
from pathlib import Path


class ModelNotFound(LookupError):
    pass


def offline_switches(allow_downloads: bool) -> None:
    """Make every Hugging Face library refuse network access unless downloads are allowed."""
    if not allow_downloads:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def resolve(model_ref: str, models_dir: Path, allow_downloads: bool = False) -> Path:
    """A local directory for `model_ref`: a path, a folder in the store, or a cached hub snapshot."""
    direct = Path(model_ref).expanduser()
    if direct.is_dir():
        return direct
    for candidate in (models_dir / model_ref, models_dir / model_ref.replace("/", "--")):
        if candidate.is_dir():
            return candidate
    if "/" in model_ref and not direct.is_absolute():
        return _from_hub_cache(model_ref, models_dir, allow_downloads)
    raise ModelNotFound(
        f"Model {model_ref!r} was not found: no directory {direct} and nothing named so in the model store "
        f"{models_dir}. Copy the model folder into the store (see models/README.md)."
    )


def _from_hub_cache(repo_id: str, models_dir: Path, allow_downloads: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for cache_dir in (models_dir / "hub", None):
        try:
            return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
            continue
    if allow_downloads:
        return Path(snapshot_download(repo_id, cache_dir=models_dir / "hub"))
    raise ModelNotFound(
        f"Model {repo_id!r} is not in the model store {models_dir} nor in the Hugging Face cache, and downloads "
        "are off (EARSHOT_ALLOW_DOWNLOADS=0). Download it on a connected machine and copy it into the store."
    )
