"""Debian's kcat (librdkafka) against Fjord: the simplest real client."""

from __future__ import annotations

import subprocess

import fjordtest

KCAT_TIMEOUT_S = 60


def kcat(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(["kcat", *args], input=input, capture_output=True, text=True, timeout=KCAT_TIMEOUT_S)
    assert result.returncode == 0, f"kcat {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result


def test_kcat_produces_1000_lines_and_consumes_them_back_in_order(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    lines = [f"line-{i:04d}-{'x' * (i % 50)}" for i in range(1000)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-X", "acks=all", input="\n".join(lines) + "\n")
    result = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q")
    assert result.stdout.splitlines() == lines


def test_kcat_metadata_listing_shows_broker_and_topic(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=3)
    result = kcat("-b", broker.bootstrap, "-L", "-t", topic)
    assert "1 brokers:" in result.stdout, result.stdout
    assert f"127.0.0.1:{broker.port}" in result.stdout, result.stdout
    assert f'topic "{topic}" with 3 partitions' in result.stdout, result.stdout
