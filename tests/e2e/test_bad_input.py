"""Hostile and malformed input on raw sockets: the broker answers or closes the connection, and
keeps serving everyone else with every earlier record intact.

The tests share one broker (module scope) so that the last test can check that nothing that came
before disturbed it. Limits: message.max.bytes 100000, socket.request.max.bytes 1 MiB.
"""

from __future__ import annotations

import dataclasses
import random
import socket
import struct
import time

import pytest

import fjordtest
import kafka_wire
from kafka_wire import Reader, Writer

MESSAGE_MAX_BYTES = 100_000
SOCKET_REQUEST_MAX_BYTES = 1 << 20
CLOSE_TIMEOUT_S = 10.0
UNKNOWN_API_KEY = 9999  # no such key in Kafka's protocol


@dataclasses.dataclass
class Guarded:
    broker: fjordtest.Broker
    topic: str
    values: list[bytes]


@pytest.fixture(scope="module")
def guarded(module_broker_factory) -> Guarded:
    broker = module_broker_factory.start([
        "--message-max-bytes", str(MESSAGE_MAX_BYTES),
        "--socket-request-max-bytes", str(SOCKET_REQUEST_MAX_BYTES),
    ])
    topic = kafka_wire.unique_name("bad-input-canary")
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    values = [f"canary-{i}".encode() for i in range(50)]
    with broker.connect() as conn:
        result = conn.produce(topic, 0, kafka_wire.build_record_batch(values))
    assert result.error_code == kafka_wire.NONE, result
    return Guarded(broker, topic, values)


def _raw_socket(broker: fjordtest.Broker) -> socket.socket:
    return socket.create_connection((broker.host, broker.port), timeout=CLOSE_TIMEOUT_S)


