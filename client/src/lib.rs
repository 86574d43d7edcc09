//! fjord-client: the one Kafka client of Fjord's own tools, shared by the `fjord` command line
//! (`fjord topic/produce/consume/cluster`) and the `fjord-bench` load generator. It reaches a
//! broker only over the Kafka wire, so it measures and administers any Kafka-compatible broker
//! the same way, and never borrows the broker's own code.
//!
//! ```text
//!  Connection (blocking TcpStream, timeouts) ── connection.rs
//!      │ encode_request / read_frame / split_response / decode_body ── wire.rs (no I/O)
//!      │ ApiVersions on open, highest common version per API ──────── versions.rs
//!      ├─ Metadata: brokers, topics, partition leaders ────────────── metadata.rs
//!      ├─ Produce, Fetch, ListOffsets requests of a plain client ──── requests.rs
//!      ├─ Produce bodies: RecordBatch v2 built by kafka-protocol ──── records.rs
//!      └─ Fetch bodies: batch headers walked, Kafka's v2 layout ───── batch.rs
//! ```
//! Each tool picks its client id, its version ranges and its limits in a [`ConnectionConfig`];
//! errors are [`ClientError`], Kafka error codes [`KafkaError`] with Kafka's names.

pub mod batch;
pub mod connection;
pub mod error;
pub mod metadata;
pub mod records;
pub mod requests;
pub mod versions;
pub mod wire;

pub use connection::{Connection, ConnectionConfig, ResponseReader};
pub use error::{error_code_name, ClientError, KafkaError};
pub use versions::{ApiVersionTable, NegotiationError};
