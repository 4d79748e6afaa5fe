"""The server hands freed heap back when it falls idle (bench/hostile_forms.py measures what that
saves); here: that the trim runs when the last open request ends, and not while one is open."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from app import memory


def test_glibc_is_there_to_be_told():
    if memory._LIBC is None:
        pytest.skip("not glibc: malloc_trim and mallopt do not exist here")
    assert memory.limit_arenas(4)
    memory.trim()


def test_the_trim_waits_for_the_last_open_request(monkeypatch):
    trims = []
    monkeypatch.setattr(memory, "_LIBC", object())
    monkeypatch.setattr(memory, "trim", lambda: trims.append(threading.current_thread().name))
    release = asyncio.Event()

    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = memory.ReleaseWhenIdle(app)

    async def main():
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            slow = asyncio.create_task(client.get("/slow"))
            await asyncio.sleep(0.05)
            assert (await client.get("/fast")).status_code == 200
            await asyncio.sleep(0.05)
            assert trims == []  # /slow is still open
            release.set()
            await slow
            for _ in range(100):
                if trims:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(main())
    assert len(trims) == 1 and trims[0] != threading.main_thread().name  # off the event loop
