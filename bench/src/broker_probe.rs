//! Broker-side figures from /proc: CPU time (utime + stime of /proc/PID/stat) and memory
//! (VmRSS, VmHWM of /proc/PID/status), sampled at the start, every second, and at the end.

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub hwm_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerFigures {
    pub pid: u32,
    /// CPU seconds the broker used between the end of warm-up and the end of the run.
    pub cpu_seconds: f64,
    /// CPU seconds per GB (10^9 bytes) of record batches produced; null without production.
    pub cpu_seconds_per_gb_produced: Option<f64>,
    pub rss_start_bytes: u64,
    pub rss_end_bytes: u64,
    /// The largest VmRSS seen in the once-a-second samples.
    pub rss_peak_sampled_bytes: u64,
    /// VmHWM at the end: the peak over the broker's whole life, not only this run.
    pub vm_hwm_bytes: u64,
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the running system and has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime in clock ticks from the text of /proc/PID/stat. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from the last ')'.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A "Key:   1234 kB" line of /proc/PID/status, in bytes.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(key) && line[key.len()..].starts_with(':'))?;
    let kb: u64 = line[key.len() + 1..].split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

pub fn sample(pid: u32) -> Result<ProcSample> {
    let read = |file: &str| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::read_to_string(&path).map_err(|e| BenchError::io(format!("reading {path} (is the broker running?)"), e))
    };
    let stat = read("stat")?;
    let status = read("status")?;
    let bad = |what: &str| BenchError::Report(format!("cannot parse {what} of /proc/{pid}"));
    let ticks = parse_stat_cpu_ticks(&stat).ok_or_else(|| bad("stat"))?;
    Ok(ProcSample {
        cpu_seconds: ticks as f64 / clock_ticks_per_second(),
        rss_bytes: parse_status_kb(&status, "VmRSS").ok_or_else(|| bad("VmRSS"))?,
        hwm_bytes: parse_status_kb(&status, "VmHWM").ok_or_else(|| bad("VmHWM"))?,
    })
}

pub fn figures(pid: u32, start: ProcSample, end: ProcSample, rss_peak_bytes: u64, produced_bytes: u64) -> BrokerFigures {
    let cpu_seconds = (end.cpu_seconds - start.cpu_seconds).max(0.0);
    BrokerFigures {
        pid,
        cpu_seconds,
        cpu_seconds_per_gb_produced: (produced_bytes > 0).then(|| cpu_seconds / (produced_bytes as f64 / 1e9)),
        rss_start_bytes: start.rss_bytes,
        rss_end_bytes: end.rss_bytes,
        rss_peak_sampled_bytes: rss_peak_bytes.max(start.rss_bytes).max(end.rss_bytes),
        vm_hwm_bytes: end.hwm_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status_parse_including_odd_command_names() {
        let stat = "1234 (fj (ord) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 10";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
        let status = "Name:\tfjord\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(10240 * 1024));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(20480 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let sample = sample(std::process::id()).unwrap();
        assert!(sample.rss_bytes > 0 && sample.hwm_bytes >= sample.rss_bytes / 2);
        let figures = figures(1, sample, ProcSample { cpu_seconds: sample.cpu_seconds + 2.0, ..sample }, 0, 4_000_000_000);
        assert!((figures.cpu_seconds - 2.0).abs() < 1e-9);
        // (start + 2.0) - start is not exactly 2.0 for every start: compare within rounding.
        let per_gb = figures.cpu_seconds_per_gb_produced.expect("bytes were produced");
        assert!((per_gb - 0.5).abs() < 1e-9, "{per_gb}");
    }
}
