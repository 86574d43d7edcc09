"""Auto topic creation (auto.create.topics.enable, num.partitions), as Kafka does it: a Metadata
request that names an unknown topic creates it; Produce never does."""

from __future__ import annotations

from confluent_kafka import KafkaError, Producer

import fjordtest
import kafka_wire


def _partition_count(bootstrap: str, topic: str) -> int:
    metadata = fjordtest.admin(bootstrap).list_topics(topic, timeout=10).topics[topic]
    assert metadata.error is None, metadata.error
    return len(metadata.partitions)


def _assert_absent(conn: kafka_wire.KafkaConnection, topic: str) -> None:
    """A Metadata request naming the topic, which must not create it, answers that it does not
    exist, and a listing of all topics leaves it out."""
    named = conn.metadata([topic], allow_auto_topic_creation=False).topics
    assert named[topic].error_code == kafka_wire.UNKNOWN_TOPIC_OR_PARTITION, named[topic]
    assert named[topic].partitions == [], named[topic]
    listed = conn.metadata(None).topics
    assert topic not in listed, f"{topic} exists: {listed[topic]}"


def test_producing_to_unknown_topic_creates_it_with_default_one_partition(broker_factory, topic):
    broker = broker_factory.start()
    fjordtest.produce(broker.bootstrap, topic, [{"value": b"created-on-demand"}])
    assert _partition_count(broker.bootstrap, topic) == 1
    records = fjordtest.consume(broker.bootstrap, topic, expected=1)
    assert [r.value for r in records] == [b"created-on-demand"]


def test_auto_created_topic_gets_num_partitions(broker_factory, topic):
    broker = broker_factory.start(["--num-partitions", "3"])
    fjordtest.produce(broker.bootstrap, topic, [{"value": f"v{i}".encode()} for i in range(30)])
    assert _partition_count(broker.bootstrap, topic) == 3


def test_auto_create_disabled_answers_unknown_topic_or_partition(broker_factory, topic):
    broker = broker_factory.start(["--auto-create-topics-enable", "false"])
    with broker.connect() as conn:
        metadata = conn.metadata([topic], allow_auto_topic_creation=True)
        assert metadata.topics[topic].error_code == kafka_wire.UNKNOWN_TOPIC_OR_PARTITION
        produced = conn.produce(topic, 0, kafka_wire.build_record_batch([b"nope"]))
        assert produced.error_code == kafka_wire.UNKNOWN_TOPIC_OR_PARTITION
        # Auto-creation completes before the request that triggers it is answered, and this
        # connection's requests are answered in order: a creation by either request above would
        # be visible to this one.
        _assert_absent(conn, topic)

    errors = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 5_000,
                         "topic.metadata.propagation.max.ms": 1_000})
    producer.produce(topic, b"nope", on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(20) == 0
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), errors[0]
    # The client's own Metadata requests (allow_auto_topic_creation=true) were answered before its
    # delivery failed: still no topic.
    with broker.connect() as conn:
        _assert_absent(conn, topic)


def test_produce_request_creates_an_unknown_topic_when_auto_create_is_on(broker_factory, topic):
    # Fjord also creates on Produce (Kafka only on Metadata): a client that produces without a
    # Metadata round trip still lands its batch, in partition 0 of a num.partitions topic.
    broker = broker_factory.start()
    with broker.connect() as conn:
        produced = conn.produce(topic, 0, kafka_wire.build_record_batch([b"first"]))
    assert produced.error_code == 0
    assert produced.base_offset == 0


def test_produce_request_to_an_unknown_topic_fails_when_auto_create_is_off(broker_factory, topic):
    broker = broker_factory.start(["--auto-create-topics-enable", "false"])
    with broker.connect() as conn:
        produced = conn.produce(topic, 0, kafka_wire.build_record_batch([b"nope"]))
    assert produced.error_code == kafka_wire.UNKNOWN_TOPIC_OR_PARTITION
