"""Fixtures for Fjord's end-to-end suite (see fjordtest.py for the Broker class).

- `broker`: one broker per test module (tests use their own topic names), stopped with SIGTERM at
  the end of the module and required to exit 0.
- `broker_factory`: for tests that start brokers with special flags, kill or restart them.
- `topic`: a fresh topic name per test.
On a failure, the stderr tail of every broker the test touched is attached to the report.
"""

from __future__ import annotations

import re

import pytest

import fjordtest

_BROKERS_KEY = pytest.StashKey[list]()


def _label(node) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", node.name)[:60]


def _remember(request, factory: fjordtest.BrokerFactory) -> None:
    request.node.stash.setdefault(_BROKERS_KEY, []).append(factory)


@pytest.fixture(scope="session", autouse=True)
def _fjord_binary_exists():
    # Fails every test up front (not a skip) when the release binary is missing.
    fjordtest.fjord_binary()


@pytest.fixture(scope="module")
def module_broker_factory(request):
    factory = fjordtest.BrokerFactory(_label(request.node))
    yield factory
    factory.close(check_clean_stop=True)


@pytest.fixture(scope="module")
def broker(module_broker_factory) -> fjordtest.Broker:
    return module_broker_factory.start()


@pytest.fixture(autouse=True)
def _attach_module_broker(request):
    # Lets the failure report show the module brokers' logs too.
    if "module_broker_factory" in request.fixturenames:
        _remember(request, request.getfixturevalue("module_broker_factory"))
    yield


@pytest.fixture
def broker_factory(request):
    factory = fjordtest.BrokerFactory(_label(request.node))
    _remember(request, factory)
    yield factory
    # Brokers a test left running must still stop cleanly.
    factory.close(check_clean_stop=True)


@pytest.fixture
def topic(request) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:80].strip("-")
    return fjordtest.kafka_wire.unique_name(base)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for factory in item.stash.get(_BROKERS_KEY, []):
            for broker in factory.brokers:
                report.sections.append((f"fjord {broker.name} stderr ({broker.bootstrap})",
                                        fjordtest.tail(broker.stderr(), 120)))
