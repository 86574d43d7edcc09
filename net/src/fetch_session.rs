//! Incremental fetch sessions (KIP-227).
//!
//! A consumer may ask the broker to remember the partitions it fetches (epoch 0 creates a session);
//! later requests (epoch n > 0) carry only changes, and responses carry only partitions with new
//! data or changed metadata. Sessions live in the cache of the shard whose connection made them;
//! a client that reconnects elsewhere gets FETCH_SESSION_ID_NOT_FOUND and starts a new one, as
//! the protocol allows.

use std::time::Instant;

use ahash::AHashMap;
use indexmap::IndexMap;

/// Kafka's max.incremental.fetch.session.cache.slots default.
pub const FETCH_SESSIONS_MAX: usize = 1000;

pub use crate::codes::{FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH};

/// A partition as a session remembers it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPartition {
    pub topic_id: [u8; 16],
    pub fetch_offset: i64,
    pub max_bytes: i32,
    /// What the last response told the client; a change makes the partition reappear.
    pub last_high_watermark: i64,
    pub last_log_start_offset: i64,
    pub last_error: i16,
}

pub type SessionKey = (String, i32);

#[derive(Debug)]
pub struct FetchSession {
    pub id: i32,
    /// The epoch the next request must carry.
    pub next_epoch: i32,
    pub partitions: IndexMap<SessionKey, SessionPartition>,
    pub last_used: Instant,
}

/// The sessions of one shard. Lives on that shard.
#[derive(Debug, Default)]
pub struct FetchSessionCache {
    sessions: AHashMap<i32, FetchSession>,
    next_id: u32,
}

impl FetchSessionCache {
    /// Creates a session; `None` when the cache is full of sessions used within the last minute.
    pub fn create(&mut self, shard_id: usize, partitions: IndexMap<SessionKey, SessionPartition>) -> Option<i32> {
        if self.sessions.len() >= FETCH_SESSIONS_MAX {
            let oldest =
                self.sessions.values().min_by_key(|session| session.last_used).map(|session| (session.id, session.last_used))?;
            if oldest.1.elapsed().as_secs() < 60 {
                return None;
            }
            self.sessions.remove(&oldest.0);
        }
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            let id = ((self.next_id & 0x007f_ffff) << 8 | (shard_id as u32 & 0xff)) as i32;
            if id > 0 && !self.sessions.contains_key(&id) {
                self.sessions.insert(id, FetchSession { id, next_epoch: 1, partitions, last_used: Instant::now() });
                return Some(id);
            }
        }
    }

    pub fn remove(&mut self, id: i32) {
        self.sessions.remove(&id);
    }

    /// The session for an incremental request, checking its epoch.
    pub fn get_mut(&mut self, id: i32, epoch: i32) -> Result<&mut FetchSession, i16> {
        let session = self.sessions.get_mut(&id).ok_or(FETCH_SESSION_ID_NOT_FOUND)?;
        if session.next_epoch != epoch {
            return Err(INVALID_FETCH_SESSION_EPOCH);
        }
        session.last_used = Instant::now();
        Ok(session)
    }
}

impl FetchSessionCache {
    /// The session without an epoch check (used after the request was admitted).
    pub fn get_mut_unchecked(&mut self, id: i32) -> Result<&mut FetchSession, i16> {
        self.sessions.get_mut(&id).ok_or(FETCH_SESSION_ID_NOT_FOUND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_request_needs_known_session_and_next_epoch() {
        let mut cache = FetchSessionCache::default();
        let id = cache.create(3, IndexMap::new()).expect("room");
        assert!(id > 0);
        assert_eq!(cache.get_mut(id, 2).unwrap_err(), INVALID_FETCH_SESSION_EPOCH);
        let session = cache.get_mut(id, 1).expect("epoch 1 is next");
        session.next_epoch += 1;
        assert!(cache.get_mut(id, 2).is_ok());
        assert_eq!(cache.get_mut(id + 256, 1).unwrap_err(), FETCH_SESSION_ID_NOT_FOUND);
        cache.remove(id);
        assert_eq!(cache.get_mut(id, 2).unwrap_err(), FETCH_SESSION_ID_NOT_FOUND);
    }
}
