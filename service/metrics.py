"""Prometheus metrics on a per-app ``CollectorRegistry`` (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: stage latencies are sub-millisecond to a few hundred milliseconds
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

#: the stages a request's time is split into (also the Server-Timing metric names)
STAGES = ("queue", "cache", "encode", "search")


class Metrics:
    """Every metric the service exports, registered on one private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Histogram(
            "uservec_request_duration_seconds",
            "HTTP request latency by endpoint, method and status",
            ["endpoint", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.stage = Histogram(
            "uservec_stage_duration_seconds",
            "latency of one request stage: queue (waiting for a batch or an inference thread), "
            "cache, encode, search",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_size = Histogram(
            "uservec_batch_size",
            "rows (user sequences) per onnxruntime run",
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        self.cache_lookups = Counter(
            "uservec_cache_lookups_total",
            "encoding cache lookups by result (hit or miss)",
            ["backend", "result"],
            registry=reg,
        )
        self.cache_errors = Counter(
            "uservec_cache_errors_total",
            "cache backend failures (served as misses) by operation",
            ["operation"],
            registry=reg,
        )
        self.users = Counter(
            "uservec_users_total", "users processed by endpoint", ["endpoint"], registry=reg
        )
        self.unknown_items = Counter(
            "uservec_unknown_items_total", "request events whose item the model never saw",
            registry=reg,
        )
        self.fallbacks = Counter(
            "uservec_recommend_fallbacks_total", "recommendations served from popularity",
            ["domain"], registry=reg,
        )
        self.in_flight = Gauge(
            "uservec_in_flight_requests", "API requests being processed", registry=reg
        )
        self.receiving = Gauge(
            "uservec_receiving_requests",
            "API requests whose body is still arriving (they hold no in-flight slot)",
            registry=reg,
        )
        self.rejected = Counter(
            "uservec_rejected_requests_total",
            "requests refused before processing by reason (in_flight, body_size, body_timeout)",
            ["reason"], registry=reg,
        )
        self.bundle_info = Gauge(
            "uservec_bundle_info", "the bundle being served (value 1)",
            ["bundle_version", "schema_version", "model_file"], registry=reg,
        )
        self.reloads = Counter(
            "uservec_bundle_reloads_total", "bundle reload attempts by result", ["result"],
            registry=reg,
        )

    def set_bundle(self, version: str, schema_version: int, model_file: str) -> None:
        """Exactly one bundle_info series: the one being served."""
        self.bundle_info.clear()
        self.bundle_info.labels(
            bundle_version=version, schema_version=str(schema_version), model_file=model_file
        ).set(1)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Timings:
    """One request's time per stage: summed while it runs, observed once when it ends."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def observe(self, metrics: Metrics) -> None:
        """Record each stage's total for this request in the per-stage histogram."""
        for stage, seconds in self.stages.items():
            metrics.stage.labels(stage=stage).observe(seconds)

    def header(self, total_s: float) -> str:
        """``Server-Timing`` value, durations in milliseconds."""
        parts = [f"{stage};dur={seconds * 1000:.2f}" for stage, seconds in self.stages.items()]
        parts.append(f"total;dur={total_s * 1000:.2f}")
        return ", ".join(parts)
