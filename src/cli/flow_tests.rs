//! Whole command flows (negotiate, produce, consume) against the in-process fake broker.

use std::sync::mpsc::sync_channel;

use super::consume::consume_into;
use super::error::CliError;
use super::fake_broker::{self, FakeConfig};
use super::produce::{produce_from, Line};
use super::tests::parse;
use super::ClientCommand;
use kafka_protocol::messages::ApiKey;

fn broker(partition_count: i32) -> String {
    fake_broker::start(FakeConfig { partition_count, api_versions_max: 4, truncate_last_batch: false })
}

fn produce(address: &str, extra: &[&str], lines: &[&str]) -> Result<(), CliError> {
    let mut argv = vec!["produce", fake_broker::TOPIC, "-b", address];
    argv.extend_from_slice(extra);
    let Ok(ClientCommand::Produce(args)) = parse(&argv) else { panic!("{argv:?}") };
    let (sender, receiver) = sync_channel::<Line>(lines.len() + 1);
    for line in lines {
        sender.send(Ok(line.as_bytes().to_vec())).unwrap();
    }
    drop(sender);
    produce_from(args, receiver)
}

fn consume(address: &str, extra: &[&str]) -> Result<String, CliError> {
    let mut argv = vec!["consume", fake_broker::TOPIC, "-b", address, "--timeout-ms", "3000"];
    argv.extend_from_slice(extra);
    let Ok(ClientCommand::Consume(args)) = parse(&argv) else { panic!("{argv:?}") };
    consume_into(args, Vec::new()).map(|out| String::from_utf8(out).unwrap())
}

#[test]
fn api_versions_negotiation_steps_down_when_broker_refuses_the_newest() {
    let address = fake_broker::start(FakeConfig { partition_count: 1, api_versions_max: 2, truncate_last_batch: false });
    let connection = super::pool::open(&address).unwrap();
    assert_eq!(connection.versions().broker_range(ApiKey::ApiVersions as i16).unwrap().max, 2);
    assert_eq!(connection.version_of(ApiKey::Fetch).unwrap(), ApiKey::Fetch.valid_versions().max);
    assert!(matches!(connection.version_of(ApiKey::DescribeCluster), Err(fjord_client::ClientError::UnsupportedApi { .. })));
}

#[test]
fn produced_lines_come_back_with_keys_on_their_murmur2_partitions() {
    let address = broker(3);
    produce(&address, &["--key-separator", ":"], &["k1:a", "k2:b", "k1:c", "k3:d"]).unwrap();
    let out = consume(&address, &["--from", "beginning", "--max-messages", "4", "--format", "%p %k=%v\\n"]).unwrap();
    let mut k1_values = Vec::new();
    for line in out.lines() {
        let (partition, rest) = line.split_once(' ').unwrap();
        let (key, value) = rest.split_once('=').unwrap();
        let expected = super::produce::partition_for_key(key.as_bytes(), 3);
        assert_eq!(partition.parse::<i32>().unwrap(), expected, "{line}");
        if key == "k1" {
            k1_values.push(value.to_string());
        }
    }
    assert_eq!(out.lines().count(), 4);
    assert_eq!(k1_values, vec!["a", "c"], "one key keeps its order");
}

#[test]
fn consume_from_an_offset_skips_the_earlier_records_of_its_batch() {
    let address = broker(1);
    produce(&address, &["--partition", "0"], &["r0", "r1", "r2", "r3", "r4"]).unwrap();
    let out = consume(&address, &["--from", "2", "--max-messages", "3", "--format", "%o:%v\\n"]).unwrap();
    assert_eq!(out, "2:r2\n3:r3\n4:r4\n");
}

#[test]
fn consume_survives_fetch_responses_that_cut_the_last_batch() {
    let address = fake_broker::start(FakeConfig { partition_count: 1, api_versions_max: 4, truncate_last_batch: true });
    for line in ["one", "two", "three"] {
        produce(&address, &["--compression", "zstd"], &[line]).unwrap();
    }
    let out = consume(&address, &["--from", "beginning", "--max-messages", "3"]).unwrap();
    assert_eq!(out, "one\ntwo\nthree\n");
}

