"""Observability: /metrics in the Prometheus text format, /api/ready, and the question-vector cache."""

from __future__ import annotations

from conftest import PASSAGE_COUNT
from prometheus_client.parser import text_string_to_metric_families

from qa.http.api import create_app


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics as {(name, sorted labels): value}, parsed by prometheus-client."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_requests_by_endpoint_and_status_with_a_latency_histogram(library):
    client = create_app({}, library=library).test_client()
    client.post("/api/ask", json={"question": "平遥古城"})
    client.post("/api/ask", json={"question": ""})
    client.get("/api/passages/no-such-passage")
    samples = scrape(client)
    ask = "/api/ask"
    assert samples[("qa_http_requests_total", (("endpoint", ask), ("method", "POST"), ("status", "200")))] == 1
    assert samples[("qa_http_requests_total", (("endpoint", ask), ("method", "POST"), ("status", "400")))] == 1
    # a rule, not the id: ids never become label values
    passage = (("endpoint", "/api/passages/<passage_id>"), ("method", "GET"), ("status", "404"))
    assert samples[("qa_http_requests_total", passage)] == 1
    count = samples[("qa_http_request_duration_seconds_count", (("endpoint", ask), ("method", "POST")))]
    bucket = (("endpoint", ask), ("le", "+Inf"), ("method", "POST"))
    infinite = samples[("qa_http_request_duration_seconds_bucket", bucket)]
    assert count == infinite == 2


def test_metrics_report_the_index_size_and_time_in_each_encoder(library):
    client = create_app({}, library=library).test_client()
    client.post("/api/ask", json={"question": "平遥古城的城墙"})
    samples = scrape(client)
    assert samples[("qa_passages", ())] == PASSAGE_COUNT
    assert samples[("qa_documents", ())] == 3
    assert samples[("qa_ingest_queue_length", ())] == 0
    labels = (("encoder", "dense"), ("kind", "query"), ("model", "fake-embedder"))
    assert samples[("qa_embedding_seconds_count", labels)] >= 1
    assert samples[("qa_embedding_seconds_sum", labels)] > 0
    assert samples[("qa_embedded_texts_total", labels)] >= 1


def test_a_repeated_question_is_served_from_the_cache_and_counted_as_a_hit(library):
    client = create_app({}, library=library).test_client()
    before = scrape(client)
    hits = ("qa_question_cache_hits_total", (("encoder", "dense"),))
    first = client.post("/api/ask", json={"question": "老年食堂在哪里？"}).get_json()
    second = client.post("/api/ask", json={"question": "老年食堂在哪里？"}).get_json()
    after = scrape(client)
    assert after[hits] - before.get(hits, 0) == 1
    assert after[("qa_question_cache_hit_ratio", (("encoder", "dense"),))] > 0
    assert [r["id"] for r in first["results"]] == [r["id"] for r in second["results"]]


def test_ready_is_503_until_the_encoders_are_warm_then_200(library):
    client = create_app({}, library=library).test_client()
    response = client.get("/api/ready")
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "not_ready"
    assert scrape(client)[("qa_ready", ())] == 0
    library.warm_up()
    assert client.get("/api/ready").status_code == 200
    assert scrape(client)[("qa_ready", ())] == 1
    assert client.get("/api/health").status_code == 200


def test_apps_built_in_one_process_keep_separate_registries(library):
    first, second = (create_app({}, library=library).test_client() for _ in range(2))
    first.get("/api/health")
    first.get("/api/health")
    second.get("/api/health")
    key = ("qa_http_requests_total", (("endpoint", "/api/health"), ("method", "GET"), ("status", "200")))
    assert scrape(first)[key] == 2 and scrape(second)[key] == 1
