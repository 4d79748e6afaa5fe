"""Finding a model on local disk: the model store first, then the Hugging Face cache.

Nothing here goes online unless downloads were explicitly allowed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from engines import telemetry


class ModelNotFound(LookupError):
    pass


# Read by huggingface_hub, transformers and pyannote.audio.
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def offline_switches(allow_downloads: bool) -> None:
    """Make every Hugging Face library refuse network access unless downloads are allowed.

    Usage telemetry stays off either way (engines/telemetry.py).
    """
    telemetry.switch_off()
    if allow_downloads:
        return
    os.environ.update(_OFFLINE_ENV)
    # huggingface_hub reads its switches once, at import: if something imported it already, tell it too.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
        constants.HF_HUB_DISABLE_TELEMETRY = True


def how_to_bring_in(model_ref: str) -> str:
    repo = model_ref if looks_like_repo_id(model_ref) else "<hugging face repo id>"
    return (
        f"To bring it in: on a host with internet access run `earshot models pull {repo}` and "
        "`earshot models export earshot-models.tar`, carry the bundle over, then run "
        "`earshot models import earshot-models.tar` here (see models/README.md)."
    )


def looks_like_repo_id(model_ref: str) -> bool:
    parts = model_ref.split("/")
    return len(parts) == 2 and all(parts) and not model_ref.startswith((".", "~"))


def resolve(model_ref: str, models_dir: Path, allow_downloads: bool = False) -> Path:
    """A local directory for `model_ref`: a path, a folder in the store, or a cached hub snapshot."""
    direct = Path(model_ref).expanduser()
    if direct.is_dir():
        return direct
    for candidate in (models_dir / model_ref, models_dir / model_ref.replace("/", "--")):
        if candidate.is_dir():
            return candidate
    if looks_like_repo_id(model_ref) and not direct.is_absolute():
        return _from_hub_cache(model_ref, models_dir, allow_downloads)
    where = f"no directory {direct}" if direct.is_absolute() else f"nothing named so in the model store {models_dir}"
    raise ModelNotFound(f"Model {model_ref!r} is not available on this server: {where}. {how_to_bring_in(model_ref)}")


def _from_hub_cache(repo_id: str, models_dir: Path, allow_downloads: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for cache_dir in (models_dir / "hub", None):
        try:
            return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
            continue
    if allow_downloads:
        try:
            return Path(snapshot_download(repo_id, cache_dir=models_dir / "hub"))
        except Exception as exc:  # hub HTTP errors and the HTTP client's own: a 404 for the model, not a 500
            reason = (str(exc).strip().splitlines() or [""])[0]
            raise ModelNotFound(
                f"Model {repo_id!r} is not in the model store {models_dir} and could not be downloaded "
                f"({type(exc).__name__}: {reason}). {how_to_bring_in(repo_id)}"
            ) from exc
    raise ModelNotFound(
        f"Model {repo_id!r} is not available on this server: it is neither in the model store {models_dir} nor "
        f"in the Hugging Face cache, and downloads are off. {how_to_bring_in(repo_id)}"
    )
