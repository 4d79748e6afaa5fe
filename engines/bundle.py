"""Model bundles: one tar file that carries models from the store across an air gap.

A bundle is a plain tar: `<name>/<file>` for every file of every model, then `earshot-bundle.json`
as the last member, holding each model's manifest (sizes and sha256). The index comes last so
export hashes each file once, while writing it, and so a bundle cut short in transit has no index
and cannot pass for whole. Import streams the tar into a staging folder inside the store,
hashing as it writes, checks everything against the index, and only then moves the models into
place: a damaged bundle leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engines.model_store import (
    FileRecord,
    Manifest,
    StoreEntry,
    StoreError,
    check_name,
    check_relative_path,
    model_files,
    read_manifest,
    select,
)

INDEX_NAME = "earshot-bundle.json"
BUNDLE_FORMAT = "earshot-bundle/1"
_MAX_INDEX_BYTES = 64 << 20
_CHUNK = 1 << 20
_MAX_LISTED_PROBLEMS = 20


@dataclass
class Moved:
    name: str
    action: str  # "exported", "added", "replaced" or "unchanged"
    files: int
    bytes: int


class _HashingReader:
    """Hands a file to tarfile while hashing what passes through, so each file is read once."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        return data


def export_bundle(store: Path, bundle: Path, names: list[str]) -> list[Moved]:
    chosen = select(store, names)
    if not chosen:
        raise StoreError(f"the model store {store} holds no models: nothing to export")
    for entry in chosen:
        if entry.manifest_error is not None:
            raise StoreError(f"cannot export {entry.name}: {entry.manifest_error}")
        if entry.kind == "unknown" and entry.manifest is None:
            raise StoreError(
                f"cannot export {entry.name}: {entry.path} is neither a Whisper model (model.bin + config.json) "
                "nor a pipeline (config.yaml)"
            )
    partial = bundle.with_name(bundle.name + ".partial")
    manifests: dict[str, Manifest] = {}
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in chosen:
                manifests[entry.name] = _add_model(tar, entry)
            index = {
                "format": BUNDLE_FORMAT,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "models": {name: m.to_json() for name, m in manifests.items()},
            }
            data = json.dumps(index, indent=1).encode()
            tar.addfile(_member(INDEX_NAME, len(data)), io.BytesIO(data))
        os.replace(partial, bundle)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return [Moved(n, "exported", len(m.files), m.total_bytes) for n, m in manifests.items()]


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    return info


def _add_model(tar: tarfile.TarFile, entry: StoreEntry) -> Manifest:
    """Write one model's files; with a manifest, refuse to carry a file that no longer matches it."""
    known = entry.manifest
    paths = list(known.files) if known is not None else model_files(entry.path)
    records = {}
    for rel in paths:
        try:
            f = open(entry.path / rel, "rb")
        except FileNotFoundError:
            raise StoreError(f"cannot export {entry.name}: {rel} is missing (run `earshot models verify`)") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            if known is not None and size != known.files[rel].size:
                raise StoreError(
                    f"cannot export {entry.name}: {rel} is corrupted ({size} bytes, manifest says "
                    f"{known.files[rel].size}; run `earshot models verify`)"
                )
            reader = _HashingReader(f)
            tar.addfile(_member(f"{entry.name}/{rel}", size), reader)
        digest = reader.digest.hexdigest()
        if known is not None and digest != known.files[rel].sha256:
            raise StoreError(
                f"cannot export {entry.name}: {rel} is corrupted (sha256 {digest}, manifest says "
                f"{known.files[rel].sha256}; run `earshot models verify`)"
            )
        records[rel] = FileRecord(size, digest)
    if known is not None:
        return known
    return Manifest(name=entry.name, kind=entry.kind, files=records)


