//! `fjord topic describe`: partitions, leaders, replicas and in-sync replicas from Metadata, and
//! the topic's own configs from DescribeConfigs. Output follows `kafka-topics.sh --describe`.

use std::fmt::Write;

use uuid::Uuid;

use super::super::args::ConnectArgs;
use super::super::error::{error_code_name, CliError};
use super::super::metadata::{self, TopicInfo};
use super::super::output::emit;
use super::configs::{self, TopicConfigs};

/// Arguments of `fjord topic describe`.
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Topics to describe.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

/// Describes each named topic; a topic that fails is reported and the others still printed.
pub fn run(args: DescribeArgs) -> Result<(), CliError> {
    let mut pool = super::connect(&args.connect)?;
    let cluster = metadata::fetch(pool.bootstrap(), Some(&args.names), false)?;
    let topic_configs = match configs::describe(pool.bootstrap(), &args.names) {
        Ok(c) => Some(c),
        Err(CliError::Client(fjord_client::ClientError::UnsupportedApi { .. })) => None,
        Err(other) => return Err(other),
    };
    let mut text = String::new();
    let mut failures = Vec::new();
    for name in &args.names {
        let Some(topic) = cluster.topics.iter().find(|t| &t.name == name) else {
            failures.push(CliError::input(format!("broker returned no metadata for topic '{name}'")));
            continue;
        };
        match topic.check() {
            Ok(()) => text.push_str(&render(topic, config_text(topic_configs.as_ref(), name))),
            Err(e) => failures.push(e.into()),
        }
    }
    emit(&text)?;
    CliError::from_failures(failures)
}

/// The `Configs:` column: `k=v,k=v`, or why it is missing.
fn config_text(configs: Option<&TopicConfigs>, name: &str) -> String {
    match configs.map(|c| c.get(name)) {
        None => "(DescribeConfigs unsupported by broker)".to_string(),
        Some(None) => String::new(),
        Some(Some(Err(e))) => format!("({e})"),
        Some(Some(Ok(pairs))) => pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
    }
}

/// One topic in `kafka-topics.sh --describe` layout.
fn render(topic: &TopicInfo, configs: String) -> String {
    let replication_factor = topic.partitions.first().map_or(0, |p| p.replicas.len());
    let mut out = format!(
        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}\n",
        topic.name,
        kafka_uuid(&topic.topic_id),
        topic.partitions.len(),
        replication_factor,
        configs
    );
    for p in &topic.partitions {
        let leader = if p.leader_id < 0 { "none".to_string() } else { p.leader_id.to_string() };
        let _ = write!(
            out,
            "\tTopic: {}\tPartition: {}\tLeader: {}\tLeaderEpoch: {}\tReplicas: {}\tIsr: {}",
            topic.name,
            p.index,
            leader,
            p.leader_epoch,
            join(&p.replicas),
            join(&p.isr)
        );
        if !p.offline.is_empty() {
            let _ = write!(out, "\tOffline: {}", join(&p.offline));
        }
        if p.error_code != 0 {
            let _ = write!(out, "\tError: {} ({})", error_code_name(p.error_code), p.error_code);
        }
        out.push('\n');
    }
    out
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// A topic id the way Kafka prints it: URL-safe base64 of its 16 bytes, without padding.
pub fn kafka_uuid(id: &Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        for index in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(bits >> (18 - 6 * index) & 0x3f) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_client::metadata::PartitionInfo;

    #[test]
    fn topic_ids_print_as_kafka_base64() {
        // Kafka's Uuid.ZERO_UUID and Uuid.METADATA_TOPIC_ID (new Uuid(0, 1)).
        assert_eq!(kafka_uuid(&Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(kafka_uuid(&Uuid::from_u64_pair(0, 1)), "AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(kafka_uuid(&Uuid::from_u128(u128::MAX)), "_____________________w");
    }

    #[test]
    fn describe_renders_partitions_like_kafka_topics() {
        let topic = TopicInfo {
            name: "events".into(),
            topic_id: Uuid::nil(),
            error_code: 0,
            is_internal: false,
            partitions: vec![
                PartitionInfo {
                    index: 0,
                    error_code: 0,
                    leader_id: 1,
                    leader_epoch: 4,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    offline: vec![],
                },
                PartitionInfo {
                    index: 1,
                    error_code: 5,
                    leader_id: -1,
                    leader_epoch: 0,
                    replicas: vec![2, 1],
                    isr: vec![],
                    offline: vec![2],
                },
            ],
        };
        let text = render(&topic, "retention.ms=1000".into());
        assert_eq!(
            text,
            "Topic: events\tTopicId: AAAAAAAAAAAAAAAAAAAAAA\tPartitionCount: 2\tReplicationFactor: 2\tConfigs: retention.ms=1000\n\
             \tTopic: events\tPartition: 0\tLeader: 1\tLeaderEpoch: 4\tReplicas: 1,2\tIsr: 1,2\n\
             \tTopic: events\tPartition: 1\tLeader: none\tLeaderEpoch: 0\tReplicas: 2,1\tIsr: \tOffline: 2\tError: LEADER_NOT_AVAILABLE (5)\n"
        );
    }

    #[test]
    fn configs_column_explains_missing_configs() {
        assert_eq!(config_text(None, "t"), "(DescribeConfigs unsupported by broker)");
        let mut configs = TopicConfigs::new();
        configs.insert("t".into(), Ok(vec![("a".into(), "1".into()), ("b".into(), "2".into())]));
        assert_eq!(config_text(Some(&configs), "t"), "a=1,b=2");
        assert_eq!(config_text(Some(&configs), "other"), "");
    }
}
