"""Cross-request batching: merged CTranslate2 calls give each caller exactly its own results."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest

from engines.batching import GenerateBatcher
from tests.audio_fixtures import encode
from tests.inprocess import Probe
from tests.speech_clips import clip

KW = dict(beam_size=5, return_scores=True, return_no_speech_prob=True, max_length=448)


@pytest.fixture(scope="module")
def ct2(whisper_model_dir):
    from faster_whisper import WhisperModel

    model = WhisperModel(str(whisper_model_dir), device="cpu", compute_type="int8")
    tok = model.hf_tokenizer
    ids = {name: tok.token_to_id(f"<|{name}|>") for name in ("startoftranscript", "en", "transcribe", "translate")}
    rng = np.random.default_rng(0)
    features = rng.standard_normal((1, 80, 3000)).astype(np.float32)
    return model, ids, np.asarray(model.encode(features))


def prompt(ids, task):
    return [ids["startoftranscript"], ids["en"], ids[task]]


def run_threads(fn, n):
    out = [None] * n
    barrier = threading.Barrier(n)

    def work(i):
        barrier.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def entered_batcher(ids, callers: int, wait_seconds: float = 2.0) -> tuple[GenerateBatcher, list[int]]:
    """A batcher that `callers` requests have entered, and the list of its batch sizes."""
    sizes: list[int] = []
    batcher = GenerateBatcher(max_rows=8, wait_seconds=wait_seconds, sot=ids["startoftranscript"],
                              on_batch=sizes.append)
    for _ in range(callers):
        batcher.enter()
    return batcher, sizes


def test_merged_calls_return_each_callers_own_results_in_order(ct2):
    import ctranslate2

    model, ids, encoded = ct2
    batcher, sizes = entered_batcher(ids, callers=6)
    tasks = ["transcribe", "translate", "transcribe", "translate", "transcribe", "translate"]
    expected = {
        task: model.model.generate(ctranslate2.StorageView.from_array(encoded), [prompt(ids, task)], **KW)[0]
        for task in ("transcribe", "translate")
    }

    def call(i):
        view = ctranslate2.StorageView.from_array(encoded.copy())
        return batcher.generate(model.model, view, [prompt(ids, tasks[i])], **KW)

    results = run_threads(call, len(tasks))
    batcher.close()
    assert max(sizes) > 1, sizes  # the calls really were merged
    assert sum(sizes) == len(tasks)
    for task, result in zip(tasks, results):
        assert len(result) == 1
        assert result[0].sequences_ids == expected[task].sequences_ids
        assert result[0].scores == pytest.approx(expected[task].scores, abs=1e-4)


def test_calls_that_cannot_share_a_batch_are_kept_apart(ct2):
    import ctranslate2

    model, ids, encoded = ct2
    batcher, sizes = entered_batcher(ids, callers=2, wait_seconds=0.5)
    # <|startoftranscript|> at another position (after previous text): CTranslate2 cannot merge them.
    calls = [
        lambda: batcher.generate(model.model, ctranslate2.StorageView.from_array(encoded.copy()), [prompt(ids, "transcribe")], **KW),
        lambda: batcher.generate(model.model, ctranslate2.StorageView.from_array(encoded.copy()),
                                 [[ids["startoftranscript"] + 3, 440] + prompt(ids, "transcribe")], **KW),
    ]
    results = run_threads(lambda i: calls[i](), 2)
    batcher.close()
    assert sizes == [1, 1]
    assert all(len(r) == 1 for r in results)


def test_one_bad_call_does_not_fail_its_batch_mates(ct2):
    import ctranslate2

    model, ids, encoded = ct2
    batcher, sizes = entered_batcher(ids, callers=3)
    wrong_width = np.ascontiguousarray(encoded[..., : encoded.shape[-1] // 2])

    def call(i):
        source = wrong_width if i == 1 else encoded.copy()
        try:
            return batcher.generate(model.model, ctranslate2.StorageView.from_array(source), [prompt(ids, "transcribe")], **KW)
        except Exception as exc:  # the bad caller must get its own error
            return exc

    results = run_threads(call, 3)
    batcher.close()
    assert isinstance(results[1], Exception)
    good = model.model.generate(ctranslate2.StorageView.from_array(encoded), [prompt(ids, "transcribe")], **KW)[0]
    for i in (0, 2):
        assert results[i][0].sequences_ids == good.sequences_ids


def test_concurrent_requests_share_batches_through_the_server(probed, script):
    wav = encode(clip("fox"), "wav")
    with probed(Probe(), batch_wait_ms=2000, batch_size=4) as base:
        def call(_):
            with httpx.Client(base_url=base, timeout=120) as http:
                return http.post(
                    "/v1/audio/transcriptions",
                    data={"model": "gpt-4o-transcribe", "chunking_strategy": "auto"},
                    files={"file": ("fox.wav", wav, "audio/wav")},
                )

        responses = run_threads(call, 4)
        text = "".join(s.text for s in script.transcribe).strip()
        for resp in responses:
            assert resp.status_code == 200, resp.text
            assert resp.json()["text"].startswith(text)
        with httpx.Client(base_url=base) as http:
            metrics = http.get("/metrics").text
    buckets = {
        line.split('le="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("earshot_batch_size_bucket")
    }
    # Some decoding call carried rows of more than one request.
    assert buckets["1.0"] < buckets["+Inf"], metrics
