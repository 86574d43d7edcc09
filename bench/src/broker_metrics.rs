//! Broker-side request times from a broker's Prometheus endpoint (`fjord start --metrics-listen`):
//! the `fjord_request_duration_seconds` histogram, scraped when measuring starts and when it ends,
//! so a report can set the time the broker spent on a request (read off its socket to response
//! written) beside the latency the client saw. The gap between the two is the client's own time
//! and the kernel's (scheduling, loopback), which on a shared machine can dominate the tail.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

const SERIES: &str = "fjord_request_duration_seconds_bucket";
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest /metrics page read; the histogram series of a few APIs are a few KiB per shard.
const SCRAPE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Cumulative bucket counts of one API, summed over the broker's shards: (upper bound in
/// seconds, count at or below it), ascending, `+Inf` last as `f64::INFINITY`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(pub Vec<(f64, f64)>);

/// Broker-side time of the requests answered while measuring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestTimes {
    pub api: String,
    pub requests: u64,
    /// Quantiles interpolated within buckets as Prometheus' histogram_quantile does (bucket
    /// bounds: 0.1, 0.25, 0.5, 1, 2.5, 5, 10 ms, ...), so they are estimates, not exact values.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p99_9_ms: Option<f64>,
}

/// GET /metrics from `address` (host:port).
pub fn scrape(address: &str) -> Result<String> {
    let context = || format!("scraping http://{address}/metrics");
    let target = address
        .to_socket_addrs()
        .map_err(|e| BenchError::io(context(), e))?
        .next()
        .ok_or_else(|| BenchError::Workload(format!("{address} resolves to no address")))?;
    let mut stream = TcpStream::connect_timeout(&target, SCRAPE_TIMEOUT).map_err(|e| BenchError::io(context(), e))?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT)).map_err(|e| BenchError::io(context(), e))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT)).map_err(|e| BenchError::io(context(), e))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").map_err(|e| BenchError::io(context(), e))?;
    let mut response = String::new();
    stream.take(SCRAPE_BYTES_MAX).read_to_string(&mut response).map_err(|e| BenchError::io(context(), e))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| BenchError::Protocol { address: address.to_string(), detail: "no HTTP header end".into() })?;
    let status = head.lines().next().unwrap_or("");
    if status.split(' ').nth(1) != Some("200") {
        return Err(BenchError::Protocol { address: address.to_string(), detail: format!("/metrics answered {status:?}") });
    }
    Ok(body.to_string())
}

/// The request-time buckets of `api` (Kafka's request name, e.g. `Produce`) in a /metrics page,
/// summed over shards. Empty when the broker has answered no such request.
pub fn parse_buckets(text: &str, api: &str) -> Buckets {
    let wanted = format!("api=\"{api}\"");
    let mut by_bound: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(SERIES).and_then(|rest| rest.strip_prefix('{')) else { continue };
        let Some((labels, value)) = rest.split_once("} ") else { continue };
        if !labels.split(',').any(|label| label == wanted) {
            continue;
        }
        let Some(bound) = labels.split(',').find_map(|label| label.strip_prefix("le=\"")?.strip_suffix('"').map(str::to_string))
        else {
            continue;
        };
        let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().unwrap_or(f64::NAN) };
        let (Ok(count), false) = (value.trim().parse::<f64>(), bound.is_nan()) else { continue };
        match by_bound.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, total)) => *total += count,
            None => by_bound.push((bound, count)),
        }
    }
    by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    Buckets(by_bound)
}

impl Buckets {
    /// The requests counted in `self` but not in `earlier` (a scrape taken before).
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .map(|&(bound, count)| {
                    let before = earlier.0.iter().find(|(b, _)| *b == bound).map_or(0.0, |(_, c)| *c);
                    (bound, (count - before).max(0.0))
                })
                .collect(),
        )
    }

    pub fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, count)| *count)
    }

    /// The `q` quantile in seconds, interpolated linearly inside its bucket (the first bucket
    /// starts at 0); in the `+Inf` bucket, the highest finite bound. None without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(bound, count) in &self.0 {
            if count >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = count - lower.1;
                let fraction = if in_bucket > 0.0 { (rank - lower.1) / in_bucket } else { 1.0 };
                return Some(lower.0 + (bound - lower.0) * fraction);
            }
            lower = (bound, count);
        }
        Some(lower.0)
    }

    pub fn times(&self, api: &str) -> RequestTimes {
        let ms = |q: f64| self.quantile(q).map(|seconds| seconds * 1e3);
        RequestTimes {
            api: api.to_string(),
            requests: self.count() as u64,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p99_9_ms: ms(0.999),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# TYPE fjord_request_duration_seconds histogram
fjord_request_duration_seconds_bucket{shard=\"0\",api=\"Produce\",le=\"0.001\"} 90
fjord_request_duration_seconds_bucket{shard=\"0\",api=\"Produce\",le=\"0.0025\"} 99
fjord_request_duration_seconds_bucket{shard=\"0\",api=\"Produce\",le=\"+Inf\"} 100
fjord_request_duration_seconds_sum{shard=\"0\",api=\"Produce\"} 0.1
fjord_request_duration_seconds_bucket{shard=\"1\",api=\"Produce\",le=\"0.001\"} 90
fjord_request_duration_seconds_bucket{shard=\"1\",api=\"Produce\",le=\"0.0025\"} 99
fjord_request_duration_seconds_bucket{shard=\"1\",api=\"Produce\",le=\"+Inf\"} 100
fjord_request_duration_seconds_bucket{shard=\"1\",api=\"Fetch\",le=\"0.001\"} 7
fjord_request_duration_seconds_bucket{shard=\"1\",api=\"Fetch\",le=\"+Inf\"} 7
fjord_produce_bytes_total{shard=\"0\"} 5
";

    #[test]
    fn buckets_are_summed_over_shards_per_api() {
        let produce = parse_buckets(PAGE, "Produce");
        assert_eq!(produce.0, vec![(0.001, 180.0), (0.0025, 198.0), (f64::INFINITY, 200.0)]);
        assert_eq!(parse_buckets(PAGE, "Fetch").count(), 7.0);
        assert_eq!(parse_buckets(PAGE, "Metadata"), Buckets::default());
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_like_prometheus() {
        let produce = parse_buckets(PAGE, "Produce");
        // Rank 100 of 200 lies in the first bucket [0, 1 ms]: 100/180 of the way.
        let p50 = produce.quantile(0.5).unwrap();
        assert!((p50 - 0.001 * 100.0 / 180.0).abs() < 1e-12, "{p50}");
        // Rank 198 is the 18th of 18 in (1 ms, 2.5 ms].
        let p99 = produce.quantile(0.99).unwrap();
        assert!((p99 - 0.0025).abs() < 1e-12, "{p99}");
        // Rank 199.8 falls in +Inf: the highest finite bound is all a histogram can say.
        assert_eq!(produce.quantile(0.999), Some(0.0025));
        assert_eq!(Buckets::default().quantile(0.5), None);
    }

    #[test]
    fn since_keeps_only_the_requests_between_two_scrapes() {
        let before = parse_buckets(PAGE, "Produce");
        let after = Buckets(vec![(0.001, 380.0), (0.0025, 398.0), (f64::INFINITY, 400.0)]);
        let measured = after.since(&before);
        assert_eq!(measured.0, vec![(0.001, 200.0), (0.0025, 200.0), (f64::INFINITY, 200.0)]);
        let times = measured.times("Produce");
        assert_eq!(times.requests, 200);
        assert!((times.p99_ms.unwrap() - 0.99).abs() < 1e-9, "{times:?}");
    }
}
