//! Fjord's Kafka wire protocol: framing, API version negotiation, one module per API handler,
//! connections with in-order responses (bounded by each shard's request memory budget, read and
//! idle deadlines), and the router that splits requests by owner shard.
//!
//! Modules depend downward only (no import loops):
//!
//! ```text
//!  server ─ connection ─ api::* (both halves of each Kafka API, the dispatcher)
//!                          │
//!                        shard (context + coordinators)
//!                          │
//!            coordinator::{groups, transactions} on the coordinator runtime (coordinator)
//!                          │
//!                   admin ─ router ─ context
//!                          │
//!   message (shard messages) · settings · codes · frame · budget · response · fetch_session · log_limit
//! ```

pub mod admin;
pub mod api;
pub mod budget;
pub mod codes;
pub mod connection;
pub mod context;
pub mod coordinator;
pub mod fetch_session;
pub mod frame;
pub mod log_limit;
pub mod message;
pub mod response;
pub mod router;
pub mod server;
pub mod settings;
pub mod shard;