def _closed_by_peer(sock: socket.socket, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    conn = kafka_wire.KafkaConnection.__new__(kafka_wire.KafkaConnection)
    conn.sock = sock
    return conn.closed_by_peer(timeout_s)


def _assert_healthy(broker: fjordtest.Broker) -> None:
    assert broker.is_running(), f"broker died; {broker.describe()}"
    with broker.connect() as conn:
        metadata = conn.metadata()
    assert metadata.brokers, "broker answers Metadata with no brokers"


def _send_closed(sock: socket.socket, payload: bytes) -> bool:
    try:
        sock.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        return True
    return _closed_by_peer(sock)


def test_garbage_with_negative_size_prefix_closes_connection(guarded):
    with _raw_socket(guarded.broker) as sock:
        assert _send_closed(sock, b"\xff" * 64), "connection stayed open after garbage"
    _assert_healthy(guarded.broker)


def test_random_garbage_frame_closes_connection(guarded):
    rng = random.Random(1234)
    for attempt in range(5):
        body = bytearray(rng.randbytes(60))
        body[0:2] = b"\x00\x00"  # Produce...
        body[2:4] = b"\x00\x07"  # ...v7, then nonsense: client id length far past the frame
        body[8:10] = b"\x7f\xff"
        with _raw_socket(guarded.broker) as sock:
            assert _send_closed(sock, struct.pack(">i", len(body)) + bytes(body)), f"attempt {attempt}: still open"
    _assert_healthy(guarded.broker)


def test_frame_larger_than_socket_request_max_bytes_closes_connection(guarded):
    with _raw_socket(guarded.broker) as sock:
        # Only the size prefix and a little body: the broker must refuse on the prefix alone.
        assert _send_closed(sock, struct.pack(">i", SOCKET_REQUEST_MAX_BYTES + 1) + b"\x00" * 64)
    with _raw_socket(guarded.broker) as sock:
        assert _send_closed(sock, struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 64)
    _assert_healthy(guarded.broker)


def test_truncated_request_then_close_leaves_broker_serving(guarded):
    for _ in range(10):
        with _raw_socket(guarded.broker) as sock:
            sock.sendall(struct.pack(">i", 100) + b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x00")
    _assert_healthy(guarded.broker)


def _bytes_until_closed(sock: socket.socket, timeout_s: float = CLOSE_TIMEOUT_S) -> tuple[bytes, bool]:
    """Everything the peer sends until it closes the connection (True) or `timeout_s` passes
    with the connection still open (False)."""
    received = bytearray()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return bytes(received), False
        except (ConnectionResetError, BrokenPipeError):
            return bytes(received), True
        if not chunk:
            return bytes(received), True
        received += chunk
    return bytes(received), False


def test_unknown_api_key_closes_the_connection_without_a_reply(guarded):
    # README ("Bad input"): an unknown API key closes that connection only, as Kafka does.
    with guarded.broker.connect() as conn:
        _, payload = conn.request_bytes(UNKNOWN_API_KEY, 0, b"", header_flexible=False)
        conn.send_frame(payload)
        received, closed = _bytes_until_closed(conn.sock)
    assert closed, f"connection still open {CLOSE_TIMEOUT_S}s after an unknown API key (received {received!r})"
    assert received == b"", f"the broker answered an unknown API key instead of closing: {received!r}"
    _assert_healthy(guarded.broker)


def test_api_versions_with_unsupported_version_answers_v0_error_with_api_keys(guarded):
    with guarded.broker.connect() as conn:
        # A v99 request, framed as a flexible (header v2) ApiVersions request would be (KIP-511).
        body = Writer(flexible=True).string("fjord-e2e").string("0.0.0").tagged_fields().getvalue()
        correlation_id, payload = conn.request_bytes(kafka_wire.API_VERSIONS, 99, body, header_flexible=True)
        conn.send_frame(payload)
        r = Reader(conn.recv_frame())
    assert r.int32() == correlation_id
    # Encoded as an ApiVersions v0 response: error code, then the api key ranges.
    assert r.int16() == kafka_wire.UNSUPPORTED_VERSION
    count = r.int32()
    assert count > 0, "no api keys in the UNSUPPORTED_VERSION answer"
    ranges = {}
    for _ in range(count):
        key, low, high = r.int16(), r.int16(), r.int16()
        assert 0 <= low <= high, (key, low, high)
        ranges[key] = (low, high)
    assert kafka_wire.API_VERSIONS in ranges
    assert ranges[kafka_wire.API_VERSIONS][1] < 99
    _assert_healthy(guarded.broker)


def test_pipelined_requests_are_answered_in_order(guarded):
    with guarded.broker.connect() as conn:
        version = conn.pick_version(kafka_wire.METADATA)
        flexible = version >= kafka_wire.FLEXIBLE_FROM[kafka_wire.METADATA]
        metadata_body = kafka_wire.metadata_request_body(version, None)
        sent = []
        for i in range(30):
            if i % 2:
                cid, payload = conn.request_bytes(kafka_wire.API_VERSIONS, 0, b"", header_flexible=False)
            else:
                cid, payload = conn.request_bytes(kafka_wire.METADATA, version, metadata_body,
                                                  header_flexible=flexible)
            sent.append(cid)
            conn.send_frame(payload)
        received = [struct.unpack_from(">i", conn.recv_frame())[0] for _ in sent]
    assert received == sent


def test_batch_with_wrong_crc_is_refused_with_corrupt_message(guarded):
    batch = bytearray(kafka_wire.build_record_batch([b"will-be-corrupted"] * 3))
    batch[-1] ^= 0x01  # inside the last record: covered by the CRC
    with guarded.broker.connect() as conn:
        result = conn.produce(guarded.topic, 0, bytes(batch))
    assert result.error_code == kafka_wire.CORRUPT_MESSAGE, result
    _assert_healthy(guarded.broker)


def test_batch_with_bad_magic_or_length_is_refused(guarded):
    good = kafka_wire.build_record_batch([b"x"])
    bad_magic = bytearray(good)
    bad_magic[16] = 1  # magic byte: v1 message sets inside a v3+ Produce are invalid
    short_length = bytearray(good)
    short_length[8:12] = struct.pack(">i", len(good) - 12 + 40)  # claims 40 more bytes than sent
    with guarded.broker.connect() as conn:
        for bad in (bad_magic, short_length):
            result = conn.produce(guarded.topic, 0, bytes(bad))
            # 87: INVALID_RECORD; 43: UNSUPPORTED_FOR_MESSAGE_FORMAT (old magic).
            assert result.error_code in (kafka_wire.CORRUPT_MESSAGE, 43, 87), result
    _assert_healthy(guarded.broker)


def test_batch_above_message_max_bytes_is_refused_with_message_too_large(guarded):
    batch = kafka_wire.build_record_batch([random.Random(5).randbytes(MESSAGE_MAX_BYTES + 50_000)])
    assert len(batch) < SOCKET_REQUEST_MAX_BYTES
    with guarded.broker.connect() as conn:
        result = conn.produce(guarded.topic, 0, batch)
    assert result.error_code == kafka_wire.MESSAGE_TOO_LARGE, result
    _assert_healthy(guarded.broker)


def test_topic_max_message_bytes_overrides_broker_limit(guarded):
    topic = kafka_wire.unique_name("small-messages")
    fjordtest.create_topic(guarded.broker.bootstrap, topic, partitions=1, config={"max.message.bytes": "2000"})
    with guarded.broker.connect() as conn:
        too_big = conn.produce(topic, 0, kafka_wire.build_record_batch([b"y" * 5000]))
        fits = conn.produce(topic, 0, kafka_wire.build_record_batch([b"y" * 1000]))
    assert too_big.error_code == kafka_wire.MESSAGE_TOO_LARGE, too_big
    assert (fits.error_code, fits.base_offset) == (kafka_wire.NONE, 0), fits


def test_after_all_bad_input_earlier_data_is_intact_and_clients_work(guarded):
    # Runs last in this module (pytest keeps file order).
    _assert_healthy(guarded.broker)
    records = fjordtest.consume(guarded.broker.bootstrap, guarded.topic, partitions=[0],
                                expected=len(guarded.values))
    assert [(r.offset, r.value) for r in records] == list(enumerate(guarded.values))
    fjordtest.produce(guarded.broker.bootstrap, guarded.topic, [{"value": b"still-works"}])
    records = fjordtest.consume(guarded.broker.bootstrap, guarded.topic, partitions=[0],
                                expected=len(guarded.values) + 1)
    assert [(r.offset, r.value) for r in records][-1] == (len(guarded.values), b"still-works")
