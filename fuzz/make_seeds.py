"""Writes seed inputs for a fuzz target into its corpus directory (idempotent).

    python fuzz/make_seeds.py request_decode fuzz/corpus/request_decode
    python fuzz/make_seeds.py segment_recovery fuzz/corpus/segment_recovery
    python fuzz/make_seeds.py producer_snapshot fuzz/corpus/producer_snapshot

Seeds are well-formed inputs built with the e2e suite's hand-written Kafka codec
(tests/e2e/kafka_wire.py), so a short run starts from deep in the decoders instead of at the
4-byte header.
"""

from __future__ import annotations

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
    """Request frames without the 4-byte size prefix: header + body, every codec version."""
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
    return seeds


def segment_seeds() -> list[bytes]:
    """Segment file contents: whole batches, then torn and corrupt tails."""
    good = _batch(3, 0) + _batch(2, 3) + _batch(1, 5)
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF
    return [
        b"",
        good,
        good + b"\0" * 512,  # O_DIRECT zero padding
        good + _batch(4, 6)[:40],  # torn last batch
        bytes(flipped),  # CRC mismatch in the last batch
        good + b"\xde\xad\xbe\xef" * 16,  # garbage after the last batch
    ]


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


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("request_decode", "segment_recovery", "producer_snapshot", "txn_state"):
        print(__doc__, file=sys.stderr)
        return 2
    target, corpus = sys.argv[1], Path(sys.argv[2])
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = {"request_decode": request_seeds, "segment_recovery": segment_seeds, "producer_snapshot": snapshot_seeds,
             "txn_state": txn_seeds}[target]()
    for seed in seeds:
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
