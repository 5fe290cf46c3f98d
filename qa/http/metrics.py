"""Observability: ``GET /metrics`` (Prometheus text format) and ``GET /api/ready`` (readiness).

Uses ``prometheus-client``, the reference client, rather than hand-written exposition: the
text format's escaping, histogram buckets and ``# HELP``/``# TYPE`` lines are its business.
Each app gets its own ``CollectorRegistry`` (tests build several apps in one process).

Exported:
- ``qa_http_requests_total{endpoint,method,status}`` and ``qa_http_request_duration_seconds{endpoint,method}``
  (the endpoint is the URL rule, e.g. ``/api/passages/<passage_id>``, so ids never become labels);
- ``qa_embedding_seconds{encoder,model,kind}`` and ``qa_embedded_texts_total{encoder,model,kind}``:
  time in each encoder, questions (``query``) and passages apart;
- ``qa_question_cache_hits_total{encoder}``, ``..._misses_total``, ``..._hit_ratio``, ``..._entries``;
- ``qa_passages``, ``qa_documents``, ``qa_ingest_queue_length``, ``qa_ready``.

``/api/health`` stays a liveness check; ``/api/ready`` answers 503 until the index is open
and the encoders are warm (``Library.warm_up`` has run), then 200.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Literal

from flask import Blueprint, Flask, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from qa.http.models import Body
from qa.http.validation import ApiError, endpoint
from qa.vectors.serving import TIME_BUCKETS

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

observability = Blueprint("observability", __name__)



def is_ready(app: Flask) -> tuple[bool, str]:
    """(ready, why not): the index is open and the encoders have been warmed up."""
    library = app.extensions.get("qa_library")
    if library is None:
        return False, "the index is not open yet"
    if not getattr(library, "warmed_up", False):
        return False, "the encoders are warming up"
    return True, "ready"


class ReadyBody(Body):
    status: Literal["ready"]


@observability.get("/api/ready")
@endpoint(responses={200: ReadyBody}, errors=(503,), access="open", tags=["service"])
def ready():
    """Whether the service can answer now: 503 until the index is open and the encoders are warm (always open)."""
    ok, reason = is_ready(current_app)
    if not ok:
        raise ApiError(503, "not_ready", reason)
    return ReadyBody(status="ready")


@observability.get("/metrics")
def metrics():
    registry: CollectorRegistry = current_app.extensions["qa_metrics"].registry
    return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}


class LibraryCollector(Collector):
    """Reads the library's counts and the encoders' numbers at scrape time (nothing is pushed)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator:
        library = self.app.extensions.get("qa_library")
        queue = self.app.extensions.get("qa_ingest_queue")
        ready = GaugeMetricFamily("qa_ready", "1 when the index is open and the encoders are warm")
        ready.add_metric([], 1.0 if is_ready(self.app)[0] else 0.0)
        yield ready
        length = GaugeMetricFamily("qa_ingest_queue_length", "documents waiting in the ingest queue")
        length.add_metric([], float(queue.length()) if queue is not None and hasattr(queue, "length") else 0.0)
        yield length
        if library is None:
            return
        passages = GaugeMetricFamily("qa_passages", "searchable passages in the index")
        passages.add_metric([], float(library.count()))
        yield passages
        documents = GaugeMetricFamily("qa_documents", "documents in the index")
        documents.add_metric([], float(library.count_documents()))
        yield documents
        yield from self._encoder_metrics(library)

    @staticmethod
    def _encoder_metrics(library) -> Iterator:
        stats = library.encoder_stats() if hasattr(library, "encoder_stats") else []
        seconds = HistogramMetricFamily(
            "qa_embedding_seconds", "time spent in one encoder call", labels=["encoder", "model", "kind"]
        )
        texts = CounterMetricFamily(
            "qa_embedded_texts", "texts embedded (cache hits excluded)", labels=["encoder", "model", "kind"]
        )
        hits = CounterMetricFamily("qa_question_cache_hits", "questions served from the cache", labels=["encoder"])
        misses = CounterMetricFamily("qa_question_cache_misses", "questions sent to the encoder", labels=["encoder"])
        ratio = GaugeMetricFamily("qa_question_cache_hit_ratio", "hits / lookups since start", labels=["encoder"])
        entries = GaugeMetricFamily("qa_question_cache_entries", "question vectors held", labels=["encoder"])
        for encoder in stats:
            for kind, times in encoder.calls.items():
                labels = [encoder.encoder, encoder.model, kind]
                cumulative, running = [], 0
                for bound, count in zip(TIME_BUCKETS, times.buckets):
                    running += count
                    cumulative.append((repr(bound), running))
                cumulative.append(("+Inf", times.count))
                seconds.add_metric(labels, cumulative, times.seconds)
                texts.add_metric(labels, times.texts)
            lookups = encoder.cache_hits + encoder.cache_misses
            hits.add_metric([encoder.encoder], encoder.cache_hits)
            misses.add_metric([encoder.encoder], encoder.cache_misses)
            ratio.add_metric([encoder.encoder], encoder.cache_hits / lookups if lookups else 0.0)
            entries.add_metric([encoder.encoder], encoder.cache_size)
        yield from (seconds, texts, hits, misses, ratio, entries)


class AppMetrics:
    """The registry and request metrics of one app."""

    def __init__(self, app: Flask) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "qa_http_requests", "HTTP requests answered", ["endpoint", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "qa_http_request_duration_seconds", "time to answer a request", ["endpoint", "method"],
            buckets=REQUEST_BUCKETS, registry=self.registry,
        )
        self.registry.register(LibraryCollector(app))


def install_metrics(app: Flask) -> AppMetrics:
    """Register ``/metrics``, ``/api/ready`` and the request counters on an app."""
    metrics_of_app = AppMetrics(app)
    app.extensions["qa_metrics"] = metrics_of_app
    app.register_blueprint(observability)

    @app.before_request
    def start_request_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count_request(response):
        started = g.get("metrics_started")
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics_of_app.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        if started is not None:
            metrics_of_app.latency.labels(endpoint, request.method).observe(time.perf_counter() - started)
        return response

    return metrics_of_app
