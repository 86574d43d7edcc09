"""A small hand-written Kafka wire codec for the raw-socket tests.

Real clients never send malformed frames, wrong CRCs or unsupported versions, so the tests that
check the broker's answers to those speak the protocol themselves. Only what the tests need is here:
request framing (header v1/v2), ApiVersions v0, Metadata v1-v12, Produce v3-v12, Fetch v4-v12, and
RecordBatch v2 (uncompressed) building and parsing. Every version is picked from the broker's own
ApiVersions answer, the way real clients negotiate.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
import time
import uuid

# Kafka error codes used by the tests (KIP-less constants from the protocol guide).
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
MESSAGE_TOO_LARGE = 10
UNSUPPORTED_VERSION = 35
KAFKA_STORAGE_ERROR = 56

# API keys.
PRODUCE = 0
FETCH = 1
METADATA = 3
API_VERSIONS = 18

# Versions this codec can speak, per API key (inclusive). Produce v13 and Fetch v13+ switch to topic
# ids, Metadata v13 adds a top-level error code: not needed here.
CODEC_VERSIONS = {
    PRODUCE: (3, 12),
    FETCH: (4, 12),
    METADATA: (1, 12),
    API_VERSIONS: (0, 0),
}
FLEXIBLE_FROM = {PRODUCE: 9, FETCH: 12, METADATA: 9, API_VERSIONS: 3}


def _crc32c_table() -> list[int]:
    # Castagnoli polynomial, reflected (the CRC RecordBatch v2 uses).
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC32C check value"


# ---------------------------------------------------------------------------------------------
# Primitive encoding


def _zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def uvarint(value: int) -> bytes:
    assert value >= 0
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(value: int) -> bytes:
    return uvarint(_zigzag(value) & 0xFFFFFFFFFFFFFFFF)


class Writer:
    """Encodes Kafka primitive types; `flexible` selects compact (KIP-482) encodings."""

    def __init__(self, flexible: bool = False) -> None:
        self.flexible = flexible
        self.buf = bytearray()

    def _pack(self, fmt: str, v: int) -> "Writer":
        self.buf += struct.pack(fmt, v)
        return self

    def int8(self, v: int) -> "Writer":
        return self._pack(">b", v)

    def int16(self, v: int) -> "Writer":
        return self._pack(">h", v)

    def int32(self, v: int) -> "Writer":
        return self._pack(">i", v)

    def int64(self, v: int) -> "Writer":
        return self._pack(">q", v)

    def boolean(self, v: bool) -> "Writer":
        return self.int8(1 if v else 0)

    def uuid(self, v: bytes = b"\x00" * 16) -> "Writer":
        assert len(v) == 16
        self.buf += v
        return self

    def _length(self, n: int | None, classic) -> "Writer":
        """A nullable length: compact (n + 1, 0 for null) when flexible, else `classic` (int16
        or int32, -1 for null)."""
        if self.flexible:
            self.buf += uvarint(0 if n is None else n + 1)
        else:
            classic(-1 if n is None else n)
        return self

    def _sized(self, raw: bytes | None, classic) -> "Writer":
        self._length(None if raw is None else len(raw), classic)
        if raw is not None:
            self.buf += raw
        return self

    def string(self, s: str | None) -> "Writer":
        return self._sized(None if s is None else s.encode(), self.int16)

    def bytes_(self, b: bytes | None) -> "Writer":
        return self._sized(b, self.int32)

    def array_len(self, n: int | None) -> "Writer":
        return self._length(n, self.int32)

    def tagged_fields(self) -> "Writer":
        if self.flexible:
            self.buf += uvarint(0)
        return self

    def raw(self, b: bytes) -> "Writer":
        self.buf += b
        return self

    def getvalue(self) -> bytes:
        return bytes(self.buf)


class Reader:
    def __init__(self, data: bytes, flexible: bool = False) -> None:
        self.data = data
        self.pos = 0
        self.flexible = flexible

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"short read: want {n} bytes at {self.pos} of {len(self.data)}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def _unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def int8(self) -> int:
        return self._unpack(">b")

    def int16(self) -> int:
        return self._unpack(">h")

    def int32(self) -> int:
        return self._unpack(">i")

    def uint32(self) -> int:
        return self._unpack(">I")

    def int64(self) -> int:
        return self._unpack(">q")

    def boolean(self) -> bool:
        return self.int8() != 0

    def uuid(self) -> bytes:
        return self._take(16)

    def uvarint(self) -> int:
        shift = 0
        value = 0
        for _ in range(10):
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise ValueError("varint too long")

    def varint(self) -> int:
        raw = self.uvarint()
        return (raw >> 1) ^ -(raw & 1)

    def _length(self, classic) -> int:
        """A nullable length (-1 for null): compact when flexible, else `classic` (int16 or int32)."""
        if self.flexible:
            return self.uvarint() - 1
        return classic()

    def _sized(self, classic) -> bytes | None:
        n = self._length(classic)
        return None if n < 0 else self._take(n)

    def string(self) -> str | None:
        raw = self._sized(self.int16)
        return None if raw is None else raw.decode()

    def bytes_(self) -> bytes | None:
        return self._sized(self.int32)

    def array_len(self) -> int:
        """Element count; a null array reads as -1."""
        return self._length(self.int32)

    def tagged_fields(self) -> None:
        if not self.flexible:
            return
        count = self.uvarint()
        for _ in range(count):
            self.uvarint()  # tag
            self._take(self.uvarint())


# ---------------------------------------------------------------------------------------------
# RecordBatch v2


@dataclasses.dataclass
class Record:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


@dataclasses.dataclass
class Batch:
    base_offset: int
    start: int  # byte position of the batch in the buffer it was parsed from
    end: int
    crc_ok: bool
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    records: list[Record]


def build_record_batch(
    values: list[bytes | None],
    keys: list[bytes | None] | None = None,
    base_timestamp: int | None = None,
    timestamp_deltas: list[int] | None = None,
    headers: list[list[tuple[str, bytes | None]]] | None = None,
) -> bytes:
    """An uncompressed RecordBatch v2 with base offset 0, no producer id, a correct CRC32C."""
    count = len(values)
    assert count > 0
    keys = keys or [None] * count
    timestamp_deltas = timestamp_deltas or [0] * count
    headers = headers or [[] for _ in range(count)]
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    records = bytearray()
    for index in range(count):
        body = bytearray()
        body += struct.pack(">b", 0)  # record attributes
        body += varint(timestamp_deltas[index])
        body += varint(index)  # offset delta
        key = keys[index]
        body += varint(-1) if key is None else varint(len(key)) + key
        value = values[index]
        body += varint(-1) if value is None else varint(len(value)) + value
        body += varint(len(headers[index]))
        for name, header_value in headers[index]:
            raw_name = name.encode()
            body += varint(len(raw_name)) + raw_name
            body += varint(-1) if header_value is None else varint(len(header_value)) + header_value
        records += varint(len(body)) + body
    after_crc = bytearray()
    after_crc += struct.pack(">h", 0)  # attributes: no compression, CreateTime
    after_crc += struct.pack(">i", count - 1)  # last offset delta
    after_crc += struct.pack(">q", base_timestamp)
    after_crc += struct.pack(">q", base_timestamp + max(timestamp_deltas))
    after_crc += struct.pack(">q", -1)  # producer id
    after_crc += struct.pack(">h", -1)  # producer epoch
    after_crc += struct.pack(">i", -1)  # base sequence
    after_crc += struct.pack(">i", count)
    after_crc += records
    # batch length counts from partition leader epoch (4) + magic (1) + crc (4) + the rest.
    batch_length = 4 + 1 + 4 + len(after_crc)
    out = bytearray()
    out += struct.pack(">q", 0)
    out += struct.pack(">i", batch_length)
    out += struct.pack(">i", -1)  # partition leader epoch
    out += struct.pack(">b", 2)  # magic
    out += struct.pack(">I", crc32c(bytes(after_crc)))
    out += after_crc
    return bytes(out)


BATCH_HEADER_SIZE_BYTES = 61  # bytes before the first record
_BATCH_LENGTH_OFFSET_BYTES = 8
_LOG_OVERHEAD_BYTES = 12  # base offset + batch length


def parse_batches(data: bytes, *, decode_records: bool = True) -> list[Batch]:
    """Whole batches from the start of `data`; stops at the first partial or zero-length entry.

    Fetch responses may end in a partial batch and O_DIRECT segment files may end in zero padding:
    both stop the walk without an error. Records of compressed batches are not decoded.
    """
    batches = []
    pos = 0
    while len(data) - pos >= _LOG_OVERHEAD_BYTES:
        base_offset, batch_length = struct.unpack_from(">qi", data, pos)
        end = pos + _LOG_OVERHEAD_BYTES + batch_length
        if batch_length < BATCH_HEADER_SIZE_BYTES - _LOG_OVERHEAD_BYTES or end > len(data):
            break
        r = Reader(data[pos:end])
        r.int64()
        r.int32()
        r.int32()  # partition leader epoch
        magic = r.int8()
        if magic != 2:
            break
        crc = r.uint32()
        crc_ok = crc32c(data[pos + 21 : end]) == crc
        attributes = r.int16()
        last_offset_delta = r.int32()
        base_timestamp = r.int64()
        max_timestamp = r.int64()
        r.int64()
        r.int16()
        r.int32()
        count = r.int32()
        records = []
        if decode_records and crc_ok and attributes & 0x07 == 0:
            for _ in range(count):
                r.varint()  # record length
                r.int8()
                timestamp_delta = r.varint()
                offset_delta = r.varint()
                key_len = r.varint()
                key = r._take(key_len) if key_len >= 0 else None
                value_len = r.varint()
                value = r._take(value_len) if value_len >= 0 else None
                header_count = r.varint()
                headers = []
                for _ in range(header_count):
                    name = r._take(r.varint()).decode()
                    header_len = r.varint()
                    headers.append((name, r._take(header_len) if header_len >= 0 else None))
                records.append(
                    Record(base_offset + offset_delta, base_timestamp + timestamp_delta, key, value, headers)
                )
        batches.append(
            Batch(
                base_offset, pos, end, crc_ok, attributes, last_offset_delta, base_timestamp, max_timestamp, records
            )
        )
        pos = end
    return batches


# ---------------------------------------------------------------------------------------------
# Request bodies (also used to seed the request_decode fuzz target)


def metadata_request_body(version: int, topics: list[str] | None, allow_auto_topic_creation: bool = False) -> bytes:
    w = Writer(version >= FLEXIBLE_FROM[METADATA])
    if topics is None:
        w.array_len(None)
    else:
        w.array_len(len(topics))
        for name in topics:
            if version >= 10:
                w.uuid()
            w.string(name)
            w.tagged_fields()
    if version >= 4:
        w.boolean(allow_auto_topic_creation)
    if 8 <= version <= 10:
        w.boolean(False)  # include cluster authorized operations
    if version >= 8:
        w.boolean(False)  # include topic authorized operations
    w.tagged_fields()
    return w.getvalue()


def produce_request_body(version: int, topic: str, partition: int, records: bytes, acks: int = -1,
                         timeout_ms: int = 10_000) -> bytes:
    """A one-partition Produce request body."""
    w = Writer(version >= FLEXIBLE_FROM[PRODUCE])
    w.string(None)  # transactional id
    w.int16(acks).int32(timeout_ms)
    w.array_len(1).string(topic)
    w.array_len(1).int32(partition).bytes_(records).tagged_fields()
    w.tagged_fields()
    w.tagged_fields()
    return w.getvalue()


def fetch_request_body(version: int, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20,
                       max_wait_ms: int = 100) -> bytes:
    """A one-partition, sessionless consumer Fetch request body."""
    w = Writer(version >= FLEXIBLE_FROM[FETCH])
    w.int32(-1)  # replica id: a consumer
    w.int32(max_wait_ms).int32(1).int32(max_bytes)
    w.int8(0)  # isolation level: read uncommitted
    if version >= 7:
        w.int32(0).int32(-1)  # no fetch session (KIP-227): session id 0, epoch -1
    w.array_len(1).string(topic)
    w.array_len(1).int32(partition)
    if version >= 9:
        w.int32(-1)  # current leader epoch: unknown
    w.int64(offset)
    if version >= 12:
        w.int32(-1)  # last fetched epoch
    if version >= 5:
        w.int64(-1)  # log start offset (followers only)
    w.int32(max_bytes)
    w.tagged_fields()
    w.tagged_fields()
    if version >= 7:
        w.array_len(0)  # forgotten topics
    if version >= 11:
        w.string("")  # rack id
    w.tagged_fields()
    return w.getvalue()


def request_header(api_key: int, api_version: int, correlation_id: int, client_id: str | None,
                   flexible: bool) -> bytes:
    """Request header v1 (v2 when `flexible`: adds empty tagged fields; client id stays non-compact)."""
    w = Writer()
    w.int16(api_key).int16(api_version).int32(correlation_id).string(client_id)
    if flexible:
        w.raw(uvarint(0))
    return w.getvalue()


# ---------------------------------------------------------------------------------------------
# Connection


@dataclasses.dataclass
class PartitionMetadata:
    error_code: int
    index: int
    leader_id: int


@dataclasses.dataclass
class TopicMetadata:
    error_code: int
    name: str | None
    partitions: list[PartitionMetadata]


@dataclasses.dataclass
class Metadata:
    brokers: list[tuple[int, str, int]]
    topics: dict[str, TopicMetadata]


@dataclasses.dataclass
class ProduceResult:
    error_code: int
    base_offset: int
    log_append_time_ms: int
    error_message: str | None


@dataclasses.dataclass
class FetchResult:
    error_code: int
    high_watermark: int
    records: bytes


class KafkaConnection:
    """One TCP connection speaking just enough Kafka; every call is bounded by `timeout_s`."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0, client_id: str = "fjord-e2e-raw") -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.settimeout(timeout_s)
        self.client_id = client_id
        self.correlation_id = 0
        self._versions: dict[int, tuple[int, int]] | None = None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "KafkaConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- framing ------------------------------------------------------------------------------

    def send_frame(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)

    def recv_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(out)} of {n} bytes")
            out += chunk
        return bytes(out)

    def recv_frame(self) -> bytes:
        (size,) = struct.unpack(">i", self.recv_exact(4))
        assert 0 <= size <= 256 * 1024 * 1024, f"implausible response size {size}"
        return self.recv_exact(size)

    def request_bytes(self, api_key: int, api_version: int, body: bytes, header_flexible: bool) -> tuple[int, bytes]:
        """Frames header + body (no size prefix); returns (correlation id, bytes)."""
        self.correlation_id += 1
        header = request_header(api_key, api_version, self.correlation_id, self.client_id, header_flexible)
        return self.correlation_id, header + body

    def roundtrip(self, api_key: int, api_version: int, body: bytes, flexible: bool) -> Reader:
        """Sends a request and returns a reader over the response body (after the header)."""
        correlation_id, payload = self.request_bytes(api_key, api_version, body, flexible)
        self.send_frame(payload)
        response = self.recv_frame()
        r = Reader(response)
        got = r.int32()
        assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
        # ApiVersions responses always use header v0 (KIP-511); others are flexible with the body.
        r.flexible = flexible and api_key != API_VERSIONS
        r.tagged_fields()
        r.flexible = flexible
        return r

    def closed_by_peer(self, timeout_s: float = 10.0) -> bool:
        """True when the broker closes this connection within `timeout_s` (reading discards data)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
        return False

    # -- ApiVersions --------------------------------------------------------------------------

    def api_versions(self) -> dict[int, tuple[int, int]]:
        if self._versions is None:
            r = self.roundtrip(API_VERSIONS, 0, b"", flexible=False)
            error_code = r.int16()
            assert error_code == NONE, f"ApiVersions v0 error {error_code}"
            versions = {}
            for _ in range(r.int32()):
                key, low, high = r.int16(), r.int16(), r.int16()
                versions[key] = (low, high)
            self._versions = versions
        return self._versions

    def pick_version(self, api_key: int) -> int:
        broker_low, broker_high = self.api_versions().get(api_key, (None, None))
        assert broker_low is not None, f"broker does not list api key {api_key} in ApiVersions"
        low, high = CODEC_VERSIONS[api_key]
        version = min(high, broker_high)
        assert version >= max(low, broker_low), (
            f"no common version for api key {api_key}: broker {broker_low}..{broker_high}, test codec {low}..{high}"
        )
        return version

    # -- Metadata -----------------------------------------------------------------------------

    def metadata(self, topics: list[str] | None = None, allow_auto_topic_creation: bool = False) -> Metadata:
        version = self.pick_version(METADATA)
        flexible = version >= FLEXIBLE_FROM[METADATA]
        body = metadata_request_body(version, topics, allow_auto_topic_creation)
        r = self.roundtrip(METADATA, version, body, flexible)
        if version >= 3:
            r.int32()  # throttle
        brokers = []
        for _ in range(r.array_len()):
            node_id, host, port = r.int32(), r.string(), r.int32()
            r.string()  # rack
            r.tagged_fields()
            brokers.append((node_id, host, port))
        if version >= 2:
            r.string()  # cluster id
        r.int32()  # controller id
        result = {}
        for _ in range(r.array_len()):
            error_code = r.int16()
            name = r.string()
            if version >= 10:
                r.uuid()
            r.boolean()  # is internal
            partitions = []
            for _ in range(r.array_len()):
                p_error, index, leader = r.int16(), r.int32(), r.int32()
                if version >= 7:
                    r.int32()  # leader epoch
                for _ in range(3 if version >= 5 else 2):  # replicas, isr, offline
                    for _ in range(r.array_len()):
                        r.int32()
                r.tagged_fields()
                partitions.append(PartitionMetadata(p_error, index, leader))
            if version >= 8:
                r.int32()
            r.tagged_fields()
            result[name or ""] = TopicMetadata(error_code, name, partitions)
        return Metadata(brokers, result)

    # -- Produce ------------------------------------------------------------------------------

    def produce_request_bytes(
        self, topic: str, partition: int, records: bytes, acks: int = -1, timeout_ms: int = 10_000
    ) -> tuple[int, bool, bytes]:
        """(version, flexible, body) of a one-partition Produce request."""
        version = self.pick_version(PRODUCE)
        flexible = version >= FLEXIBLE_FROM[PRODUCE]
        return version, flexible, produce_request_body(version, topic, partition, records, acks, timeout_ms)

    def produce(
        self, topic: str, partition: int, records: bytes, acks: int = -1, timeout_ms: int = 10_000
    ) -> ProduceResult:
        assert acks != 0, "acks=0 gets no response; send the frame by hand instead"
        version, flexible, body = self.produce_request_bytes(topic, partition, records, acks, timeout_ms)
        r = self.roundtrip(PRODUCE, version, body, flexible)
        error_code = _single_partition(r, "produce")
        base_offset = r.int64()
        log_append_time_ms = r.int64()
        if version >= 5:
            r.int64()  # log start offset
        error_message = None
        if version >= 8:
            for _ in range(r.array_len()):
                r.int32()
                r.string()
                r.tagged_fields()
            error_message = r.string()
        return ProduceResult(error_code, base_offset, log_append_time_ms, error_message)

    # -- Fetch --------------------------------------------------------------------------------

    def fetch(
        self, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20, max_wait_ms: int = 100
    ) -> FetchResult:
        version = self.pick_version(FETCH)
        flexible = version >= FLEXIBLE_FROM[FETCH]
        body = fetch_request_body(version, topic, partition, offset, max_bytes, max_wait_ms)
        r = self.roundtrip(FETCH, version, body, flexible)
        r.int32()  # throttle
        if version >= 7:
            top_error = r.int16()
            r.int32()  # session id
            assert top_error == NONE, f"fetch top-level error {top_error}"
        error_code = _single_partition(r, "fetch")
        high_watermark, _, records = _fetch_partition_rest(r, version)
        return FetchResult(error_code, high_watermark, records)


def _single_partition(r: Reader, api: str) -> int:
    """Reads the head of a one-topic, one-partition response up to the partition's error code;
    returns it."""
    topic_count = r.array_len()
    assert topic_count == 1, f"{api} response has {topic_count} topics"
    r.string()
    partition_count = r.array_len()
    assert partition_count == 1, f"{api} response has {partition_count} partitions"
    r.int32()  # partition index
    return r.int16()


def _fetch_partition_rest(r: Reader, version: int) -> tuple[int, int, bytes]:
    """Reads a Fetch response partition after its error code: (high watermark, log start offset
    or -1 before v5, records)."""
    high_watermark = r.int64()
    r.int64()  # last stable offset
    log_start = r.int64() if version >= 5 else -1
    aborted = r.array_len()
    for _ in range(max(aborted, 0)):
        r.int64()  # producer id
        r.int64()  # first offset
        r.tagged_fields()
    if version >= 11:
        r.int32()  # preferred read replica
    return high_watermark, log_start, r.bytes_() or b""


def wait_for_metadata(host: str, port: int, timeout_s: float) -> Metadata:
    """Polls until a Metadata request succeeds with at least one broker; raises on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with KafkaConnection(host, port, timeout_s=min(5.0, max(0.5, deadline - time.monotonic()))) as conn:
                metadata = conn.metadata()
                if metadata.brokers:
                    return metadata
                last_error = AssertionError("metadata lists no broker")
        except (OSError, ValueError, AssertionError) as e:
            last_error = e
        time.sleep(0.1)
    raise TimeoutError(f"no Metadata answer within {timeout_s}s: {last_error!r}")


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------------
# Added for test_compat.py: batches with a chosen header maxTimestamp (optionally gzip), and a
# multi-partition Fetch.

COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
BATCH_MAX_TIMESTAMP_OFFSET_BYTES = 35  # base offset 8 + length 4 + epoch 4 + magic 1 + crc 4 + attrs 2 + lod 4 + base ts 8
BATCH_CRC_OFFSET_BYTES = 17
BATCH_CRC_COVERS_FROM_BYTES = 21


def build_record_batch_with_header_max_timestamp(
    values: list[bytes | None],
    base_timestamp: int,
    timestamp_deltas: list[int],
    header_max_timestamp: int,
    compression: int = COMPRESSION_NONE,
) -> bytes:
    """A RecordBatch v2 (base offset 0, no producer id, CreateTime) whose records carry
    `base_timestamp + delta` but whose header maxTimestamp is `header_max_timestamp` (any value,
    e.g. -1 or far off the records). `compression` is COMPRESSION_NONE or COMPRESSION_GZIP (the
    records section gzip'ed, as Kafka's GZIP codec expects). The CRC32C is correct for the bytes
    sent."""
    import gzip

    assert compression in (COMPRESSION_NONE, COMPRESSION_GZIP)
    plain = build_record_batch(values, base_timestamp=base_timestamp, timestamp_deltas=timestamp_deltas)
    records = plain[BATCH_HEADER_SIZE_BYTES:]
    if compression == COMPRESSION_GZIP:
        records = gzip.compress(records)
    count = len(values)
    after_crc = bytearray()
    after_crc += struct.pack(">h", compression)  # attributes: codec, CreateTime
    after_crc += struct.pack(">i", count - 1)
    after_crc += struct.pack(">q", base_timestamp)
    after_crc += struct.pack(">q", header_max_timestamp)
    after_crc += struct.pack(">q", -1)
    after_crc += struct.pack(">h", -1)
    after_crc += struct.pack(">i", -1)
    after_crc += struct.pack(">i", count)
    after_crc += records
    out = bytearray()
    out += struct.pack(">q", 0)
    out += struct.pack(">i", 4 + 1 + 4 + len(after_crc))
    out += struct.pack(">i", -1)
    out += struct.pack(">b", 2)
    out += struct.pack(">I", crc32c(bytes(after_crc)))
    out += after_crc
    return bytes(out)


