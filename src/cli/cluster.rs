//! `fjord cluster info`: cluster id, controller and brokers (DescribeCluster, or Metadata when
//! the broker lacks it) and the broker's ApiVersions table.

use std::fmt::Write;

use kafka_protocol::messages::{ApiKey, DescribeClusterRequest};

use super::args::ConnectArgs;
use super::error::{CliError, KafkaError};
use super::metadata::{self, ClusterInfo};
use super::output::emit;
use super::pool::{BrokerPool, CONNECTION_CONFIG};
use fjord_client::versions::{api_name, ApiVersionTable};
use fjord_client::Connection;

/// Cluster subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the cluster id, controller, brokers and the broker's supported API versions.
    Info(InfoArgs),
}

/// Arguments of `fjord cluster info`.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs a cluster subcommand.
pub fn run(cmd: ClusterCommand) -> Result<(), CliError> {
    match cmd {
        ClusterCommand::Info(args) => info(args),
    }
}

fn info(args: InfoArgs) -> Result<(), CliError> {
    let mut pool = BrokerPool::connect(&args.connect.bootstrap_server)?;
    let connection = pool.bootstrap();
    let cluster = describe_cluster(connection)?;
    let mut text = render_cluster(&cluster);
    text.push_str(&render_api_versions(connection.address(), connection.versions()));
    emit(&text)
}

/// DescribeCluster when the broker supports it, else the same facts from Metadata.
fn describe_cluster(connection: &mut Connection) -> Result<ClusterInfo, CliError> {
    if connection.version_of(ApiKey::DescribeCluster).is_err() {
        return Ok(metadata::fetch(connection, Some(&[]), false)?);
    }
    let response = connection.call(&DescribeClusterRequest::default())?;
    KafkaError::check(response.error_code, response.error_message.as_deref(), || "DescribeCluster".into())?;
    let brokers = response.brokers.into_iter().map(|b| (b.broker_id.0, metadata::broker_info(b.host, b.port, b.rack))).collect();
    Ok(ClusterInfo {
        cluster_id: Some(response.cluster_id.to_string()),
        controller_id: response.controller_id.0,
        brokers,
        topics: Vec::new(),
    })
}

fn render_cluster(cluster: &ClusterInfo) -> String {
    let controller = if cluster.controller_id < 0 { "none".to_string() } else { cluster.controller_id.to_string() };
    let mut out = format!(
        "Cluster ID: {}\nController: {}\nBrokers:\n  {:<8}{:<32}RACK\n",
        cluster.cluster_id.as_deref().unwrap_or("(none)"),
        controller,
        "ID",
        "ADDRESS"
    );
    for (id, broker) in &cluster.brokers {
        let rack = broker.rack.as_deref().unwrap_or("-");
        let _ = writeln!(out, "  {:<8}{:<32}{}", id, broker.address(), rack);
    }
    out
}

/// The broker's table with, for each API, the version this client would use ("-" for none).
fn render_api_versions(address: &str, versions: &ApiVersionTable) -> String {
    let mut out = format!("API versions of {address}:\n  {:<36}{:>5}{:>5}{:>5}{:>6}\n", "API", "KEY", "MIN", "MAX", "USED");
    for (key, range) in versions.entries() {
        let used = ApiKey::try_from(key)
            .ok()
            .and_then(|api| versions.choose(api, CONNECTION_CONFIG.versions).ok())
            .map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(out, "  {:<36}{:>5}{:>5}{:>5}{:>6}", api_name(key), key, range.min, range.max, used);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_client::metadata::BrokerInfo;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::ApiVersionsResponse;

    #[test]
    fn cluster_info_lists_id_controller_and_brokers() {
        let mut cluster = ClusterInfo { cluster_id: Some("abc".into()), controller_id: 1, ..Default::default() };
        cluster.brokers.insert(1, BrokerInfo { host: "localhost".into(), port: 9092, rack: None });
        let text = render_cluster(&cluster);
        assert!(text.starts_with("Cluster ID: abc\nController: 1\nBrokers:\n"), "{text}");
        assert!(text.contains("  1       localhost:9092"), "{text}");
    }

    #[test]
    fn api_table_shows_broker_range_and_the_version_the_client_uses() {
        let mut response = ApiVersionsResponse::default();
        response.api_keys = vec![
            ApiVersion::default().with_api_key(0).with_min_version(0).with_max_version(99),
            ApiVersion::default().with_api_key(9999).with_min_version(0).with_max_version(1),
        ];
        let text = render_api_versions("h:1", &ApiVersionTable::from_response(&response));
        let produce_max = ApiKey::Produce.valid_versions().max;
        let produce_line = text.lines().find(|l| l.trim_start().starts_with("Produce")).unwrap();
        assert!(produce_line.ends_with(&format!("99{produce_max:>6}")), "{produce_line}");
        assert!(text.lines().any(|l| l.trim_start().starts_with("Unknown(9999)") && l.ends_with('-')));
    }

    #[test]
    fn describe_cluster_request_encodes_at_every_client_version() {
        let request = DescribeClusterRequest::default();
        super::super::pool::assert_encodes_at_every_client_version(ApiKey::DescribeCluster, &request);
    }
}
