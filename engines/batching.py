"""Cross-request batching: concurrent CTranslate2 `generate` calls merged into one.

Every decoding call of every request (a 30 s window, or a batch of VAD chunks) goes through the
engine's `GenerateBatcher`. Calls that can share one CTranslate2 call (same decoding options,
and `<|startoftranscript|>` at the same prompt position, which CTranslate2 requires) are joined,
up to `max_rows` rows, after waiting at most `wait_seconds` for company; the results go back to
each caller in order. Whisper decodes each row independently, so a row's result does not depend
on its neighbours. A failing merged call is retried row group by row group, so one request's bad
input cannot fail another's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("earshot.batching")

SOT = 50258  # <|startoftranscript|> in every Whisper vocabulary


@dataclass
class _Job:
    model: object  # the CTranslate2 Whisper model to run on
    encoder_output: object  # ctranslate2.StorageView, rows × positions × width
    prompts: list[list[int]]
    kwargs: dict
    key: tuple
    done: threading.Event = field(default_factory=threading.Event)
    results: list | None = None
    error: BaseException | None = None

    @property
    def rows(self) -> int:
        return len(self.prompts)


def _freeze(value):
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _sot_position(prompt: list[int], sot: int) -> int:
    try:
        return prompt.index(sot)
    except ValueError:
        return -1


class GenerateBatcher:
    def __init__(
        self,
        *,
        max_rows: int,
        wait_seconds: float,
        workers: int = 1,
        sot: int = SOT,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.max_rows = max(1, max_rows)
        self.wait_seconds = max(0.0, wait_seconds)
        self.sot = sot
        self.on_batch = on_batch
        self._jobs: list[_Job] = []
        self._cond = threading.Condition()
        self._closed = False
        # Requests currently transcribing on this engine: waiting for company only pays with others.
        self.active = 0
        self._workers = [
            threading.Thread(target=self._run, name=f"earshot-batcher-{i}", daemon=True) for i in range(max(1, workers))
        ]
        for worker in self._workers:
            worker.start()

    def enter(self) -> None:
        with self._cond:
            self.active += 1

    def leave(self) -> None:
        with self._cond:
            self.active -= 1

    def generate(self, model, encoder_output, prompts, **kwargs) -> list:
        """Blocking; `model.generate(encoder_output, prompts, **kwargs)`, possibly merged with others."""
        prompts = [list(p) for p in prompts]
        positions = {_sot_position(p, self.sot) for p in prompts}
        key = (id(model), _freeze(kwargs), tuple(sorted(positions)))
        job = _Job(model, encoder_output, prompts, kwargs, key=key)
        with self._cond:
            if self._closed:
                raise RuntimeError("the engine was closed")
            self._jobs.append(job)
            self._cond.notify_all()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.results

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._execute(batch)

    def _take(self) -> list[_Job] | None:
        with self._cond:
            while not self._jobs:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._jobs[0]
            if self.active > 1 and self.wait_seconds > 0:
                deadline = time.monotonic() + self.wait_seconds
                while self._matching_rows(first) < self.max_rows and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch, rows = [], 0
            for job in list(self._jobs):
                if job.key == first.key and (not batch or rows + job.rows <= self.max_rows):
                    batch.append(job)
                    rows += job.rows
                    self._jobs.remove(job)
            return batch

    def _matching_rows(self, first: _Job) -> int:
        return sum(job.rows for job in self._jobs if job.key == first.key)

    def _execute(self, batch: list[_Job]) -> None:
        if self.on_batch is not None:
            self.on_batch(sum(job.rows for job in batch))
        if len(batch) == 1:
            self._alone(batch[0])
            return
        try:
            joined, keep_alive = _join([job.encoder_output for job in batch])
            results = batch[0].model.generate(joined, [p for job in batch for p in job.prompts], **batch[0].kwargs)
            del keep_alive
        except Exception:
            log.warning("merged decoding of %d requests failed; decoding them one by one", len(batch), exc_info=True)
            for job in batch:
                self._alone(job)
            return
        start = 0
        for job in batch:
            job.results = results[start : start + job.rows]
            start += job.rows
            job.done.set()

    def _alone(self, job: _Job) -> None:
        try:
            job.results = job.model.generate(job.encoder_output, job.prompts, **job.kwargs)
        except BaseException as exc:  # delivered to the caller's thread
            job.error = exc
        job.done.set()


def _join(outputs: list) -> tuple[object, object]:
    """One StorageView holding every output's rows (and the array that must outlive the call)."""
    import ctranslate2

    try:
        arrays = [np.asarray(o) for o in outputs]
    except (TypeError, ValueError, RuntimeError):
        arrays = None
    if arrays is not None and all(a.dtype != object and a.ndim == 3 for a in arrays):
        joined = np.ascontiguousarray(np.concatenate(arrays))
        return ctranslate2.StorageView.from_array(joined), joined
    # Device tensors (CUDA): joined on the device through torch's CUDA array interface.
    import torch

    joined = torch.cat([torch.as_tensor(o, device="cuda") for o in outputs]).contiguous()
    return ctranslate2.StorageView.from_array(joined), joined


class BatchedModel:
    """The CTranslate2 model as requests see it: `generate` goes through the batcher."""

    def __init__(self, model, batcher: GenerateBatcher | None) -> None:
        self._model = model
        self._batcher = batcher

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate(self, encoder_output, prompts, **kwargs):
        if self._batcher is None:
            return self._model.generate(encoder_output, prompts, **kwargs)
        return self._batcher.generate(self._model, encoder_output, prompts, **kwargs)
