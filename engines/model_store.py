"""The model store on disk: which folders hold models, their sha256 manifests, and checking them.

Layout (see models/README.md): `<store>/<name>/` is one model. A folder with `model.bin` and
`config.json` is a CTranslate2 Whisper model; one with `config.yaml` is a pyannote pipeline (its
sub-models in sub-folders). Each model folder may carry `earshot-manifest.json`, written by
`earshot models pull` and `import`: every file's size and sha256, so damage can be named.
Names starting with a dot are work in progress (pulls, imports) and `hub/` is a Hugging Face
cache; neither is a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

MANIFEST_NAME = "earshot-manifest.json"
MANIFEST_FORMAT = "earshot-manifest/1"
HUB_CACHE = "hub"
# Download bookkeeping that huggingface_hub keeps inside a local_dir (`.cache/huggingface/`); never part of a model.
_BOOKKEEPING_DIR = ".cache"
# A model's folder name: what registry.toml and EARSHOT_ASR_MODEL refer to.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class StoreError(Exception):
    """A store operation that cannot go on; the message says what to do."""


def model_kind(folder: Path) -> str:
    if (folder / "model.bin").is_file() and (folder / "config.json").is_file():
        return "whisper"
    if (folder / "config.yaml").is_file():
        return "pipeline"
    return "unknown"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name) or name == HUB_CACHE:
        raise StoreError(
            f"{name!r} cannot be a model name in the store: use letters, digits and . _ + - "
            f"(not starting with a dot, and not {HUB_CACHE!r})"
        )
    return name


@dataclass
class FileRecord:
    size: int
    sha256: str


@dataclass
class Manifest:
    name: str
    kind: str
    files: dict[str, FileRecord]
    source: dict[str, str] | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def to_json(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "created": self.created,
            "files": {p: {"size": f.size, "sha256": f.sha256} for p, f in sorted(self.files.items())},
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> Manifest:
        try:
            if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"not an {MANIFEST_FORMAT} manifest")
            files = {}
            for path, record in data["files"].items():
                check_relative_path(path)
                size, digest = record["size"], record["sha256"]
                if not isinstance(size, int) or size < 0 or not re.fullmatch(r"[0-9a-f]{64}", digest):
                    raise ValueError(f"bad record for {path!r}")
                files[path] = FileRecord(size, digest)
            return cls(
                name=check_name(data["name"]),
                kind=str(data["kind"]),
                files=files,
                source=data.get("source"),
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, AttributeError, ValueError, StoreError) as exc:
            raise StoreError(f"{where} is not a valid manifest: {exc}") from None

    def write(self, folder: Path) -> Path:
        target = folder / MANIFEST_NAME
        partial = folder / (MANIFEST_NAME + ".partial")
        partial.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        os.replace(partial, target)
        return target


def check_relative_path(path: str) -> str:
    """A manifest or bundle path must stay inside its model folder."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"unsafe path {path!r}")
    return path


def read_manifest(folder: Path) -> Manifest | None:
    path = folder / MANIFEST_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path} is not valid JSON: {exc}") from None
    return Manifest.from_json(data, str(path))


def model_files(folder: Path) -> list[str]:
    """Every file of a model folder, as sorted relative paths, without the manifest and download bookkeeping."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != _BOOKKEEPING_DIR]
        for name in files:
            rel = Path(root, name).relative_to(folder).as_posix()
            if rel not in (MANIFEST_NAME, MANIFEST_NAME + ".partial"):
                out.append(rel)
    return sorted(out)


def sha256_of(stream: BinaryIO) -> str:
    return hashlib.file_digest(stream, "sha256").hexdigest()


def build_manifest(folder: Path, name: str, source: dict[str, str] | None = None) -> Manifest:
    files = {}
    for rel in model_files(folder):
        with open(folder / rel, "rb") as f:
            files[rel] = FileRecord(os.fstat(f.fileno()).st_size, sha256_of(f))
    return Manifest(name=name, kind=model_kind(folder), files=files, source=source)


@dataclass
class StoreEntry:
    name: str
    path: Path
    kind: str
    manifest: Manifest | None
    manifest_error: str | None = None


def entries(store: Path) -> list[StoreEntry]:
    if not store.is_dir():
        return []
    out = []
    for folder in sorted(p for p in store.iterdir() if p.is_dir()):
        if folder.name.startswith(".") or folder.name == HUB_CACHE:
            continue
        manifest, error = None, None
        try:
            manifest = read_manifest(folder)
        except StoreError as exc:
            error = str(exc)
        out.append(StoreEntry(folder.name, folder, model_kind(folder), manifest, error))
    return out


def select(store: Path, names: list[str]) -> list[StoreEntry]:
    """The named entries (all when no names are given); an unknown name is an error that lists what is there."""
    everything = entries(store)
    if not names:
        return everything
    by_name = {e.name: e for e in everything}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        present = ", ".join(by_name) or "nothing"
        raise StoreError(f"not in the model store {store}: {', '.join(unknown)} (it holds: {present})")
    return [by_name[n] for n in names]


@dataclass
class Verdict:
    """What `verify` found for one model folder."""

    name: str
    status: str  # "ok", "damaged" or "unverified" (no manifest to check against)
    problems: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


def verify(entry: StoreEntry) -> Verdict:
    if entry.manifest_error is not None:
        return Verdict(entry.name, "damaged", [entry.manifest_error])
    if entry.manifest is None:
        return Verdict(entry.name, "unverified")
    problems = []
    for rel, record in entry.manifest.files.items():
        path = entry.path / rel
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size != record.size:
                    problems.append(f"{rel}: corrupted ({size} bytes, manifest says {record.size})")
                elif (digest := sha256_of(f)) != record.sha256:
                    problems.append(f"{rel}: corrupted (sha256 {digest}, manifest says {record.sha256})")
        except FileNotFoundError:
            problems.append(f"{rel}: missing")
        except IsADirectoryError:
            problems.append(f"{rel}: missing (a directory is in its place)")
    extra = [rel for rel in model_files(entry.path) if rel not in entry.manifest.files]
    return Verdict(entry.name, "damaged" if problems else "ok", problems, extra)


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"
