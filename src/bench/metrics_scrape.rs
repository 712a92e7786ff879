//! Reading the broker's own counters from its admin endpoint (`/metrics`, Prometheus text)
//! before and after a phase, so the report can say what the broker saw: stored bytes and
//! batches (average batch size), group-commit rounds, cross-shard messages, fetched bytes.
//!
//! The parser is pure; the scrape is a plain HTTP/1.1 GET with short timeouts. A broker without
//! an admin endpoint just yields no counters.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::units::BYTES_PER_MB;

/// Counters summed over all shards.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct BrokerCounters {
    pub produce_bytes: f64,
    pub produce_batches: f64,
    pub produce_records: f64,
    pub fetch_bytes: f64,
    pub flush_rounds: f64,
    pub flush_bytes: f64,
    pub cross_shard_messages: f64,
}

impl BrokerCounters {
    /// Parses the counters out of a Prometheus text exposition (missing series count as 0).
    pub fn parse(text: &str) -> BrokerCounters {
        BrokerCounters {
            produce_bytes: sum_series(text, "weir_produce_bytes_total"),
            produce_batches: sum_series(text, "weir_produce_batches_total"),
            produce_records: sum_series(text, "weir_produce_records_total"),
            fetch_bytes: sum_series(text, "weir_fetch_bytes_total"),
            flush_rounds: sum_series(text, "weir_flush_rounds_total"),
            flush_bytes: sum_series(text, "weir_flush_bytes_total"),
            cross_shard_messages: sum_series(text, "weir_cross_shard_messages_total"),
        }
    }

    /// The increase from `earlier` to `self`.
    pub fn since(&self, earlier: &BrokerCounters) -> BrokerCounters {
        BrokerCounters {
            produce_bytes: self.produce_bytes - earlier.produce_bytes,
            produce_batches: self.produce_batches - earlier.produce_batches,
            produce_records: self.produce_records - earlier.produce_records,
            fetch_bytes: self.fetch_bytes - earlier.fetch_bytes,
            flush_rounds: self.flush_rounds - earlier.flush_rounds,
            flush_bytes: self.flush_bytes - earlier.flush_bytes,
            cross_shard_messages: self.cross_shard_messages - earlier.cross_shard_messages,
        }
    }

    /// One line for the report, rates over `seconds`.
    pub fn describe(&self, seconds: f64) -> String {
        let per_second = |v: f64| if seconds > 0.0 { v / seconds } else { 0.0 };
        let mut parts = Vec::new();
        if self.produce_batches > 0.0 {
            parts.push(format!(
                "stored {:.1} MB/s in {:.0} batches/s (avg {:.1} KiB, {:.1} records/batch)",
                per_second(self.produce_bytes) / BYTES_PER_MB,
                per_second(self.produce_batches),
                self.produce_bytes / self.produce_batches / 1024.0,
                self.produce_records / self.produce_batches
            ));
        }
        if self.flush_rounds > 0.0 {
            parts.push(format!(
                "{:.0} flush rounds/s (avg {:.1} KiB/round)",
                per_second(self.flush_rounds),
                self.flush_bytes / self.flush_rounds / 1024.0
            ));
        }
        if self.fetch_bytes > 0.0 {
            parts.push(format!(
                "fetched {:.1} MB/s",
                per_second(self.fetch_bytes) / BYTES_PER_MB
            ));
        }
        if self.cross_shard_messages > 0.0 {
            parts.push(format!(
                "{:.0} cross-shard msgs/s",
                per_second(self.cross_shard_messages)
            ));
        }
        if parts.is_empty() {
            "no counter moved".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Sum of every sample of metric `name` (any labels).
pub fn sum_series(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.rsplit_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None; // a longer metric name with this prefix
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// GETs `/metrics` from `admin` and parses the counters.
pub fn scrape(admin: SocketAddr) -> Result<BrokerCounters, String> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&admin, timeout)
        .map_err(|e| format!("admin endpoint {admin}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("admin endpoint {admin}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("admin endpoint {admin}: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("admin endpoint {admin}: malformed HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(format!("admin endpoint {admin}: {status}"));
    }
    Ok(BrokerCounters::parse(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP weir_produce_bytes_total Bytes produced
# TYPE weir_produce_bytes_total counter
weir_produce_bytes_total{shard=\"0\"} 1000
weir_produce_bytes_total{shard=\"1\"} 2000
weir_produce_bytes_total_extra{shard=\"1\"} 99999
weir_produce_batches_total{shard=\"0\"} 3
weir_flush_rounds_total 7
weir_request_latency_seconds{shard=\"0\",api=\"Produce\",quantile=\"0.99\"} 0.002
";

    #[test]
    fn sums_labelled_and_unlabelled_series_only_of_that_name() {
        assert_eq!(sum_series(TEXT, "weir_produce_bytes_total"), 3000.0);
        assert_eq!(sum_series(TEXT, "weir_flush_rounds_total"), 7.0);
        assert_eq!(sum_series(TEXT, "weir_missing_total"), 0.0);
    }

    #[test]
    fn counters_difference_and_description() {
        let before = BrokerCounters::parse(TEXT);
        assert_eq!(before.produce_batches, 3.0);
        let after = BrokerCounters {
            produce_bytes: 3000.0 + 2048.0 * 10.0,
            produce_batches: 13.0,
            produce_records: 20.0,
            flush_rounds: 9.0,
            flush_bytes: 4096.0,
            ..before
        };
        let delta = after.since(&before);
        assert_eq!(delta.produce_batches, 10.0);
        let text = delta.describe(2.0);
        assert!(text.contains("avg 2.0 KiB"), "{text}");
        assert!(text.contains("1 flush rounds/s"), "{text}");
        assert_eq!(BrokerCounters::default().describe(1.0), "no counter moved");
    }

    #[test]
    fn scraping_a_closed_port_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        assert!(scrape(address).is_err());
    }
}
