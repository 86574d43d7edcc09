//! Connections to the brokers of one cluster, keyed by node id, grown from a bootstrap address.
//!
//! A broker whose advertised HOST:PORT resolves to the bootstrap's peer address reuses the
//! bootstrap connection; any other broker gets its own connection on first use.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::time::Duration;

use fjord_client::versions::codec_versions;
use fjord_client::{Connection, ConnectionConfig};

use super::error::CliError;
use super::limits::{BROKER_CONNECTION_COUNT_MAX, CONNECT_TIMEOUT_MS, RESPONSE_SIZE_BYTES_MAX, SOCKET_TIMEOUT_MS};

/// How the command line connects: as `fjord-cli`, speaking every version the codecs know.
pub const CONNECTION_CONFIG: ConnectionConfig = ConnectionConfig {
    client_id: "fjord-cli",
    versions: codec_versions,
    connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS),
    io_timeout: Duration::from_millis(SOCKET_TIMEOUT_MS),
    frame_bytes_max: RESPONSE_SIZE_BYTES_MAX,
};

/// Connects to one broker at `address` (HOST:PORT).
pub fn open(address: &str) -> Result<Connection, CliError> {
    Ok(Connection::open(address, CONNECTION_CONFIG)?)
}

/// The bootstrap connection plus one connection per other broker in use.
pub struct BrokerPool {
    bootstrap: Connection,
    addresses: HashMap<i32, String>,
    bootstrap_node_ids: HashMap<i32, bool>,
    connections: HashMap<i32, Connection>,
}

impl BrokerPool {
    /// Connects to the bootstrap broker.
    pub fn connect(bootstrap_address: &str) -> Result<Self, CliError> {
        Ok(BrokerPool {
            bootstrap: open(bootstrap_address)?,
            addresses: HashMap::new(),
            bootstrap_node_ids: HashMap::new(),
            connections: HashMap::new(),
        })
    }

    /// The bootstrap connection, for requests any broker can answer.
    pub fn bootstrap(&mut self) -> &mut Connection {
        &mut self.bootstrap
    }

    /// Records the advertised address of each broker (from Metadata or DescribeCluster).
    pub fn learn_brokers(&mut self, brokers: impl IntoIterator<Item = (i32, String)>) {
        for (node_id, address) in brokers {
            if self.addresses.get(&node_id) != Some(&address) {
                self.bootstrap_node_ids.remove(&node_id);
                self.connections.remove(&node_id);
                self.addresses.insert(node_id, address);
            }
        }
    }

    /// The connection to broker `node_id`, opened on first use.
    pub fn broker(&mut self, node_id: i32) -> Result<&mut Connection, CliError> {
        if self.is_bootstrap(node_id)? {
            return Ok(&mut self.bootstrap);
        }
        if !self.connections.contains_key(&node_id) {
            if self.connections.len() >= BROKER_CONNECTION_COUNT_MAX {
                return Err(CliError::input(format!("more than {BROKER_CONNECTION_COUNT_MAX} broker connections needed")));
            }
            let connection = open(self.address_of(node_id)?)?;
            self.connections.insert(node_id, connection);
        }
        self.connections.get_mut(&node_id).ok_or(CliError::UnknownBroker { node_id })
    }

    fn address_of(&self, node_id: i32) -> Result<&str, CliError> {
        self.addresses.get(&node_id).map(String::as_str).ok_or(CliError::UnknownBroker { node_id })
    }

    /// Whether `node_id` is the broker behind the bootstrap connection (cached per node).
    fn is_bootstrap(&mut self, node_id: i32) -> Result<bool, CliError> {
        if let Some(known) = self.bootstrap_node_ids.get(&node_id) {
            return Ok(*known);
        }
        let address = self.address_of(node_id)?;
        let same = address == self.bootstrap.address()
            || address.to_socket_addrs().map(|mut addrs| addrs.any(|a| a == self.bootstrap.peer())).unwrap_or(false);
        self.bootstrap_node_ids.insert(node_id, same);
        Ok(same)
    }
}

/// Test helper: asserts `request` encodes at every version the command line may choose for `api`.
#[cfg(test)]
pub fn assert_encodes_at_every_client_version<R: kafka_protocol::protocol::Encodable>(
    api: kafka_protocol::messages::ApiKey,
    request: &R,
) {
    fjord_client::versions::assert_encodes_at_every_version(api, CONNECTION_CONFIG.versions, request);
}
