"""How many requests decode at once, how many may wait, and a polite 429 beyond that."""

from __future__ import annotations

import asyncio
import math

from app.errors import APIError


class Admission:
    def __init__(self, slots: int, max_queue: int) -> None:
        self.slots = max(1, slots)
        self.max_queue = max(0, max_queue)
        self.running = 0
        self.waiting = 0
        self._semaphore: asyncio.Semaphore | None = None
        # Moving average of how long a slot is held, to tell clients when to come back.
        self._avg_hold = 1.0

    @property
    def semaphore(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.slots)
        return self._semaphore

    def retry_after(self) -> int:
        waves = (self.waiting + 1) / self.slots
        return max(1, math.ceil(self._avg_hold * waves))

    async def acquire(self) -> Slot:
        if self.running >= self.slots and self.waiting >= self.max_queue:
            seconds = self.retry_after()
            raise APIError(
                f"This server is at capacity ({self.running} requests decoding, {self.waiting} waiting). "
                f"Please retry after {seconds} seconds.",
                status=429,
                type="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": str(seconds)},
            )
        self.waiting += 1
        try:
            # Cancelled here when the client leaves while queued: the place frees itself.
            await self.semaphore.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        return Slot(self)

    def _released(self, held: float) -> None:
        self.running -= 1
        self._avg_hold = 0.8 * self._avg_hold + 0.2 * held
        self.semaphore.release()


class Slot:
    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._taken = asyncio.get_running_loop().time()
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission._released(asyncio.get_running_loop().time() - self._taken)
