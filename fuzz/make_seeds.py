"""Writes seed inputs for a fuzz target into its corpus directory (idempotent).

    python fuzz/make_seeds.py <target> fuzz/corpus/<target>

Targets: request_decode, segment_recovery, producer_snapshot, txn_state, group_records, txn_index,
segment_index, record_batch, epoch_checkpoint. Seeds are well-formed inputs built with the e2e suite's hand-written
Kafka codec (tests/e2e/kafka_wire.py) or by hand as the broker writes them, so a short run starts
from deep in the decoders instead of at their first bytes.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

import kafka_wire  # noqa: E402
from kafka_wire import API_VERSIONS, CODEC_VERSIONS, FETCH, FLEXIBLE_FROM, METADATA, PRODUCE  # noqa: E402


def _batch(count: int, base_offset: int = 0) -> bytes:
    batch = bytearray(kafka_wire.build_record_batch(
        [f"value-{i}".encode() for i in range(count)],
        keys=[f"k{i}".encode() for i in range(count)],
        base_timestamp=1_700_000_000_000,
        headers=[[("h", b"v")] for _ in range(count)],
    ))
    batch[0:8] = base_offset.to_bytes(8, "big")  # not covered by the CRC
    return bytes(batch)


def request_seeds() -> list[bytes]:
    """Size-prefixed request frames as a client sends them: one per seed (every codec version of
    Produce, Fetch, Metadata; a few group and transaction APIs), and one stream of several."""
    return [_sized(frame) for frame in request_frames()] + [b"".join(_sized(frame) for frame in request_frames()[:8])]


def _sized(frame: bytes) -> bytes:
    return len(frame).to_bytes(4, "big") + frame


def request_frames() -> list[bytes]:
    """Request frames without the 4-byte size prefix: header + body."""
    seeds = []

    def frame(api_key: int, version: int, body: bytes) -> bytes:
        flexible = version >= FLEXIBLE_FROM[api_key]
        return kafka_wire.request_header(api_key, version, 7, "seed", flexible) + body

    seeds.append(frame(API_VERSIONS, 0, b""))
    seeds.append(frame(API_VERSIONS, 3, kafka_wire.Writer(True).string("seed").string("1").tagged_fields().getvalue()))
    low, high = CODEC_VERSIONS[METADATA]
    for version in range(low, high + 1):
        seeds.append(frame(METADATA, version, kafka_wire.metadata_request_body(version, None)))
        seeds.append(frame(METADATA, version, kafka_wire.metadata_request_body(version, ["t1", "t2"], True)))
    low, high = CODEC_VERSIONS[PRODUCE]
    for version in range(low, high + 1):
        seeds.append(frame(PRODUCE, version, kafka_wire.produce_request_body(version, "t", 0, _batch(3))))
    low, high = CODEC_VERSIONS[FETCH]
    for version in range(low, high + 1):
        seeds.append(frame(FETCH, version, kafka_wire.fetch_request_body(version, "t", 0, 42)))
    seeds.append(frame(API_VERSIONS, 99, b""))  # unsupported: answered with v0 (KIP-511)
    # Non-flexible versions of a few group and transaction APIs (api key, version, body).
    writer = kafka_wire.Writer
    seeds.append(kafka_wire.request_header(16, 0, 7, "seed", False))  # ListGroups v0: no body
    seeds.append(kafka_wire.request_header(10, 0, 7, "seed", False) + writer().string("group").getvalue())  # FindCoordinator
    seeds.append(kafka_wire.request_header(15, 0, 7, "seed", False)
                 + writer().array_len(2).string("g1").string("g2").getvalue())  # DescribeGroups
    seeds.append(kafka_wire.request_header(12, 0, 7, "seed", False)
                 + writer().string("group").int32(3).string("member-1").getvalue())  # Heartbeat
    seeds.append(kafka_wire.request_header(22, 0, 7, "seed", False)
                 + writer().string("tx-1").int32(60_000).getvalue())  # InitProducerId
    seeds.append(kafka_wire.request_header(26, 0, 7, "seed", False)
                 + writer().string("tx-1").int64(7).int16(0).boolean(True).getvalue())  # EndTxn
    seeds.append(kafka_wire.request_header(2, 1, 7, "seed", False)  # ListOffsets v1
                 + writer().int32(-1).array_len(1).string("t").array_len(1).int32(0).int64(-1).getvalue())
    seeds.append(kafka_wire.request_header(60, 0, 7, "seed", True)  # DescribeCluster v0 (flexible)
                 + writer(True).boolean(False).tagged_fields().getvalue())
    return seeds


def segment_seeds() -> list[bytes]:
    """Segment file contents: whole batches, then torn and corrupt tails."""
    good = _batch(3, 0) + _batch(2, 3) + _batch(1, 5)
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF
    mixed = _batch(2, 100) + _gzip_batch(3, 102) + _marker(7, 0, 1, 5, 105) + _batch(1, 106)
    return [
        b"",
        good,
        good + b"\0" * 512,  # O_DIRECT zero padding
        good + _batch(4, 6)[:40],  # torn last batch
        bytes(flipped),  # CRC mismatch in the last batch
        good + b"\xde\xad\xbe\xef" * 16,  # garbage after the last batch
        mixed,  # base offset 100: compressed, transactional and control batches
        _batch(1, 0) + _batch(1, 0),  # offsets going backwards: the second is cut
        _stale_max_timestamp(3, 0),  # header max timestamp -1 (an older Fjord): records decide
        # Found while fuzzing, kept as regressions: a base offset near i64::MAX (the CRC does not
        # cover it), and a negative lastOffsetDelta behind a valid CRC.
        base64.b64decode(_BASE_OFFSET_OVERFLOW),
        _batch(2, 0) + _with_header(2, 0, -3, _TIMESTAMP, _TIMESTAMP, -1, -1, -1, 3, _records(3)),
    ]


_BASE_OFFSET_OVERFLOW = (
    "f/////////4AAABt/////wJoTcthAAAAAAACAAABi8/laAAAAAGLz+VoAP//////////////////AAAAAyYAAAAEazAOdmFsdWUt"
    "MAICaAJ2JgAAAgRrMQ52YWx1ZS0xAgJoAnYmAAAEBGsyDnZhbHVlLTICAmgCdg=="
)
# A 109-byte snappy batch whose header claims gigabytes of records (found by the record_batch target).
_SNAPPY_BOMB = "AAAAAAAAAAAAAABt/////wJoTcthACoCAAAAU2NgYGLJNYSKGcLEWFiyjUGgAH5ci8/laAABAACLz+VoAP////8IAP////////9oAABoAnY="


def _with_header(base_offset: int, attributes: int, last_offset_delta: int, base_timestamp: int, max_timestamp: int,
                 producer_id: int, producer_epoch: int, base_sequence: int, count: int, records: bytes) -> bytes:
    """A RecordBatch v2 with a correct length and CRC32C."""
    after_crc = struct.pack(">hiqqqhii", attributes, last_offset_delta, base_timestamp, max_timestamp, producer_id,
                            producer_epoch, base_sequence, count) + records
    head = struct.pack(">qiib", base_offset, 4 + 1 + 4 + len(after_crc), -1, 2)
    return head + struct.pack(">I", kafka_wire.crc32c(after_crc)) + after_crc


_TIMESTAMP = 1_700_000_000_000


def _records(count: int) -> bytes:
    return _batch(count)[kafka_wire.BATCH_HEADER_SIZE_BYTES:]


def _gzip_batch(count: int, base_offset: int = 0, producer_id: int = 7, transactional: bool = True) -> bytes:
    import gzip
    attributes = 1 | (0x10 if transactional else 0)
    return _with_header(base_offset, attributes, count - 1, _TIMESTAMP, _TIMESTAMP, producer_id, 0, 0, count,
                        gzip.compress(_records(count), mtime=0))


def _marker(producer_id: int, epoch: int, control_type: int, coordinator_epoch: int, base_offset: int = 0) -> bytes:
    """An end-transaction marker as engine/src/batch.rs `build_end_txn_marker` writes it."""
    key = struct.pack(">hh", 0, control_type)
    value = struct.pack(">hi", 0, coordinator_epoch)
    body = b"\0\0\0" + kafka_wire.varint(len(key)) + key + kafka_wire.varint(len(value)) + value + b"\0"
    record = kafka_wire.varint(len(body)) + body
    return _with_header(base_offset, 0x30, 0, _TIMESTAMP, _TIMESTAMP, producer_id, epoch, -1, 1, record)


def _stale_max_timestamp(count: int, base_offset: int) -> bytes:
    batch = kafka_wire.build_record_batch_with_header_max_timestamp(
        [b"v"] * count, _TIMESTAMP, list(range(count)), -1)
    return base_offset.to_bytes(8, "big") + batch[8:]


def _snapshot(offset: int, producers: list[tuple[int, int, int, list[tuple[int, int, int, int, int]]]]) -> bytes:
    """A producer state snapshot as engine/src/producer_state.rs writes it."""
    body = offset.to_bytes(8, "big", signed=True) + len(producers).to_bytes(4, "big")
    for producer_id, epoch, last_timestamp, batches in producers:
        body += producer_id.to_bytes(8, "big", signed=True) + epoch.to_bytes(2, "big", signed=True)
        body += last_timestamp.to_bytes(8, "big", signed=True) + len(batches).to_bytes(1, "big")
        for first_seq, last_seq, first_offset, last_offset, timestamp in batches:
            body += first_seq.to_bytes(4, "big", signed=True) + last_seq.to_bytes(4, "big", signed=True)
            body += first_offset.to_bytes(8, "big", signed=True) + last_offset.to_bytes(8, "big", signed=True)
            body += timestamp.to_bytes(8, "big", signed=True)
    return b"FJPS" + bytes([1]) + kafka_wire.crc32c(body).to_bytes(4, "big") + body


def snapshot_seeds() -> list[bytes]:
    batches = [(i * 3, i * 3 + 2, 100 + i * 3, 102 + i * 3, 1_700_000_000_000 + i) for i in range(5)]
    wrapping = [(2**31 - 2, 1, 0, 3, 5)]
    return [
        _snapshot(0, []),
        _snapshot(115, [(7, 0, 1_700_000_000_004, batches), (8, 3, 5, wrapping)]),
        _snapshot(115, [(7, 0, 1_700_000_000_004, batches)])[:-3],  # torn
    ]


def _txn_key(transactional_id: str) -> bytes:
    raw = transactional_id.encode()
    return struct.pack(">hh", 0, len(raw)) + raw


def _txn_value_v0(producer_id: int, epoch: int, state: int, partitions: dict[str, list[int]]) -> bytes:
    """TransactionLogValue v0: producer id, epoch, timeout, state, [topic, [partition]], times."""
    out = struct.pack(">hqhib", 0, producer_id, epoch, 60_000, state) + struct.pack(">i", len(partitions))
    for topic, indexes in partitions.items():
        out += struct.pack(">h", len(topic)) + topic.encode() + struct.pack(">i", len(indexes))
        out += b"".join(struct.pack(">i", index) for index in indexes)
    return out + struct.pack(">qq", 1_700_000_000_000, 1_700_000_000_000)


def txn_seeds() -> list[bytes]:
    """key length byte | TransactionLogKey | TransactionLogValue; then 34-byte .txnindex entries."""
    seeds = []
    for key, value in [
        (_txn_key("tx-1"), _txn_value_v0(7, 0, 0, {})),
        (_txn_key("tx-2"), _txn_value_v0(8, 3, 1, {"orders": [0, 1, 2], "__consumer_offsets": [17]})),
        (_txn_key("tx-3"), b""),
    ]:
        seeds.append(bytes([len(key)]) + key + value)
    entries = [struct.pack(">hqqqq", 0, 7, 10, 20, 10), struct.pack(">hqqqq", 0, 8, 30, 31, 25)]
    seeds.append(b"".join(entries))
    return seeds


def _group_record(key: bytes, value: bytes | None) -> bytes:
    """group_records framing: key length u8, value length u16 (0xFFFF: null), key, value."""
    value_length = 0xFFFF if value is None else len(value)
    return struct.pack(">BH", len(key), value_length) + key + (value or b"")


def _short_string(text: str) -> bytes:
    return struct.pack(">h", len(text.encode())) + text.encode()


def _compact_string(text: str | None) -> bytes:
    return kafka_wire.uvarint(0) if text is None else kafka_wire.uvarint(len(text.encode()) + 1) + text.encode()


def group_seeds() -> list[bytes]:
    """`__consumer_offsets` records as a coordinator replays them: classic groups and offsets
    (group/src/records.rs), KIP-848 consumer groups (group/src/consumer/record.rs), tombstones."""
    offset_key = struct.pack(">h", 1) + _short_string("g") + _short_string("orders") + struct.pack(">i", 3)
    offset_v3 = struct.pack(">hqi", 3, 42, 5) + _short_string("meta") + struct.pack(">q", _TIMESTAMP)
    offset_v1 = struct.pack(">hq", 1, 42) + _short_string("") + struct.pack(">qq", _TIMESTAMP, _TIMESTAMP + 86_400_000)
    group_key = struct.pack(">h", 2) + _short_string("g")
    member = (_short_string("member-1") + _short_string("instance-1") + _short_string("client") + _short_string("/127.0.0.1")
              + struct.pack(">ii", 300_000, 45_000) + struct.pack(">i", 3) + b"sub" + struct.pack(">i", 3) + b"asg")
    group_v3 = (struct.pack(">h", 3) + _short_string("consumer") + struct.pack(">i", 4) + _short_string("range")
                + _short_string("member-1") + struct.pack(">q", _TIMESTAMP) + struct.pack(">i", 1) + member)
    classic = [
        _group_record(group_key, group_v3),
        _group_record(offset_key, offset_v3),
        _group_record(offset_key, offset_v1),
        _group_record(offset_key, None),
    ]
    topic_id = bytes(range(16))
    consumer_key = struct.pack(">h", 3) + _short_string("cg")
    member_key = lambda version: struct.pack(">h", version) + _short_string("cg") + _short_string("m1")  # noqa: E731
    assignment = kafka_wire.uvarint(2) + topic_id + kafka_wire.uvarint(3) + struct.pack(">ii", 0, 1) + b"\0"
    member_value = (struct.pack(">h", 0) + _compact_string(None) + _compact_string(None) + _compact_string("client")
                    + _compact_string("/127.0.0.1") + kafka_wire.uvarint(2) + _compact_string("orders")
                    + _compact_string(None) + struct.pack(">i", 300_000) + _compact_string("uniform") + b"\0")
    consumer = [
        _group_record(consumer_key, struct.pack(">hi", 0, 5) + b"\0"),
        _group_record(struct.pack(">h", 4) + _short_string("cg"), struct.pack(">h", 0) + kafka_wire.uvarint(2) + topic_id
                      + _compact_string("orders") + struct.pack(">i", 3) + kafka_wire.uvarint(1) + b"\0\0"),
        _group_record(member_key(5), member_value),
        _group_record(struct.pack(">h", 6) + _short_string("cg"), struct.pack(">hi", 0, 5) + b"\0"),
        _group_record(member_key(7), struct.pack(">h", 0) + assignment + b"\0"),
        _group_record(member_key(8), struct.pack(">hiib", 0, 5, 4, 2) + assignment + kafka_wire.uvarint(1) + b"\0"),
    ]
    return [b"".join(classic), b"".join(consumer), b"".join(classic + consumer + [_group_record(consumer_key, None)])]


def _aborted(producer_id: int, first: int, last: int, last_stable: int) -> bytes:
    return struct.pack(">hqqqq", 0, producer_id, first, last, last_stable)


def txn_index_seeds() -> list[bytes]:
    """[log start u16][end u16][first segment base u16][second bucket u16][first file length u16]
    [first file][second file]: `.txnindex` files of bucket 0 and of the second bucket."""
    first = _aborted(1, 0, 5, 6) + _aborted(2, 1, 9, 10)
    second = _aborted(3, 21, 22, 23) + _aborted(4, 25, 30, 31)

    def seed(log_start: int, end: int, first_base: int, bucket: int, one: bytes, two: bytes) -> bytes:
        return struct.pack(">HHHHH", log_start, end, first_base, bucket, len(one)) + one + two

    return [
        seed(0, 100, 0, 20, first, second),
        seed(6, 100, 0, 20, first, second),  # below the log start
        seed(0, 24, 0, 20, first, second),  # a marker past the end
        seed(0, 100, 10, 20, first, second),  # bucket 0's segment was removed
        seed(0, 100, 0, 20, first + _aborted(5, 3, 4, 5)[:20], second),  # torn entry
        seed(0, 100, 0, 20, first, second + struct.pack(">h", 1) + _aborted(6, 26, 27, 28)[2:]),  # unknown version
    ]


def _segment_index(offsets: list[tuple[int, int]], times: list[tuple[int, int]], covered: int) -> bytes:
    """A stored segment index as engine/src/index.rs `SegmentIndex::encode` writes it."""
    body = struct.pack(">I", len(times))
    body += b"".join(struct.pack(">II", relative, position) for relative, position in offsets)
    body += b"".join(struct.pack(">qI", timestamp, relative) for timestamp, relative in times)
    return b"FJI2" + struct.pack(">QII", covered, len(offsets), kafka_wire.crc32c(body)) + body


def segment_index_seeds() -> list[bytes]:
    return [
        _segment_index([], [], 0),
        _segment_index([(0, 0), (10, 4096), (25, 9000)], [(_TIMESTAMP, 0), (_TIMESTAMP + 5, 7), (_TIMESTAMP + 9, 30)], 12_345),
        _segment_index([(0, 0)], [(-1, 0)], 61),
    ]


def batch_seeds() -> list[bytes]:
    """One RecordBatch v2 each: plain, compressed, transactional, control, stale header."""
    return [
        _batch(3, 0),
        _batch(1, 42),
        _gzip_batch(3, 0),
        _gzip_batch(2, 5, producer_id=-1, transactional=False),
        _marker(7, 0, 0, 5),  # abort
        _marker(7, 0, 1, 5),  # commit
        _stale_max_timestamp(3, 0),
        _with_header(0, 0x08, 2, _TIMESTAMP, _TIMESTAMP + 9, 7, 0, 0, 3, _records(3)),  # LogAppendTime
        base64.b64decode(_SNAPPY_BOMB),  # regression: must be refused, not inflated
    ]


def epoch_checkpoint_seeds() -> list[bytes]:
    """[log start u16][log end u16][leader epoch u8][leader-epoch-checkpoint text]."""

    def seed(log_start: int, log_end: int, leader_epoch: int, text: str) -> bytes:
        return struct.pack(">HHB", log_start, log_end, leader_epoch) + text.encode()

    return [
        seed(0, 420, 5, "0\n3\n0 0\n2 140\n5 300\n"),
        seed(150, 420, 7, "0\n3\n0 0\n2 140\n5 300\n"),  # a newer epoch, log start past epoch 2's
        seed(0, 200, 5, "0\n3\n0 0\n2 140\n5 300\n"),  # the log ends below epoch 5's start
        seed(0, 0, 0, "0\n0\n"),
        seed(0, 10, 1, "0\n2\n3 10\n2 20\n"),  # out of order
        seed(0, 10, 1, "1\n0\n"),  # unknown version
    ]


SEEDS = {
    "request_decode": request_seeds,
    "segment_recovery": segment_seeds,
    "producer_snapshot": snapshot_seeds,
    "txn_state": txn_seeds,
    "group_records": group_seeds,
    "txn_index": txn_index_seeds,
    "segment_index": segment_index_seeds,
    "record_batch": batch_seeds,
    "epoch_checkpoint": epoch_checkpoint_seeds,
}


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in SEEDS:
        print(__doc__, file=sys.stderr)
        return 2
    target, corpus = sys.argv[1], Path(sys.argv[2])
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = SEEDS[target]()
    for seed in seeds:
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
