"""The /metrics endpoint scraped by a real Prometheus server (Debian's `prometheus` package): the
produce and fetch byte counters follow what a client sent and read, and retention's removals are
counted by cause. Also: the endpoint answers only GET /metrics, and an explicitly requested
address that is taken stops the broker with a clear message."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import fjordtest

WAIT_MAX_S = 60.0
SEGMENT_BYTES = 1024 * 1024


def _http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _sample_sum(text: str, name: str) -> float:
    """The sum of a series' samples over its labels in a /metrics page."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


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
        # histogram Prometheus can take quantiles of; acks=0 requests, which get no response, too.
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        before = _sample_sum(_http_get(metrics_url)[1], "fjord_produce_requests_total")
        fjordtest.produce(broker.bootstrap, f"{topic}-acks0", [{"value": b"x" * 100} for _ in range(200)],
                          config={"acks": 0, "linger.ms": 0})
        # acks=0 delivery reports come before the broker has the requests: read its count directly
        # until it has grown and holds still.
        deadline = time.monotonic() + WAIT_MAX_S
        previous, produce_requests = before, before
        while (produce_requests <= before or produce_requests != previous) and time.monotonic() < deadline:
            time.sleep(0.3)
            previous = produce_requests
            produce_requests = _sample_sum(_http_get(metrics_url)[1], "fjord_produce_requests_total")
        assert produce_requests > before, (before, produce_requests)
        timed = prometheus.wait_for('sum(fjord_request_duration_seconds_count{api="Produce"})',
                                    lambda v: v >= produce_requests)
        assert timed == produce_requests, (timed, produce_requests)
        p99 = prometheus.query('histogram_quantile(0.99, sum by (le) '
                               '(fjord_request_duration_seconds_bucket{api="Produce"}))')
        assert p99 is not None and 0 < p99 <= 30, p99
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
