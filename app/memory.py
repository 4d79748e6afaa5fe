"""Giving freed memory back to the OS, so bursts of large requests do not ratchet the server's
resident size up.

glibc's malloc gives each thread that allocates its own arena (up to 8 per core) and keeps what is
freed there for reuse; a burst of uploads, form parsing and audio decoding across the thread pool
leaves hundreds of MB resident that nothing uses (bench/hostile_forms.py measures it). Two things
bound it: fewer arenas (EARSHOT_MALLOC_ARENAS), and `malloc_trim` whenever the server falls idle.
Other C libraries (musl) have neither call and keep their own behaviour.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("earshot.memory")

M_ARENA_MAX = -8  # glibc's mallopt parameter


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def limit_arenas(count: int) -> bool:
    """Arenas made from now on stay within `count`; 0 leaves glibc's default."""
    if count <= 0 or _LIBC is None:
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, count))


def trim() -> None:
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class ReleaseWhenIdle:
    """ASGI middleware: when the last open request or stream ends, trim the heap in a thread."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.open = 0
        self._trimming: asyncio.Future | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _LIBC is None:
            await self.app(scope, receive, send)
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1
            if self.open == 0 and (self._trimming is None or self._trimming.done()):
                self._trimming = asyncio.get_running_loop().run_in_executor(None, trim)