@dataclasses.dataclass
class MultiFetchPartition:
    partition: int
    error_code: int
    high_watermark: int
    log_start_offset: int
    records: bytes


@dataclasses.dataclass
class MultiFetchResult:
    frame_bytes: int  # the whole response frame after its size prefix
    top_error_code: int
    partitions: list[MultiFetchPartition]  # in response order


def fetch_multi_request_body(version: int, topic: str, partitions: list[tuple[int, int]], max_bytes: int,
                             partition_max_bytes: int, max_wait_ms: int = 100, min_bytes: int = 1) -> bytes:
    """A sessionless consumer Fetch of one topic, `partitions` = [(partition, fetch offset)] in
    request order, each with `partition_max_bytes`, the response capped at `max_bytes`."""
    w = Writer(version >= FLEXIBLE_FROM[FETCH])
    w.int32(-1)
    w.int32(max_wait_ms).int32(min_bytes).int32(max_bytes)
    w.int8(0)
    if version >= 7:
        w.int32(0).int32(-1)
    w.array_len(1).string(topic)
    w.array_len(len(partitions))
    for partition, offset in partitions:
        w.int32(partition)
        if version >= 9:
            w.int32(-1)
        w.int64(offset)
        if version >= 12:
            w.int32(-1)
        if version >= 5:
            w.int64(-1)
        w.int32(partition_max_bytes)
        w.tagged_fields()
    w.tagged_fields()
    if version >= 7:
        w.array_len(0)
    if version >= 11:
        w.string("")
    w.tagged_fields()
    return w.getvalue()


