"""Prometheus metrics, one registry per app (so several apps can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "earshot_requests", "Audio requests by model, response format and HTTP status.",
            ["model", "format", "status"], registry=r,
        )
        self.latency = Histogram(
            "earshot_request_duration_seconds", "Audio request latency (to the last byte for streams).",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.audio_seconds = Counter(
            "earshot_audio_seconds", "Seconds of audio transcribed.", ["model"], registry=r
        )
        self.real_time_factor = Histogram(
            "earshot_real_time_factor", "Processing time divided by audio duration.", ["model"],
            buckets=RTF_BUCKETS, registry=r,
        )
        self.first_delta = Histogram(
            "earshot_time_to_first_delta_seconds", "Time from request to the first streamed delta.", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge("earshot_queue_depth", "Requests waiting for a decoding slot.", registry=r)
        self.in_flight = Gauge("earshot_requests_in_flight", "Requests holding a decoding slot.", registry=r)
        self.rejected = Counter("earshot_rejected", "Requests refused with 429 (queue full).", registry=r)
        self.batch_size = Histogram(
            "earshot_batch_size", "Decoding units per engine batch.", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )
        self.model_load = Histogram(
            "earshot_model_load_seconds", "Model load time.", ["engine", "model"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120), registry=r,
        )
        self.realtime_sessions = Gauge("earshot_realtime_sessions", "Realtime transcription sockets open.", registry=r)
        self.models_loaded = Gauge("earshot_models_loaded", "Models resident in memory.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
