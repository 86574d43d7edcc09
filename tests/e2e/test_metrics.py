"""The /metrics endpoint scraped by a real Prometheus server (Debian's `prometheus` package): the
produce and fetch byte counters follow what a client sent and read, and retention's removals are
counted by cause. Also: the endpoint answers only GET /metrics, and an explicitly requested
address that is taken stops the broker with a clear message."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import fjordtest
import kafka_wire

WAIT_MAX_S = 60.0
SEGMENT_BYTES = 1024 * 1024
ACKS0_REQUESTS = 200
ACKED_REQUESTS = 37


def _http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _sample_sum(text: str, name: str) -> float:
    """The sum of a series' samples over its labels in a /metrics page."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def _series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of `name` in a /metrics page."""
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1:].rsplit("} ", 1)
            out.append((dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value)))
    return out


def _histogram(text: str, api: str) -> list[tuple[float, float]]:
    """The cumulative request-time buckets of `api` summed over shards: [(upper bound, count)],
    ascending, +Inf last. Empty when the broker has timed no such request."""
    by_bound: dict[float, float] = {}
    for labels, value in _series(text, "fjord_request_duration_seconds_bucket"):
        if labels["api"] == api:
            bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            by_bound[bound] = by_bound.get(bound, 0.0) + value
    return sorted(by_bound.items())


def _check_histogram_series(text: str) -> None:
    """Every request-time series (each shard and API): bucket counts never decrease with the
    bound, and the +Inf bucket equals _count."""
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for labels, value in _series(text, "fjord_request_duration_seconds_bucket"):
        bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        buckets.setdefault((labels["shard"], labels["api"]), []).append((bound, value))
    counts = {(labels["shard"], labels["api"]): value
              for labels, value in _series(text, "fjord_request_duration_seconds_count")}
    assert buckets and set(buckets) == set(counts), (sorted(buckets), sorted(counts))
    for key, series in buckets.items():
        bounds = [bound for bound, _ in series]
        assert bounds == sorted(bounds) and bounds[-1] == float("inf"), (key, bounds)
        values = [value for _, value in series]
        assert values == sorted(values), f"{key}: bucket counts decrease: {series}"
        assert values[-1] == counts[key], f"{key}: +Inf bucket {values[-1]} != _count {counts[key]}"


def _settled_produce_page(metrics_url: str) -> str:
    """A /metrics page in which every Produce request received has been timed (its response
    written, or dropped for acks=0): fjord_produce_requests_total equals the histogram's count."""
    deadline = time.monotonic() + WAIT_MAX_S
    while True:
        page = _http_get(metrics_url)[1]
        received = _sample_sum(page, "fjord_produce_requests_total")
        histogram = _histogram(page, "Produce")
        if histogram and histogram[-1][1] == received:
            return page
        assert time.monotonic() < deadline, f"{received} produce requests received, histogram {histogram}"
        time.sleep(0.1)


