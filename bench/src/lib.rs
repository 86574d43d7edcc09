//! fjord-bench: a load generator that speaks the Kafka protocol itself (kafka-protocol over
//! blocking sockets, one connection per worker thread), so it measures any Kafka-compatible
//! broker the same way.
//!
//! - Producers send pre-built RecordBatch v2 requests, stamping each with its due time (open-loop
//!   schedule when a rate is set, so latency has no coordinated omission) and keeping up to
//!   `max_inflight` requests in flight per connection.
//! - Consumers fetch and walk batch headers only; end-to-end latency comes from the stamp in each
//!   batch's first record.
//! - Results: a live line per second on stderr, a JSON report, an SVG (latency spectrum and
//!   throughput over time), and optionally the broker's CPU and memory from /proc.
//!
//! Workloads are TOML files in `bench/workloads/`; see `bench/README.md`.

pub mod admin;
pub mod batch;
pub mod broker_metrics;
pub mod broker_probe;
pub mod consumer;
pub mod error;
pub mod producer;
pub mod report;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod shared;
pub mod stats;
pub mod svg;
pub mod wire;
pub mod workload;
