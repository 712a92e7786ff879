//! Parsing and printing the quantities `weir bench` options and reports use: byte sizes
//! (`1KiB`, `64k`, `2GB`), durations (`30s`, `500ms`, `2m`), rates (`max`, `20MB/s`,
//! `50000rec/s`) and acks (`0`, `1`, `all`).
//!
//! Pure functions, no I/O. Units follow the rest of the bench: 1 MB = 10^6 bytes (decimal, as
//! `fio` and disk vendors print), KiB/MiB/GiB are binary; a bare `k`/`m`/`g` is binary too,
//! because that is what people mean by "a 1k record".

use std::fmt;
use std::time::Duration;

/// Bytes in the MB every MB/s of the bench uses.
pub const BYTES_PER_MB: f64 = 1_000_000.0;
/// Bytes in the GB of "CPU-seconds per GB".
pub const BYTES_PER_GB: f64 = 1_000_000_000.0;

/// Parses a byte size: a number with an optional unit (`B`, `k`/`KiB`, `KB`, `m`/`MiB`, `MB`,
/// `g`/`GiB`, `GB`), case-insensitive, optional space.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let multiplier: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        other => {
            return Err(format!(
                "'{text}': unknown size unit '{other}' (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    let bytes = number * multiplier;
    if bytes.fract() != 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("'{text}' is not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

/// Parses a duration: a number with `ms`, `s` (default), `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let seconds = match unit.to_ascii_lowercase().as_str() {
        "ms" => number / 1e3,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "'{text}': unknown time unit '{other}' (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("'{text}' is not a valid duration"))
}

/// A load rate: as fast as possible, records per second, or payload bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Rate {
    Max,
    RecordsPerSecond(f64),
    BytesPerSecond(f64),
}

impl Rate {
    /// Records per second for records of `record_bytes`; `None` for [`Rate::Max`].
    pub fn records_per_second(self, record_bytes: u64) -> Option<f64> {
        match self {
            Rate::Max => None,
            Rate::RecordsPerSecond(r) => Some(r),
            Rate::BytesPerSecond(b) => Some(b / record_bytes.max(1) as f64),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => write!(f, "max"),
            Rate::RecordsPerSecond(r) => write!(f, "{r} rec/s"),
            Rate::BytesPerSecond(b) => write!(f, "{} MB/s", b / BYTES_PER_MB),
        }
    }
}

/// Parses `max`, `N/s` or `Nrec/s` (records per second), or a size per second (`20MB/s`,
/// `64MiB/s`).
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    let per_second = trimmed
        .strip_suffix("/s")
        .or_else(|| trimmed.strip_suffix("/sec"))
        .ok_or_else(|| {
            format!("'{text}': a rate is 'max', 'N rec/s' or a size per second like '20MB/s'")
        })?
        .trim();
    let lower = per_second.to_ascii_lowercase();
    let rate = if let Some(records) = lower
        .strip_suffix("rec")
        .or_else(|| lower.strip_suffix("records"))
        .or_else(|| lower.strip_suffix("msg"))
    {
        let (number, unit) = split_number(records)?;
        if !unit.is_empty() {
            return Err(format!("'{text}': unexpected '{unit}' in a record rate"));
        }
        Rate::RecordsPerSecond(number)
    } else if lower.chars().last().is_some_and(|c| c.is_ascii_digit()) {
        Rate::RecordsPerSecond(split_number(per_second)?.0)
    } else {
        Rate::BytesPerSecond(parse_bytes(per_second)? as f64)
    };
    match rate {
        Rate::RecordsPerSecond(r) | Rate::BytesPerSecond(r) if !(r > 0.0 && r.is_finite()) => {
            Err(format!("'{text}': a rate must be positive"))
        }
        _ => Ok(rate),
    }
}

/// Producer acknowledgement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Acks {
    None,
    Leader,
    All,
}

impl Acks {
    /// The value of librdkafka's `acks` setting.
    pub fn client_value(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acks={}", self.client_value())
    }
}