#[test]
fn headers_timestamps_and_print_key_reach_the_output() {
    let address = broker(1);
    produce(&address, &["--key-separator", "\t", "--header", "src=cli", "--compression", "gzip"], &["k\tv"]).unwrap();
    let out = consume(&address, &["--from", "beginning", "--max-messages", "1", "--print-key"]).unwrap();
    assert_eq!(out, "k\tv\n");
    let out = consume(&address, &["--from", "beginning", "--max-messages", "1", "--format", "%t %h %T"]).unwrap();
    let timestamp: i64 = out.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(out.starts_with("t src=cli "), "{out}");
    assert!(timestamp > 1_600_000_000_000, "{out}");
}

#[test]
fn acks_0_produce_does_not_wait_for_a_response() {
    let address = broker(1);
    produce(&address, &["--acks", "0"], &["fire", "forget"]).unwrap();
    let out = consume(&address, &["--from", "beginning", "--max-messages", "2"]).unwrap();
    assert_eq!(out, "fire\nforget\n");
}

#[test]
fn consume_beyond_the_log_end_reports_offset_out_of_range() {
    let address = broker(1);
    produce(&address, &[], &["only"]).unwrap();
    let err = consume(&address, &["--from", "100"]).unwrap_err();
    let text = err.report_lines().join("\n");
    assert!(text.starts_with("error: OFFSET_OUT_OF_RANGE (1): offset 100"), "{text}");
    assert_eq!(err.exit_code(), 1);
}

#[test]
fn consume_from_end_with_timeout_exits_cleanly_when_idle() {
    let address = broker(2);
    produce(&address, &[], &["old"]).unwrap();
    let mut argv = vec!["consume", fake_broker::TOPIC, "-b", &address, "--timeout-ms", "300"];
    argv.push("--from");
    argv.push("end");
    let Ok(ClientCommand::Consume(args)) = parse(&argv) else { panic!() };
    let out = consume_into(args, Vec::new()).unwrap();
    assert!(out.is_empty());
}

#[test]
fn producing_to_a_missing_partition_or_topic_is_refused() {
    let address = broker(2);
    let err = produce(&address, &["--partition", "9"], &["x"]).unwrap_err();
    assert!(err.to_string().contains("has no partition 9"), "{err}");
    let argv = ["consume", "missing", "-b", &address, "--timeout-ms", "100"];
    let Ok(ClientCommand::Consume(args)) = parse(&argv) else { panic!() };
    let err = consume_into(args, Vec::new()).unwrap_err();
    assert!(err.to_string().starts_with("UNKNOWN_TOPIC_OR_PARTITION (3)"), "{err}");
}

#[test]
fn creating_an_existing_topic_names_the_kafka_error_and_if_not_exists_quiets_it() {
    let address = broker(1);
    let Ok(ClientCommand::Topic { cmd }) = parse(&["topic", "create", "t", "-b", &address]) else { panic!() };
    let err = super::topic::run(cmd).unwrap_err();
    assert_eq!(err.report_lines(), vec!["error: TOPIC_ALREADY_EXISTS (36): Topic 't' already exists."]);
    assert_eq!(err.exit_code(), 1);
    let argv = ["topic", "create", "t", "--if-not-exists", "-b", &address];
    let Ok(command) = parse(&argv) else { panic!() };
    assert_eq!(super::run(command), 0);
}

#[test]
fn deleting_reports_each_missing_topic_unless_if_exists() {
    let address = broker(1);
    let Ok(ClientCommand::Topic { cmd }) = parse(&["topic", "delete", "t", "nope", "-b", &address]) else { panic!() };
    let err = super::topic::run(cmd).unwrap_err();
    let lines = err.report_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("error: UNKNOWN_TOPIC_OR_PARTITION (3)"), "{lines:?}");
    let Ok(command) = parse(&["topic", "delete", "t", "nope", "--if-exists", "-b", &address]) else { panic!() };
    assert_eq!(super::run(command), 0);
}

#[test]
fn cluster_info_falls_back_to_metadata_without_describe_cluster() {
    let address = broker(1);
    let Ok(command) = parse(&["cluster", "info", "-b", &address]) else { panic!() };
    assert_eq!(super::run(command), 0);
}

#[test]
fn an_unreachable_bootstrap_server_exits_with_code_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let Ok(command) = parse(&["topic", "list", "-b", &address]) else { panic!() };
    assert_eq!(super::run(command), 2);
}
