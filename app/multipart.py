"""Reading the multipart body the way the SDKs and curl send it.

The body is counted while it streams in, so an oversized upload is refused at the limit instead
of being buffered; file parts are spooled to anonymous temporary files that vanish on close (the
client's filename is never used as a path). Text parts stay in memory, so their total is bounded
far below the body limit, and an upload that stalls is refused instead of holding its connection
forever. Field names are normalised: `x[]` and bare repeated `x` become lists, `a[b]=v` becomes
`{"a": {"b": v}}`, and list or object fields sent as JSON strings are decoded.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from app.errors import APIError
from app.protocol import LIST_FIELDS, AudioUpload

MAX_FIELDS = 1000
# One audio file is all the API takes; a few more parts are tolerated as unknown fields.
MAX_FILES = 8
# The largest real text field is a speaker reference: a data URL of a few seconds of audio.
MAX_FIELD_BYTES = 1024 * 1024
MAX_TEXT_BYTES = 5 * MAX_FIELD_BYTES
# `a[b][c]` nesting beyond this is no field of any SDK, only work for the parser.
MAX_NAME_DEPTH = 8
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def too_large(limit: int, seen: int, *, declared: bool = False) -> APIError:
    # Refused on the Content-Length header, nothing has been read: say what the client declared.
    how = "declared" if declared else "read"
    return APIError(
        f"Maximum content size limit ({limit}) exceeded ({seen} bytes {how})",
        status=413,
        type="server_error",
        code=None,
        # Resending the same body cannot succeed; tell the SDKs not to retry.
        headers={"x-should-retry": "false"},
    )


def stalled(seconds: float) -> APIError:
    return APIError(
        f"The request body stopped arriving: no data for {seconds:g} seconds.",
        status=408,
        code="request_timeout",
        # The rest of the body may still be on its way; this connection cannot be reused.
        headers={"connection": "close"},
    )


def invalid_multipart(detail: str) -> APIError:
    return APIError(f"Could not parse multipart form: {detail}", code="invalid_multipart")


@asynccontextmanager
async def read_form(request: Request, limit: int) -> AsyncIterator[dict[str, Any]]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit, int(declared), declared=True)
    idle = request.app.state.settings.body_timeout
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("application/x-www-form-urlencoded"):
        yield await _urlencoded(request, limit, idle)
        return
    if not content_type.lower().startswith("multipart/form-data"):
        raise APIError(
            f"Invalid Content-Type header ({content_type or 'none'}), expected multipart/form-data.",
            param=None,
            code="invalid_content_type",
        )

    parser = _BoundedParser(
        request.headers,
        _counted(request, limit, idle),
        max_files=MAX_FILES,
        max_fields=MAX_FIELDS,
        max_part_size=MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise invalid_multipart(exc.message) from None
    except ClientDisconnect:
        raise APIError("The request body ended before it was complete.", code="incomplete_body") from None
    try:
        if not parser.complete:
            # Parts after the cut are lost, and a part cut short would look complete.
            raise invalid_multipart("the body ended before the closing boundary.")
        yield normalise(form.multi_items())
    finally:
        await form.close()


async def _urlencoded(request: Request, limit: int, idle: float) -> dict[str, Any]:
    # No file can travel this way, but the fields can: validation then names what is missing.
    # Only text arrives here, so the text bound applies to the whole body.
    body = bytearray()
    try:
        async for chunk in _counted(request, limit, idle):
            body += chunk
            if len(body) > MAX_TEXT_BYTES:
                raise invalid_multipart(
                    f"form fields exceed {MAX_TEXT_BYTES} bytes; send the file as multipart/form-data."
                )
    except ClientDisconnect:
        raise APIError("The request body ended before it was complete.", code="incomplete_body") from None
    try:
        items = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise invalid_multipart(f"Too many fields. Maximum number of fields is {MAX_FIELDS}.") from None
    return normalise(items)


class _BoundedParser(MultiPartParser):
    """Starlette's parser, plus a bound on all text parts together and a record of whether the
    closing boundary arrived (python-multipart accepts a body that simply stops)."""

    complete = False
    _text_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is None:
            self._text_bytes += end - start
            if self._text_bytes > MAX_TEXT_BYTES:
                raise MultiPartException(f"Text fields exceeded {MAX_TEXT_BYTES // 1024}KB in total.")
        super().on_part_data(data, start, end)

    def on_end(self) -> None:
        self.complete = True


async def _counted(request: Request, limit: int, idle: float) -> AsyncIterator[bytes]:
    seen = 0
    chunks = request.stream()
    while True:
        try:
            chunk = await asyncio.wait_for(anext(chunks), idle) if idle > 0 else await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise stalled(idle) from None
        seen += len(chunk)
        if seen > limit:
            raise too_large(limit, seen)
        yield chunk


def normalise(items: list[tuple[str, Any]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    repeated: set[str] = set()
    for raw_key, raw_value in items:
        value = _upload(raw_value) if isinstance(raw_value, UploadFile) else raw_value
        if raw_key.count("[") > MAX_NAME_DEPTH:
            raise APIError(
                f"Field name nested too deeply (more than {MAX_NAME_DEPTH} levels of brackets).",
                param=raw_key[: raw_key.find("[")][:64] or None,
                code="invalid_field_name",
            )
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
            except (ValueError, RecursionError):  # broken, or nested deeper than the decoder recurses
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
