//! Counters and latency histograms shared by the worker threads and the reporting thread.
//! Workers add to atomics and record into a mutex-guarded pair of histograms (whole run and the
//! current second); the reporting thread reads them once a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in nanoseconds, up to an hour, to 3 significant digits.
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;
/// The percentile spectrum goes to five nines, in steps of a tenth of a nine.
const SPECTRUM_NINES_MAX: f64 = 5.0;
const SPECTRUM_STEPS_PER_NINE: u32 = 10;

#[derive(Default)]
pub struct Counters {
    records: AtomicU64,
    batch_bytes: AtomicU64,
    payload_bytes: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterSnapshot {
    pub records: u64,
    pub batch_bytes: u64,
    pub payload_bytes: u64,
    pub requests: u64,
    pub errors: u64,
}

impl Counters {
    pub fn add(&self, records: u64, batch_bytes: u64, payload_bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.batch_bytes.fetch_add(batch_bytes, Ordering::Relaxed);
        self.payload_bytes.fetch_add(payload_bytes, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            records: self.records.load(Ordering::Relaxed),
            batch_bytes: self.batch_bytes.load(Ordering::Relaxed),
            payload_bytes: self.payload_bytes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

impl CounterSnapshot {
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            records: self.records.saturating_sub(earlier.records),
            batch_bytes: self.batch_bytes.saturating_sub(earlier.batch_bytes),
            payload_bytes: self.payload_bytes.saturating_sub(earlier.payload_bytes),
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
        }
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, SIGNIFICANT_DIGITS).expect("static histogram bounds are valid")
}

struct Pair {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

/// A latency histogram for the whole measured run plus one for the current second.
pub struct LatencyRecorder {
    pair: Mutex<Pair>,
}

impl Default for LatencyRecorder {
    fn default() -> LatencyRecorder {
        LatencyRecorder { pair: Mutex::new(Pair { total: new_histogram(), interval: new_histogram() }) }
    }
}

impl LatencyRecorder {
    pub fn record(&self, latency_ns: u64) {
        let value = latency_ns.clamp(1, LATENCY_NS_MAX);
        let mut pair = self.pair.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pair.total.saturating_record(value);
        pair.interval.saturating_record(value);
    }
    /// The current second's histogram; starts the next second.
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut pair = self.pair.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let interval = pair.interval.clone();
        pair.interval.reset();
        interval
    }
    /// Forgets the warm-up.
    pub fn reset_total(&self) {
        self.pair.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).total.reset();
    }
    pub fn total(&self) -> Histogram<u64> {
        self.pair.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).total.clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpectrumPoint {
    pub percentile: f64,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub p99_99_ms: f64,
    pub max_ms: f64,
    /// Latency at percentiles evenly spaced on a "nines" scale (0, 90, 99, 99.9, ...).
    pub spectrum: Vec<SpectrumPoint>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The percentile that lies `nines` nines up: 1 → 90, 2 → 99, 3 → 99.9.
pub fn percentile_at_nines(nines: f64) -> f64 {
    100.0 * (1.0 - 10f64.powf(-nines))
}

pub fn p99_ms(histogram: &Histogram<u64>) -> Option<f64> {
    (!histogram.is_empty()).then(|| ms(histogram.value_at_quantile(0.99)))
}

pub fn summarize(histogram: &Histogram<u64>) -> Option<LatencySummary> {
    if histogram.is_empty() {
        return None;
    }
    let at = |percentile: f64| ms(histogram.value_at_percentile(percentile));
    let spectrum = (0..=(SPECTRUM_NINES_MAX as u32 * SPECTRUM_STEPS_PER_NINE))
        .map(|step| {
            let percentile = percentile_at_nines(step as f64 / SPECTRUM_STEPS_PER_NINE as f64);
            SpectrumPoint { percentile, latency_ms: at(percentile) }
        })
        .collect();
    Some(LatencySummary {
        count: histogram.len(),
        mean_ms: histogram.mean() / 1e6,
        p50_ms: at(50.0),
        p90_ms: at(90.0),
        p99_ms: at(99.0),
        p99_9_ms: at(99.9),
        p99_99_ms: at(99.99),
        max_ms: ms(histogram.max()),
        spectrum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let recorder = LatencyRecorder::default();
        for ms_value in 1..=1000u64 {
            recorder.record(ms_value * 1_000_000);
        }
        let summary = summarize(&recorder.total()).unwrap();
        assert_eq!(summary.count, 1000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 1e-9;
        assert!(close(summary.p50_ms, 500.0), "{}", summary.p50_ms);
        assert!(close(summary.p90_ms, 900.0), "{}", summary.p90_ms);
        assert!(close(summary.p99_ms, 990.0), "{}", summary.p99_ms);
        assert!(close(summary.max_ms, 1000.0), "{}", summary.max_ms);
        assert_eq!(summary.spectrum.len(), 51);
        assert_eq!(summary.spectrum[0].percentile, 0.0);
        assert!((summary.spectrum[10].percentile - 90.0).abs() < 1e-9);
        assert!((summary.spectrum[30].percentile - 99.9).abs() < 1e-9);
        assert!(summary.spectrum.windows(2).all(|w| w[0].latency_ms <= w[1].latency_ms));
        // The interval histogram is emptied by taking it; the total keeps everything.
        assert_eq!(recorder.take_interval().len(), 1000);
        assert_eq!(recorder.take_interval().len(), 0);
        recorder.reset_total();
        assert!(summarize(&recorder.total()).is_none());
    }

    #[test]
    fn counters_subtract_the_warmup() {
        let counters = Counters::default();
        counters.add(10, 1100, 1000);
        let warm = counters.snapshot();
        counters.add(5, 550, 500);
        counters.add_error();
        let measured = counters.snapshot().since(&warm);
        assert_eq!(measured, CounterSnapshot { records: 5, batch_bytes: 550, payload_bytes: 500, requests: 1, errors: 1 });
    }
}