pub fn parse_acks(text: &str) -> Result<Acks, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "0" => Ok(Acks::None),
        "1" => Ok(Acks::Leader),
        "all" | "-1" => Ok(Acks::All),
        _ => Err(format!("'{text}': acks is 0, 1 or all (-1)")),
    }
}

/// Parses `NAME=VALUE` (a client or broker setting).
pub fn parse_setting(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}': expected NAME=VALUE"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("'{text}': empty setting name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Splits "12.5 MiB" into (12.5, "MiB").
fn split_number(text: &str) -> Result<(f64, &str), String> {
    let trimmed = text.trim();
    let end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(trimmed.len());
    let digits: String = trimmed[..end].chars().filter(|&c| c != '_').collect();
    let number: f64 = digits
        .parse()
        .map_err(|_| format!("'{text}' does not start with a number"))?;
    if !number.is_finite() || number < 0.0 {
        return Err(format!("'{text}' is not a non-negative number"));
    }
    Ok((number, trimmed[end..].trim()))
}

/// `bytes` over `seconds` in MB/s (0 when no time passed).
pub fn mb_per_second(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / BYTES_PER_MB / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("1KiB").unwrap(), 1024);
        assert_eq!(parse_bytes("1k").unwrap(), 1024);
        assert_eq!(parse_bytes("1 KB").unwrap(), 1000);
        assert_eq!(parse_bytes("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_bytes("2mb").unwrap(), 2_000_000);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("1_000").unwrap(), 1000);
        assert!(parse_bytes("1.5").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("KiB").is_err());
        assert!(parse_bytes("-1").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("3 fortnights").is_err());
    }

    #[test]
    fn rates_parse_as_max_records_or_bytes() {
        assert_eq!(parse_rate("max").unwrap(), Rate::Max);
        assert_eq!(parse_rate("MAX").unwrap(), Rate::Max);
        assert_eq!(
            parse_rate("20MB/s").unwrap(),
            Rate::BytesPerSecond(20_000_000.0)
        );
        assert_eq!(
            parse_rate("1 MiB/s").unwrap(),
            Rate::BytesPerSecond(1_048_576.0)
        );
        assert_eq!(
            parse_rate("50000rec/s").unwrap(),
            Rate::RecordsPerSecond(50_000.0)
        );
        assert_eq!(
            parse_rate("50000 records/s").unwrap(),
            Rate::RecordsPerSecond(50_000.0)
        );
        assert_eq!(parse_rate("500/s").unwrap(), Rate::RecordsPerSecond(500.0));
        assert!(parse_rate("20MB").is_err());
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn rate_converts_bytes_to_records() {
        assert_eq!(Rate::Max.records_per_second(1024), None);
        assert_eq!(
            Rate::BytesPerSecond(20_480.0).records_per_second(1024),
            Some(20.0)
        );
        assert_eq!(
            Rate::RecordsPerSecond(7.0).records_per_second(1024),
            Some(7.0)
        );
    }

    #[test]
    fn acks_accept_kafka_spellings() {
        assert_eq!(parse_acks("0").unwrap(), Acks::None);
        assert_eq!(parse_acks("1").unwrap(), Acks::Leader);
        assert_eq!(parse_acks("all").unwrap(), Acks::All);
        assert_eq!(parse_acks("-1").unwrap(), Acks::All);
        assert!(parse_acks("2").is_err());
        assert_eq!(Acks::All.client_value(), "all");
    }

    #[test]
    fn settings_split_on_the_first_equals() {
        assert_eq!(
            parse_setting("linger.ms=5").unwrap(),
            ("linger.ms".into(), "5".into())
        );
        assert_eq!(parse_setting("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_setting("novalue").is_err());
        assert!(parse_setting("=x").is_err());
    }

    #[test]
    fn mb_per_second_is_decimal_and_safe_at_zero_time() {
        assert_eq!(mb_per_second(2_000_000, 2.0), 1.0);
        assert_eq!(mb_per_second(5, 0.0), 0.0);
    }
}
