"""A full disk: Produce answers KAFKA_STORAGE_ERROR, the broker stays up, and every record it
acknowledged before the disk filled is still there after a restart with space freed.

Needs a small filesystem: a 64 MiB ext4 image on a loop device (root). Checked on the development
machines: loop mounts work there as root, and ext4 on a loop device takes O_DIRECT writes.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import fjordtest
import kafka_wire

IMAGE_SIZE_BYTES = 64 << 20
FREE_LEFT_BYTES = 12 << 20  # space left after the filler: a few segments' worth
BATCH_VALUE_BYTES = 256 << 10
BATCH_COUNT_MAX = 200  # 50 MiB: more than the space left
PRODUCE_TIME_MAX_S = 120.0


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def small_fs(broker_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a loop filesystem")
    if not shutil.which("mkfs.ext4") or not shutil.which("mount"):
        pytest.skip("mkfs.ext4 or mount missing (e2fsprogs, util-linux)")
    work = broker_factory.new_data_dir()
    image = work / "small.img"
    mount_point = work / "mnt"
    mount_point.mkdir()
    with open(image, "wb") as f:
        f.truncate(IMAGE_SIZE_BYTES)
    made = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
    assert made.returncode == 0, made.stderr
    mounted = _run("mount", "-o", "loop", str(image), str(mount_point))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a loop device here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        # Brokers on it must be gone before the unmount: the factory closes them later, so kill here.
        for broker in broker_factory.brokers:
            if str(broker.data_dir).startswith(str(mount_point)):
                broker.close()
        for _ in range(20):
            if _run("umount", str(mount_point)).returncode == 0:
                break
            time.sleep(0.25)
        else:
            _run("umount", "-l", str(mount_point))


def _fill(mount_point: Path, leave_bytes: int) -> Path:
    filler = mount_point / "filler"
    stat = os.statvfs(mount_point)
    to_write = stat.f_bavail * stat.f_frsize - leave_bytes
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb") as f:
        while to_write > 0:
            f.write(chunk[: min(len(chunk), to_write)])
            to_write -= len(chunk)
        f.flush()
        os.fsync(f.fileno())
    return filler


@pytest.mark.needs_root
def test_full_disk_answers_kafka_storage_error_and_keeps_acked_records(broker_factory, small_fs, topic):
    data_dir = small_fs / "data"
    broker = broker_factory.create(["--log-segment-bytes", str(4 << 20)], data_dir=data_dir).start()
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    filler = _fill(small_fs, FREE_LEFT_BYTES)

    rng = random.Random(11)
    acked: list[tuple[int, bytes]] = []  # (base offset, value)
    error_code = kafka_wire.NONE
    deadline = time.monotonic() + PRODUCE_TIME_MAX_S
    with broker.connect(timeout_s=30) as conn:
        for index in range(BATCH_COUNT_MAX):
            assert time.monotonic() < deadline, f"disk never filled: {len(acked)} batches acknowledged"
            value = index.to_bytes(4, "big") + rng.randbytes(BATCH_VALUE_BYTES)
            result = conn.produce(topic, 0, kafka_wire.build_record_batch([value]))
            if result.error_code != kafka_wire.NONE:
                error_code = result.error_code
                break
            acked.append((result.base_offset, value))
    assert error_code == kafka_wire.KAFKA_STORAGE_ERROR, (
        f"expected KAFKA_STORAGE_ERROR (56) once the disk filled, got {error_code} after {len(acked)} batches"
    )
    assert acked, "the disk filled before a single batch was acknowledged"
    # Still up and answering.
    assert broker.is_running(), broker.describe()
    with broker.connect() as conn:
        assert conn.metadata().brokers
        # Acknowledged data is still served while the disk is full.
        fetched = conn.fetch(topic, 0, offset=0, max_bytes=2 * BATCH_VALUE_BYTES)
    first = kafka_wire.parse_batches(fetched.records)
    assert first and first[0].records[0].value == acked[0][1]

    # Free the space, restart: every acknowledged batch survived, byte for byte.
    broker.kill()
    filler.unlink()
    broker.start()
    with broker.connect(timeout_s=30) as conn:
        for base_offset, value in acked:
            fetched = conn.fetch(topic, 0, offset=base_offset, max_bytes=2 * BATCH_VALUE_BYTES)
            assert fetched.error_code == kafka_wire.NONE, (base_offset, fetched.error_code)
            batches = kafka_wire.parse_batches(fetched.records)
            assert batches and batches[0].base_offset == base_offset and batches[0].crc_ok
            assert batches[0].records[0].value == value, f"batch at {base_offset} differs"
        # And it takes writes again.
        result = conn.produce(topic, 0, kafka_wire.build_record_batch([b"after-space-freed"]))
    assert result.error_code == kafka_wire.NONE, result
    broker.stop()