def fetch_multi(conn: KafkaConnection, topic: str, partitions: list[tuple[int, int]], max_bytes: int,
                partition_max_bytes: int, max_wait_ms: int = 100) -> MultiFetchResult:
    """One Fetch (the highest version both the codec and the broker speak) of several partitions."""
    version = conn.pick_version(FETCH)
    flexible = version >= FLEXIBLE_FROM[FETCH]
    body = fetch_multi_request_body(version, topic, partitions, max_bytes, partition_max_bytes, max_wait_ms)
    correlation_id, payload = conn.request_bytes(FETCH, version, body, flexible)
    conn.send_frame(payload)
    frame = conn.recv_frame()
    r = Reader(frame, flexible)
    got = r.int32()
    assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
    r.tagged_fields()
    r.int32()  # throttle
    top_error = NONE
    if version >= 7:
        top_error = r.int16()
        r.int32()  # session id
    out = []
    for _ in range(r.array_len()):
        r.string()
        for _ in range(r.array_len()):
            index = r.int32()
            error_code = r.int16()
            high_watermark, log_start, records = _fetch_partition_rest(r, version)
            r.tagged_fields()
            out.append(MultiFetchPartition(index, error_code, high_watermark, log_start, records))
        r.tagged_fields()
    return MultiFetchResult(len(frame), top_error, out)
