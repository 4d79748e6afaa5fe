"""Reading the multipart body the way the SDKs and curl send it.

The body is counted while it streams in, so an oversized upload is refused at the limit instead
of being buffered; file parts are spooled to anonymous temporary files that vanish on close.
Field names are normalised: `x[]` and bare repeated `x` become lists, `a[b]=v` becomes `{"a": {"b": v}}`,
and list or object fields sent as JSON strings are decoded.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from app.errors import APIError
from app.protocol import LIST_FIELDS, AudioUpload

MAX_FIELDS = 1000
MAX_FIELD_BYTES = 1024 * 1024
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def too_large(limit: int, seen: int) -> APIError:
    return APIError(
        f"Maximum content size limit ({limit}) exceeded ({seen} bytes read)",
        status=413,
        type="server_error",
        code=None,
        # Resending the same body cannot succeed; tell the SDKs not to retry.
        headers={"x-should-retry": "false"},
    )


@asynccontextmanager
async def read_form(request: Request, limit: int) -> AsyncIterator[dict[str, Any]]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit, int(declared))
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("application/x-www-form-urlencoded"):
        # No file can travel this way, but the fields can: validation then names what is missing.
        body = b"".join([chunk async for chunk in _counted(request, limit)])
        yield normalise(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        return
    if not content_type.lower().startswith("multipart/form-data"):
        raise APIError(
            f"Invalid Content-Type header ({content_type or 'none'}), expected multipart/form-data.",
            param=None,
            code="invalid_content_type",
        )

    parser = MultiPartParser(
        request.headers, _counted(request, limit), max_files=MAX_FIELDS, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise APIError(f"Could not parse multipart form: {exc.message}", code="invalid_multipart") from None
    except ClientDisconnect:
        raise APIError("The request body ended before it was complete.", code="incomplete_body") from None
    try:
        yield normalise(form.multi_items())
    finally:
        await form.close()


async def _counted(request: Request, limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise too_large(limit, seen)
        yield chunk


def normalise(items: list[tuple[str, Any]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    repeated: set[str] = set()
    for raw_key, raw_value in items:
        value = _upload(raw_value) if isinstance(raw_value, UploadFile) else raw_value
        match = _KEY.match(raw_key)
        if match is None:
            fields[raw_key] = value
            continue
        name, brackets = match.group(1), match.group(2)
        path = re.findall(r"\[([^\[\]]*)\]", brackets)
        if not path:
            if name in fields and name not in repeated:
                # A bare repeated field is a list (`include=a&include=b`).
                fields[name] = [fields[name]]
                repeated.add(name)
            if name in repeated:
                fields[name].append(value)
            else:
                fields[name] = value
            continue
        _assign(fields, name, path, value)
    for name in LIST_FIELDS & fields.keys():
        fields[name] = _as_list(fields[name])
    return fields


def _assign(fields: dict[str, Any], name: str, path: list[str], value: Any) -> None:
    container: Any = fields
    key: str = name
    for part in path:
        if part == "":
            existing = container.get(key) if isinstance(container, dict) else None
            if not isinstance(existing, list):
                existing = [] if existing is None else [existing]
                container[key] = existing
            existing.append(value)
            return
        child = container.get(key)
        if not isinstance(child, dict):
            child = {}
            container[key] = child
        container, key = child, part
    container[key] = value


def _as_list(value: Any) -> Any:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError:
                return [value]
            return decoded if isinstance(decoded, list) else [value]
        return [value] if text else []
    return [value]


def _upload(part: UploadFile) -> AudioUpload:
    return AudioUpload(
        filename=part.filename,
        content_type=part.content_type,
        file=part.file,
        size=part.size or 0,
    )
