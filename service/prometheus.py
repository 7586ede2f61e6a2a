"""Prometheus metrics: request counts and latency, encode batch sizes, and per-collection gauges
(items, active model version) read from the registry at scrape time, plus the device."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _StateCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.snapshot()
        items = GaugeMetricFamily("bitseek_items", "Items stored", labels=["collection"])
        version = GaugeMetricFamily(
            "bitseek_model_version", "Active model version", labels=["collection"]
        )
        for name, (count, active) in snap["collections"].items():
            items.add_metric([name], count)
            if active is not None:
                version.add_metric([name], active)
        device = GaugeMetricFamily("bitseek_device_info", "Inference device", labels=["device"])
        device.add_metric([snap["device"]], 1)
        jobs = GaugeMetricFamily("bitseek_jobs_running", "Retraining jobs running")
        jobs.add_metric([], snap["jobs_running"])
        yield from (items, version, device, jobs)


class Metrics:
    """One registry per app, so several apps (tests) can live in one process."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bitseek_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bitseek_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "bitseek_encode_batch_size",
            "Items per micro-batched model call",
            buckets=_SIZES,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(snapshot))
        # labels() hashes and checks its arguments on every call: a few microseconds a request
        self._request_series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def record_request(self, method: str, route: str, status: str, seconds: float) -> None:
        """Count one request and observe its latency (route: a template, so the series are
        bounded)."""
        series = self._request_series.get((method, route, status))
        if series is None:
            series = (
                self.requests.labels(method, route, status),
                self.latency.labels(method, route),
            )
            self._request_series[(method, route, status)] = series
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