class Prometheus:
    """A Prometheus server scraping one target every 500 ms, on a free port, its data in tmp."""

    def __init__(self, target: str, work: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("the prometheus binary is missing (scripts/setup.sh installs Debian's prometheus package)")
        self.port = fjordtest.free_port()
        config = work / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n"
            f"scrape_configs:\n  - job_name: fjord\n    static_configs:\n      - targets: ['{target}']\n")
        self.log = open(work / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            fjordtest._die_with_parent_prefix() + [
                binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def query(self, expression: str) -> float | None:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        try:
            status, body = _http_get(url)
        except OSError:
            return None  # not up yet
        if status != 200:
            return None
        result = json.loads(body)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def query_vector(self, expression: str) -> list[tuple[dict[str, str], float]]:
        """Every (labels, value) of an instant-vector query (empty when Prometheus has none)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        status, body = _http_get(url)
        assert status == 200, (status, body)
        return [(item["metric"], float(item["value"][1])) for item in json.loads(body)["data"]["result"]]

    def wait_for(self, expression: str, done) -> float | None:
        deadline = time.monotonic() + WAIT_MAX_S
        value = None
        while time.monotonic() < deadline:
            value = self.query(expression)
            if value is not None and done(value):
                return value
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}")
            time.sleep(0.3)
        return value

    def target_health(self) -> str:
        status, body = _http_get(f"http://127.0.0.1:{self.port}/api/v1/targets")
        targets = json.loads(body)["data"]["activeTargets"] if status == 200 else []
        return ", ".join(f"{t['health']} {t.get('lastError', '')}" for t in targets)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log.close()


def test_prometheus_scrapes_produce_fetch_and_retention_counters(broker_factory, topic, tmp_path):
    metrics_port = fjordtest.free_port()
    broker = broker_factory.start(["--metrics-listen", f"127.0.0.1:{metrics_port}",
                                   "--log-retention-check-interval-ms", "200"])
    prometheus = Prometheus(f"127.0.0.1:{metrics_port}", tmp_path)
    try:
        fjordtest.create_topic(broker.bootstrap, topic, config={"segment.bytes": str(SEGMENT_BYTES)})
        messages = [{"value": bytes([65 + i % 26]) * 1000, "key": f"k{i}".encode(), "partition": 0}
                    for i in range(5_000)]
        fjordtest.produce(broker.bootstrap, topic, messages, config={"linger.ms": 5, "batch.size": 65536})
        consumed = fjordtest.consume(broker.bootstrap, topic, expected=len(messages))
        assert len(consumed) == len(messages)

        # Batches carry headers and keys: at least the values' bytes went in and came out.
        produced = prometheus.wait_for("sum(fjord_produce_bytes_total)", lambda v: v >= 5_000_000)
        assert produced is not None and produced >= 5_000_000, (produced, prometheus.target_health())
        fetched = prometheus.wait_for("sum(fjord_fetch_bytes_total)", lambda v: v >= 5_000_000)
        assert fetched is not None and fetched >= 5_000_000, fetched

        # Request times (Kafka's TotalTimeMs): one observation per produce request handled, in a
        # cumulative histogram; acks=0 requests, which get no response, count too. The requests
        # are sent on a raw socket, so the test knows exactly how many there are.
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        before = _settled_produce_page(metrics_url)
        counted_before = _histogram(before, "Produce")[-1][1]
        with broker.connect() as conn:
            records = kafka_wire.build_record_batch([b"x" * 100])
            for _ in range(ACKS0_REQUESTS):
                version, flexible, body = conn.produce_request_bytes(f"{topic}-acks0", 0, records, acks=0)
                conn.send_frame(conn.request_bytes(kafka_wire.PRODUCE, version, body, flexible)[1])
            for _ in range(ACKED_REQUESTS):
                result = conn.produce(f"{topic}-acks0", 0, records, acks=1)
                assert result.error_code == kafka_wire.NONE, result
        sent = ACKS0_REQUESTS + ACKED_REQUESTS
        # A request is observed once its response is written, so the last ones may trail the
        # client by a moment: wait (bounded) for the count to reach what was sent, then require it
        # exactly, in the page and in Prometheus.
        deadline = time.monotonic() + WAIT_MAX_S
        page = _http_get(metrics_url)[1]
        while _histogram(page, "Produce")[-1][1] < counted_before + sent and time.monotonic() < deadline:
            time.sleep(0.1)
            page = _http_get(metrics_url)[1]
        produce_histogram = _histogram(page, "Produce")
        assert produce_histogram[-1][1] == counted_before + sent, (counted_before, sent, produce_histogram)
        received = _sample_sum(page, "fjord_produce_requests_total") - _sample_sum(before, "fjord_produce_requests_total")
        assert received == sent, (received, sent)
        _check_histogram_series(page)
        timed = prometheus.wait_for('sum(fjord_request_duration_seconds_count{api="Produce"})',
                                    lambda v: v >= counted_before + sent)
        assert timed == counted_before + sent, (timed, counted_before, sent, prometheus.target_health())
        scraped = prometheus.query_vector('sum by (le) (fjord_request_duration_seconds_bucket{api="Produce"})')
        assert sorted((float(labels["le"]), value) for labels, value in scraped) == produce_histogram, scraped
        fetches = prometheus.query('sum(fjord_request_duration_seconds_count{api="Fetch"})')
        assert fetches is not None and fetches >= 1, fetches

        # DeleteRecords moves the start offset; the next retention pass removes the segments below.
        admin = fjordtest.admin(broker.bootstrap)
        from confluent_kafka import TopicPartition
        deleted = admin.delete_records([TopicPartition(topic, 0, 4_000)], request_timeout=15)
        [(_, future)] = deleted.items()
        assert future.result(timeout=30).low_watermark == 4_000
        removed = prometheus.wait_for('sum(fjord_retention_segments_removed_total{cause="start_offset"})',
                                      lambda v: v >= 1)
        assert removed is not None and removed >= 1, removed
        removed_bytes = prometheus.query('sum(fjord_retention_bytes_removed_total{cause="start_offset"})')
        assert removed_bytes is not None and removed_bytes >= SEGMENT_BYTES * 0.9 * removed, removed_bytes
        assert prometheus.query('sum(fjord_retention_segments_removed_total{cause="time"})') == 0
        partitions = prometheus.wait_for("sum(fjord_partitions)", lambda v: v >= 1)
        assert partitions is not None and partitions >= 1
    finally:
        prometheus.close()


def test_metrics_endpoint_answers_only_get_metrics(broker_factory):
    metrics_port = fjordtest.free_port()
    broker_factory.start(["--metrics-listen", f"127.0.0.1:{metrics_port}"])
    status, body = _http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200 and "# TYPE fjord_produce_bytes_total counter" in body
    assert _http_get(f"http://127.0.0.1:{metrics_port}/")[0] == 404
    with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as conn:
        conn.sendall(b"\x00\xffgarbage\r\n\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.1 400")
    # The broker is still serving Kafka and metrics after that.
    assert _http_get(f"http://127.0.0.1:{metrics_port}/metrics")[0] == 200


def test_a_taken_metrics_address_stops_the_broker_with_a_message(broker_factory):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        broker = broker_factory.create(["--metrics-listen", f"127.0.0.1:{port}"])
        broker.start(wait=False)
        assert broker.wait_exit() == 1
        assert f"cannot serve metrics on 127.0.0.1:{port}" in broker.stderr()
