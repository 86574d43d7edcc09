"""Process lifecycle: clean exits on SIGTERM/SIGINT, and refusals to start (data dir locked, port
in use, data dir unwritable) that exit non-zero with a message instead of a panic."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

import fjordtest


def _assert_refused(broker: fjordtest.Broker, *needles: str) -> str:
    broker.start(wait=False)
    rc = broker.wait_exit()
    log = broker.stderr()
    assert rc != 0, f"broker exited 0 although it should refuse to start; {broker.describe()}"
    assert "panicked" not in log, f"refusal is a panic, not an error message; {broker.describe()}"
    for needle in needles:
        assert needle.lower() in log.lower(), f"stderr lacks {needle!r}; {broker.describe()}"
    return log


def _assert_serving(broker: fjordtest.Broker) -> None:
    assert broker.is_running(), broker.describe()
    with broker.connect() as conn:
        assert conn.metadata().brokers


def test_sigterm_exits_zero(broker_factory):
    broker = broker_factory.start()
    assert broker.stop() == 0


def test_sigint_exits_zero(broker_factory):
    broker = broker_factory.start()
    os.kill(broker.pid, signal.SIGINT)
    assert broker.wait_exit() == 0, broker.describe()


def test_second_broker_on_same_data_dir_is_refused_with_lock_message(broker_factory):
    first = broker_factory.start()
    second = broker_factory.create(data_dir=first.data_dir)
    _assert_refused(second, "lock")
    _assert_serving(first)


def test_port_held_by_another_process_is_refused_with_in_use_message(broker_factory):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        broker = broker_factory.create(port=holder.getsockname()[1])
        _assert_refused(broker, "in use")


def test_port_held_by_another_fjord_is_refused_with_in_use_message(broker_factory):
    # Both would set SO_REUSEPORT on their listeners; the kernel would happily split connections
    # between them unless the broker checks that the port is free first.
    first = broker_factory.start()
    second = broker_factory.create(port=first.port)
    _assert_refused(second, "in use")
    _assert_serving(first)
    # Every new connection still reaches the first broker.
    for _ in range(20):
        with first.connect() as conn:
            assert conn.metadata().brokers


def test_data_dir_below_a_regular_file_is_refused_with_clear_message(broker_factory):
    parent = broker_factory.new_data_dir()
    blocker = parent / "not-a-directory"
    blocker.write_text("a file where a directory should be\n")
    data_dir = blocker / "data"
    broker = broker_factory.create(data_dir=data_dir)
    _assert_refused(broker, str(data_dir))


def test_read_only_data_dir_is_refused_with_clear_message(broker_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root for a read-only bind mount")
    data_dir = broker_factory.new_data_dir()
    mounted = subprocess.run(["mount", "--bind", str(data_dir), str(data_dir)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"bind mounts not allowed here: {mounted.stderr.strip()}")
    try:
        remounted = subprocess.run(["mount", "-o", "remount,bind,ro", str(data_dir)], capture_output=True, text=True)
        if remounted.returncode != 0:
            pytest.skip(f"read-only remount not allowed here: {remounted.stderr.strip()}")
        broker = broker_factory.create(data_dir=data_dir)
        _assert_refused(broker, str(data_dir))
    finally:
        subprocess.run(["umount", str(data_dir)], capture_output=True)
        if os.path.ismount(data_dir):
            subprocess.run(["umount", "-l", str(data_dir)], capture_output=True)


def test_unwritable_data_dir_as_non_root_is_refused(broker_factory):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions; covered by the read-only mount test")
    data_dir = broker_factory.new_data_dir()
    data_dir.chmod(0o500)
    try:
        broker = broker_factory.create(data_dir=data_dir)
        _assert_refused(broker, str(data_dir))
    finally:
        data_dir.chmod(0o700)
