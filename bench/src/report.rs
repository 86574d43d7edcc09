//! The JSON report of one run: every parameter, totals, throughput, latency percentiles with the
//! full percentile spectrum, broker figures, and a per-second time series. `plot` reads these back.

use serde::{Deserialize, Serialize};

use crate::broker_probe::BrokerFigures;
use crate::error::{BenchError, Result};
use crate::stats::{CounterSnapshot, LatencySummary};
use crate::workload::Workload;

pub const REPORT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub records: u64,
    /// Bytes of RecordBatch v2 (headers, record framing and compressed payload).
    pub batch_bytes: u64,
    /// Bytes of record values (producers only; 0 for consumers, who do not look inside batches).
    pub payload_bytes: u64,
    pub requests: u64,
    pub errors: u64,
    pub records_per_second: f64,
    /// Batch megabytes (10^6 bytes) per second.
    pub mb_per_second: f64,
    /// Payload megabytes (10^6 bytes) per second (producers only).
    pub payload_mb_per_second: f64,
    /// Produce: from due time to acknowledgement. Consume: end-to-end, from the producer's due
    /// time (stamped in the first record) to the consumer reading it.
    pub latency: Option<LatencySummary>,
}

impl Side {
    pub fn new(totals: CounterSnapshot, seconds: f64, latency: Option<LatencySummary>) -> Side {
        let per_second = |value: u64| if seconds > 0.0 { value as f64 / seconds } else { 0.0 };
        Side {
            records: totals.records,
            batch_bytes: totals.batch_bytes,
            payload_bytes: totals.payload_bytes,
            requests: totals.requests,
            errors: totals.errors,
            records_per_second: per_second(totals.records),
            mb_per_second: per_second(totals.batch_bytes) / 1e6,
            payload_mb_per_second: per_second(totals.payload_bytes) / 1e6,
            latency,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondSample {
    /// Seconds since the workers started (end of this interval).
    pub second: u64,
    pub warmup: bool,
    pub produce_records_per_second: f64,
    pub produce_mb_per_second: f64,
    pub consume_records_per_second: f64,
    pub consume_mb_per_second: f64,
    pub produce_p99_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format_version: u32,
    pub tool: String,
    pub tool_version: String,
    /// The broker's name in comparisons (`--label`).
    pub label: String,
    pub bootstrap: String,
    pub started_at_unix_ms: u64,
    pub workload: Workload,
    /// Partitions the topic really has (an existing topic keeps its own count).
    pub topic_partitions: u32,
    /// Records per batch as sent (linger can shorten open-loop batches).
    pub batch_records: u32,
    pub pinned_cores: bool,
    /// Seconds measured (after warm-up).
    pub measured_seconds: f64,
    pub produce: Option<Side>,
    pub consume: Option<Side>,
    pub broker: Option<BrokerFigures>,
    /// Broker-side time of the requests answered while measuring (`--broker-metrics`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_request_times: Vec<crate::broker_metrics::RequestTimes>,
    /// (Kafka error code, count) of error responses.
    pub broker_errors: Vec<(i16, u64)>,
    pub time_series: Vec<SecondSample>,
}

impl Report {
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| BenchError::Report(e.to_string()))
    }
    pub fn from_json(text: &str) -> Result<Report> {
        serde_json::from_str(text).map_err(|e| BenchError::Report(e.to_string()))
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::stats::{summarize, LatencyRecorder};

    pub fn sample_report(label: &str, scale: f64) -> Report {
        let recorder = LatencyRecorder::default();
        for i in 1..=10_000u64 {
            recorder.record((i as f64 * 1000.0 * scale) as u64);
        }
        let totals = CounterSnapshot { records: 1000, batch_bytes: 1_050_000, payload_bytes: 1_024_000, requests: 10, errors: 0 };
        Report {
            format_version: REPORT_FORMAT_VERSION,
            tool: "fjord-bench".to_string(),
            tool_version: "0.1.0".to_string(),
            label: label.to_string(),
            bootstrap: "127.0.0.1:9092".to_string(),
            started_at_unix_ms: 1,
            workload: Workload::default(),
            topic_partitions: 8,
            batch_records: 64,
            pinned_cores: false,
            measured_seconds: 2.0,
            produce: Some(Side::new(totals, 2.0, summarize(&recorder.total()))),
            consume: Some(Side::new(totals, 2.0, summarize(&recorder.total()))),
            broker: None,
            broker_request_times: vec![],
            broker_errors: vec![],
            time_series: (1..=5)
                .map(|s| SecondSample {
                    second: s,
                    warmup: s == 1,
                    produce_records_per_second: 500.0 * scale,
                    produce_mb_per_second: 0.5 * scale * s as f64,
                    consume_records_per_second: 500.0,
                    consume_mb_per_second: 0.5,
                    produce_p99_ms: Some(1.0),
                    e2e_p99_ms: None,
                })
                .collect(),
        }
    }

    #[test]
    fn report_json_has_the_documented_shape_and_round_trips() {
        let report = sample_report("fjord", 1.0);
        let json = report.to_json().unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in ["label", "workload", "measured_seconds", "produce", "consume", "broker", "time_series", "batch_records"] {
            assert!(value.get(key).is_some(), "missing {key}");
        }
        let produce = &value["produce"];
        assert_eq!(produce["records"], 1000);
        assert_eq!(produce["records_per_second"], 500.0);
        assert!((produce["mb_per_second"].as_f64().unwrap() - 0.525).abs() < 1e-9);
        let latency = &produce["latency"];
        for key in ["p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "p99_99_ms", "max_ms", "mean_ms", "count", "spectrum"] {
            assert!(latency.get(key).is_some(), "missing latency.{key}");
        }
        assert!(latency["spectrum"][0].get("percentile").is_some());
        assert_eq!(value["workload"]["acks"], "1");
        assert_eq!(value["workload"]["mode"], "produce");
        assert_eq!(value["time_series"].as_array().unwrap().len(), 5);
        // serde_json may move a float by one ulp on the way back; compare the rest exactly.
        let back = Report::from_json(&json).unwrap();
        assert_eq!((&back.label, &back.workload, &back.time_series), (&report.label, &report.workload, &report.time_series));
        let (a, b) = (back.produce.unwrap().latency.unwrap(), report.produce.unwrap().latency.unwrap());
        assert_eq!(a.spectrum.len(), b.spectrum.len());
        assert!(a.spectrum.iter().zip(&b.spectrum).all(|(x, y)| (x.percentile - y.percentile).abs() < 1e-9));
    }
}