def import_bundle(bundle: Path, store: Path, replace: bool = False) -> list[Moved]:
    if not bundle.is_file():
        raise StoreError(f"no bundle at {bundle}")
    try:
        store.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=store))
    except OSError as exc:
        raise StoreError(f"cannot write to the model store {store}: {exc}") from None
    try:
        received, index = _unpack(bundle, staging)
        manifests = _check(bundle, received, index)
        return _install(staging, store, manifests, replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(bundle: Path, staging: Path) -> tuple[dict[str, dict[str, FileRecord]], bytes | None]:
    received: dict[str, dict[str, FileRecord]] = {}
    index = None
    try:
        # Stream mode: one sequential pass, as from a USB stick or a pipe.
        with tarfile.open(bundle, "r|*") as tar:
            for member in tar:
                if member.name == INDEX_NAME:
                    if not member.isfile() or member.size > _MAX_INDEX_BYTES:
                        raise StoreError(f"{bundle}: {INDEX_NAME} is not a bundle index")
                    index = tar.extractfile(member).read()
                    if len(index) != member.size:
                        raise tarfile.ReadError("unexpected end of data")
                    continue
                name, _, rel = member.name.rstrip("/").partition("/")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise StoreError(f"{bundle}: {member.name!r} is not a regular file; a bundle holds only files")
                try:
                    check_name(name)
                    check_relative_path(rel)
                except StoreError as exc:
                    raise StoreError(f"{bundle}: member {member.name!r} is refused: {exc}") from None
                files = received.setdefault(name, {})
                if rel in files:
                    raise StoreError(f"{bundle}: {member.name} appears twice")
                files[rel] = _write_member(tar.extractfile(member), member.size, staging / name / rel)
    except (tarfile.TarError, EOFError) as exc:
        raise StoreError(f"{bundle} is truncated or damaged ({exc}); nothing was imported") from None
    return received, index


def _write_member(source: BinaryIO, size: int, dest: Path) -> FileRecord:
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    with open(dest, "xb") as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            written += len(chunk)
    if written != size:
        raise tarfile.ReadError(f"unexpected end of data in {dest.name} ({written} of {size} bytes)")
    return FileRecord(written, digest.hexdigest())


def _check(bundle: Path, received: dict[str, dict[str, FileRecord]], index: bytes | None) -> dict[str, Manifest]:
    if index is None:
        raise StoreError(
            f"{bundle} is incomplete: its index ({INDEX_NAME}, the last member) is missing, so the file was "
            "probably cut short in transit: copy it again; nothing was imported"
        )
    try:
        data = json.loads(index)
        if data.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"not an {BUNDLE_FORMAT} index")
        manifests = {
            name: Manifest.from_json(m, f"{bundle}: the manifest of {name}") for name, m in data["models"].items()
        }
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise StoreError(f"{bundle}: its index is unreadable ({exc}); nothing was imported") from None
    problems = []
    for name, manifest in manifests.items():
        got = received.get(name, {})
        for rel, want in manifest.files.items():
            have = got.get(rel)
            if have is None:
                problems.append(f"{name}/{rel}: missing from the bundle")
            elif have.size != want.size:
                problems.append(f"{name}/{rel}: corrupted ({have.size} bytes, manifest says {want.size})")
            elif have.sha256 != want.sha256:
                problems.append(f"{name}/{rel}: corrupted (sha256 {have.sha256}, manifest says {want.sha256})")
        problems += [f"{name}/{rel}: not in the bundle's index" for rel in got if rel not in manifest.files]
    problems += [f"{name}/: not in the bundle's index" for name in received if name not in manifests]
    if problems:
        listed = problems[:_MAX_LISTED_PROBLEMS]
        more = len(problems) - len(listed)
        raise StoreError(
            f"{bundle} does not match its manifest, nothing was imported:\n  "
            + "\n  ".join(listed)
            + (f"\n  … and {more} more" if more else "")
        )
    return manifests


def _install(staging: Path, store: Path, manifests: dict[str, Manifest], replace: bool) -> list[Moved]:
    actions = {}
    for name, manifest in manifests.items():
        dest = store / name
        if not dest.exists():
            actions[name] = "added"
            continue
        try:
            present = read_manifest(dest)
        except StoreError:
            present = None
        if present is not None and present.files == manifest.files and not replace:
            actions[name] = "unchanged"
        elif replace:
            actions[name] = "replaced"
        else:
            actions[name] = "conflict"
    conflicts = [n for n, a in actions.items() if a == "conflict"]
    if conflicts:
        raise StoreError(
            f"already in the store {store} with other contents: {', '.join(conflicts)}. Pass --replace to "
            "overwrite them; nothing was imported."
        )
    for name, action in actions.items():
        if action == "unchanged":
            continue
        folder = staging / name
        folder.mkdir(exist_ok=True)  # a manifest that lists no files had no members to create it
        manifests[name].write(folder)
        dest = store / name
        if action == "replaced":
            # Into staging (same filesystem, removed below); model names never start with a dot.
            old = staging / ".replaced"
            old.mkdir(exist_ok=True)
            os.rename(dest, old / name)
        os.rename(folder, dest)
    return [Moved(n, actions[n], len(m.files), m.total_bytes) for n, m in manifests.items()]
