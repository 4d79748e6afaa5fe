"""`earshot models …` (list, verify, export, import, pull) and `earshot health`."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from app.settings import Settings
from engines import store
from engines.model_store import (
    MANIFEST_NAME,
    StoreEntry,
    StoreError,
    entries,
    human_size,
    model_files,
    select,
    verify,
)
from engines.registry import Registry, RegistryError

DESCRIPTION = """\
Manage the local model store (EARSHOT_MODELS_DIR, see models/README.md).

On a host with internet access:   earshot models pull large-v3 pyannote/speaker-diarization-community-1
                                  earshot models export /media/usb/earshot-models.tar
On the air-gapped host:           earshot models import /media/usb/earshot-models.tar
                                  earshot models verify && earshot models list
"""


def add_parsers(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser(
        "models",
        help="list, verify, export, import and pull models in the local store",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models.add_argument("--models-dir", type=Path, default=None, help="the model store [EARSHOT_MODELS_DIR]")
    verbs = models.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="what is in the store, sizes, and which API names route to each model")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    check = verbs.add_parser("verify", help="check every file against the sha256 manifest written at pull/import")
    check.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: all)")
    export = verbs.add_parser("export", help="write models into one tar bundle to carry across an air gap")
    export.add_argument("bundle", type=Path, metavar="BUNDLE.tar")
    export.add_argument("names", nargs="*", metavar="NAME", help="models to export (default: all)")
    imp = verbs.add_parser("import", help="verify a bundle and add its models to the store")
    imp.add_argument("bundle", type=Path, metavar="BUNDLE.tar")
    imp.add_argument("--replace", action="store_true", help="overwrite models that exist with other contents")
    pull = verbs.add_parser(
        "pull",
        help="download models from the Hugging Face hub (needs internet; HF_TOKEN for gated repos)",
        description="Download CTranslate2 Whisper models or pyannote pipelines into the store. NAME is a repo id "
        "(owner/name, optionally @revision) or a faster-whisper name such as large-v3. Gated repos read the "
        "token from HF_TOKEN; HF_ENDPOINT selects a mirror. Run it again to continue an interrupted pull.",
    )
    pull.add_argument("names", nargs="+", metavar="NAME")
    pull.add_argument("--force", action="store_true", help="pull again even if the model is in the store")

    commands.add_parser(
        "health",
        help="exit 0 when the server at EARSHOT_HOST:EARSHOT_PORT answers /health (for container health checks)",
    )


def run_models(args: argparse.Namespace) -> int:
    settings = Settings(**({"models_dir": args.models_dir} if args.models_dir is not None else {}))
    if args.verb != "pull":
        store.offline_switches(settings.allow_downloads)
    try:
        return VERBS[args.verb](args, settings)
    except (StoreError, OSError) as exc:
        print(f"earshot models {args.verb}: {exc}", file=sys.stderr)
        return 1


def _routes(settings: Settings) -> tuple[dict[Path, list[str]], dict[str, list[str]], list[str]]:
    """API names served by each local model folder, names whose model is missing, and warnings."""
    refs: dict[str, list[str]] = {}
    warnings = []
    try:
        for entry in Registry.build(settings.asr_model, settings.resolved_registry_file()):
            refs.setdefault(entry.model, []).append(entry.id)
    except RegistryError as exc:
        warnings.append(str(exc))
    if settings.diarization_model:
        refs.setdefault(settings.diarization_model, []).append("diarization (EARSHOT_DIARIZATION_MODEL)")
    served: dict[Path, list[str]] = {}
    missing: dict[str, list[str]] = {}
    for ref, names in refs.items():
        try:
            path = store.resolve(ref, settings.models_dir).resolve()
        except store.ModelNotFound:
            missing[ref] = names
            continue
        served.setdefault(path, []).extend(names)
    return served, missing, warnings


def _list(args: argparse.Namespace, settings: Settings) -> int:
    found = entries(settings.models_dir)
    served, missing, warnings = _routes(settings)
    rows = [_describe(e, served.get(e.path.resolve(), [])) for e in found]
    if args.json:
        report = {"store": str(settings.models_dir), "models": rows, "missing": missing, "warnings": warnings}
        print(json.dumps(report, indent=1))
        return 0
    print(f"Model store {settings.models_dir}: {len(rows)} model{'s' * (len(rows) != 1)}")
    if rows:
        table = [("NAME", "KIND", "SIZE", "FILES", "MANIFEST", "SERVES")] + [
            (
                r["name"],
                r["kind"],
                human_size(r["bytes"]),
                str(r["files"]),
                r["manifest"],
                ", ".join(r["serves"]) or "-",
            )
            for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        for row in table:
            print("  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
    for ref, names in missing.items():
        print(f"missing: {ref!r}, needed by {', '.join(names)}. {store.how_to_bring_in(ref)}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _describe(entry: StoreEntry, serves: list[str]) -> dict:
    files = model_files(entry.path)
    return {
        "name": entry.name,
        "kind": entry.kind,
        "bytes": sum((entry.path / rel).stat().st_size for rel in files),
        "files": len(files),
        "manifest": "invalid" if entry.manifest_error else ("yes" if entry.manifest else "no"),
        "source": entry.manifest.source if entry.manifest else None,
        "serves": serves,
    }


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    chosen = select(settings.models_dir, args.names)
    if not chosen:
        print(f"the model store {settings.models_dir} holds no models")
        return 0
    damaged = 0
    for entry in chosen:
        verdict = verify(entry)
        if verdict.status == "ok":
            size = human_size(entry.manifest.total_bytes)
            print(f"{entry.name}: ok ({len(entry.manifest.files)} files, {size})")
        elif verdict.status == "unverified":
            print(f"{entry.name}: unverified (no {MANIFEST_NAME}: it was not pulled or imported by earshot)")
        else:
            damaged += 1
            print(f"{entry.name}: DAMAGED")
            for problem in verdict.problems:
                print(f"  {problem}")
        if verdict.extra:
            print(f"  not in the manifest (ignored): {', '.join(verdict.extra)}")
    if damaged:
        print(
            f"{damaged} damaged model{'s' * (damaged != 1)}: import or pull {'them' if damaged > 1 else 'it'} again "
            "(`earshot models import --replace BUNDLE.tar`)",
            file=sys.stderr,
        )
    return 1 if damaged else 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from engines.bundle import export_bundle

    moved = export_bundle(settings.models_dir, args.bundle, args.names)
    for m in moved:
        print(f"{m.name}: exported ({m.files} files, {human_size(m.bytes)})")
    print(f"wrote {args.bundle} ({human_size(args.bundle.stat().st_size)})")
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from engines.bundle import import_bundle

    for m in import_bundle(args.bundle, settings.models_dir, replace=args.replace):
        print(f"{m.name}: {m.action} ({m.files} files, {human_size(m.bytes)}, sha256 checked)")
    return 0


def _pull(args: argparse.Namespace, settings: Settings) -> int:
    from engines.pull import pull

    failed = 0
    for name in args.names:
        try:
            done = pull(name, settings.models_dir, force=args.force)
        except StoreError as exc:
            failed += 1
            print(f"earshot models pull: {exc}", file=sys.stderr)
            continue
        if done.action == "present":
            print(f"{done.name}: already in the store (--force to pull again)")
        else:
            print(
                f"{done.name}: {done.action} {done.repo}@{done.revision} ({done.files} files, {human_size(done.bytes)})"
            )
    return 1 if failed else 0


VERBS = {"list": _list, "verify": _verify, "export": _export, "import": _import, "pull": _pull}


def run_health() -> int:
    settings = Settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{settings.port}/health"
    # No proxies: a health check talks to this container's own port, never through the network.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"earshot health: {url}: {exc}", file=sys.stderr)
        return 1
