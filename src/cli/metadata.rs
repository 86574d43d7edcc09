//! Cluster metadata for the commands: [`fjord_client::metadata`], with the wait for a topic's
//! leaders teaching the [`BrokerPool`] where each broker is.

use std::time::Duration;

use fjord_client::metadata::LeaderWait;
pub use fjord_client::metadata::{broker_info, fetch, topic_name, ClusterInfo, TopicInfo};

use super::error::CliError;
use super::limits::{METADATA_ATTEMPT_COUNT_MAX, METADATA_RETRY_BACKOFF_MS};
use super::pool::BrokerPool;

/// Fetches metadata for one topic, waiting (bounded) until every partition has a leader; with
/// `auto_create`, an unknown topic is asked to be created and waited for too.
pub fn wait_for_leaders(pool: &mut BrokerPool, topic: &str, auto_create: bool) -> Result<TopicInfo, CliError> {
    let wait = LeaderWait {
        auto_create,
        unknown_is_pending: auto_create,
        attempt_count_max: METADATA_ATTEMPT_COUNT_MAX,
        retry_backoff: Duration::from_millis(METADATA_RETRY_BACKOFF_MS),
    };
    let leaders = fjord_client::metadata::wait_for_leaders(pool.bootstrap(), topic, wait)?;
    pool.learn_brokers(leaders.brokers.iter().map(|(id, b)| (*id, b.address())));
    Ok(leaders.topic)
}
