"""The web page at `/`: transcribe a file or the microphone from a browser, on this server's API.

Plain files in app/static/ (no build step), shipped inside the wheel with the package. The page
loads nothing from anywhere else; its Content-Security-Policy says so to the browser too.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.errors import APIError

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# blob: for the AudioWorklet module page.js builds in memory; connect-src 'self' covers the
# same-origin ws:/wss: realtime socket in current browsers.
POLICY = (
    "default-src 'none'; script-src 'self' blob:; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; media-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# Listed once: the package's files do not change while the server runs.
SHIPPED = frozenset(p.name for p in STATIC.iterdir() if p.suffix in TYPES)

router = APIRouter(include_in_schema=False)


def _file(name: str) -> FileResponse:
    # Only the files that ship in static/ by name: no path from the URL ever reaches the disk.
    path = STATIC / name
    if name not in SHIPPED or not path.is_file():
        raise APIError(f"No such file: /static/{name}", status=404, type="invalid_request_error")
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if name.endswith(".html"):
        headers["Content-Security-Policy"] = POLICY
    return FileResponse(path, media_type=TYPES[path.suffix], headers=headers)


@router.get("/")
async def index() -> FileResponse:
    return _file("index.html")


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    return _file(name)
