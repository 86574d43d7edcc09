//! Where consumption starts: `beginning`, `end` (resolved with ListOffsets) or an offset.

use std::collections::BTreeMap;
use std::str::FromStr;

use fjord_client::requests::{list_offsets, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};

use super::super::error::CliError;
use super::super::limits::REQUEST_TIMEOUT_MS;
use super::super::metadata::TopicInfo;
use super::super::pool::BrokerPool;

/// The `--from` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Beginning,
    End,
    Offset(i64),
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "beginning" | "earliest" => Ok(StartFrom::Beginning),
            "end" | "latest" => Ok(StartFrom::End),
            other => match other.parse::<i64>() {
                Ok(offset) if offset >= 0 => Ok(StartFrom::Offset(offset)),
                _ => Err(format!("expected beginning, end or a non-negative offset, got '{other}'")),
            },
        }
    }
}

/// The first offset to fetch for each partition.
pub fn resolve(
    pool: &mut BrokerPool,
    topic: &TopicInfo,
    partitions: &[i32],
    from: StartFrom,
) -> Result<BTreeMap<i32, i64>, CliError> {
    let timestamp = match from {
        StartFrom::Offset(offset) => return Ok(partitions.iter().map(|p| (*p, offset)).collect()),
        StartFrom::Beginning => EARLIEST_TIMESTAMP,
        StartFrom::End => LATEST_TIMESTAMP,
    };
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in partitions {
        let leader = topic.partition(*p).map_or(-1, |info| info.leader_id);
        by_leader.entry(leader).or_default().push(*p);
    }
    let mut starts = BTreeMap::new();
    for (leader, group) in by_leader {
        starts.extend(list_offsets(pool.broker(leader)?, &topic.name, &group, timestamp, REQUEST_TIMEOUT_MS)?);
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_accepts_names_aliases_and_non_negative_offsets() {
        assert_eq!("beginning".parse(), Ok(StartFrom::Beginning));
        assert_eq!("earliest".parse(), Ok(StartFrom::Beginning));
        assert_eq!("end".parse(), Ok(StartFrom::End));
        assert_eq!("latest".parse(), Ok(StartFrom::End));
        assert_eq!("42".parse(), Ok(StartFrom::Offset(42)));
        assert!("-1".parse::<StartFrom>().is_err());
        assert!("middle".parse::<StartFrom>().is_err());
    }
}
