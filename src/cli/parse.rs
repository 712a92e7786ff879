//! Parsing of argument values the tools share, as clap value parsers: `NAME=VALUE` pairs,
//! record headers, codecs, and `consume --from` start positions. Pure; errors say what form
//! was expected.

use std::fmt;
use std::str::FromStr;

use crate::records::Compression;

/// `NAME=VALUE`; the value may be empty and may itself contain `=`.
pub fn config_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected NAME=VALUE, got '{text}'")),
    }
}

/// A config name on its own (`--delete NAME`).
pub fn config_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    if name.is_empty() || name.contains('=') {
        return Err(format!("expected a config NAME, got '{text}'"));
    }
    Ok(name.to_string())
}

/// A record header: `KEY=VALUE`, or `KEY` alone for a null value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderArg {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

pub fn header(text: &str) -> Result<HeaderArg, String> {
    let (key, value) = match text.split_once('=') {
        Some((key, value)) => (key, Some(value.as_bytes().to_vec())),
        None => (text, None),
    };
    if key.is_empty() {
        return Err(format!(
            "expected KEY=VALUE (or KEY for a null value), got '{text}'"
        ));
    }
    Ok(HeaderArg {
        key: key.to_string(),
        value,
    })
}

/// A codec name: none, gzip, snappy, lz4 or zstd.
pub fn compression(text: &str) -> Result<Compression, String> {
    Compression::from_name(text)
        .ok_or_else(|| format!("unknown compression '{text}': use none, gzip, snappy, lz4 or zstd"))
}

/// Where `consume` starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The log start offset.
    Beginning,
    /// The high watermark: only records produced from now on.
    End,
    /// This offset.
    Offset(i64),
    /// This many records before the high watermark (never before the log start).
    BeforeEnd(i64),
    /// The first record with a timestamp at or after this many ms since the epoch.
    Timestamp(i64),
}

impl FromStr for StartAt {
    type Err = String;

    fn from_str(text: &str) -> Result<StartAt, String> {
        let expected = || {
            format!(
                "expected beginning, end, an OFFSET, -N (N records before the end) or \
                 @TIMESTAMP_MS, got '{text}'"
            )
        };
        let trimmed = text.trim();
        match trimmed.to_ascii_lowercase().as_str() {
            "beginning" | "earliest" | "start" => return Ok(StartAt::Beginning),
            "end" | "latest" => return Ok(StartAt::End),
            _ => {}
        }
        if let Some(timestamp) = trimmed.strip_prefix('@') {
            return timestamp
                .parse::<i64>()
                .ok()
                .filter(|ms| *ms >= 0)
                .map(StartAt::Timestamp)
                .ok_or_else(expected);
        }
        if let Some(count) = trimmed.strip_prefix('-') {
            return count
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(StartAt::BeforeEnd)
                .ok_or_else(expected);
        }
        trimmed
            .parse::<i64>()
            .ok()
            .filter(|offset| *offset >= 0)
            .map(StartAt::Offset)
            .ok_or_else(expected)
    }
}

impl fmt::Display for StartAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartAt::Beginning => f.write_str("beginning"),
            StartAt::End => f.write_str("end"),
            StartAt::Offset(offset) => write!(f, "{offset}"),
            StartAt::BeforeEnd(count) => write!(f, "-{count}"),
            StartAt::Timestamp(ms) => write!(f, "@{ms}"),
        }
    }
}

/// The offset to start at, given the partition's log start and high watermark (and, for
/// `Timestamp`, what ListOffsets found: -1 when no record is that recent, so start at the end).
/// `Err` for an absolute offset outside the log.
pub fn start_offset(
    start: StartAt,
    log_start: i64,
    high_watermark: i64,
    by_timestamp: Option<i64>,
) -> Result<i64, String> {
    match start {
        StartAt::Beginning => Ok(log_start),
        StartAt::End => Ok(high_watermark),
        StartAt::BeforeEnd(count) => Ok(high_watermark.saturating_sub(count).max(log_start)),
        StartAt::Timestamp(_) => Ok(match by_timestamp {
            Some(offset) if offset >= 0 => offset,
            _ => high_watermark,
        }),
        StartAt::Offset(offset) if (log_start..=high_watermark).contains(&offset) => Ok(offset),
        StartAt::Offset(offset) => Err(format!(
            "offset {offset} is outside the partition's offsets {log_start}-{high_watermark}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pairs_split_at_the_first_equals_sign() {
        assert_eq!(
            config_pair("retention.ms=1000"),
            Ok(("retention.ms".into(), "1000".into()))
        );
        assert_eq!(config_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(config_pair("a="), Ok(("a".into(), String::new())));
        assert!(config_pair("retention.ms").is_err());
        assert!(config_pair("=1").is_err());
        assert_eq!(config_name(" retention.ms "), Ok("retention.ms".into()));
        assert!(config_name("a=b").is_err());
    }

    #[test]
    fn headers_without_a_value_are_null() {
        assert_eq!(
            header("trace=abc"),
            Ok(HeaderArg {
                key: "trace".into(),
                value: Some(b"abc".to_vec())
            })
        );
        assert_eq!(
            header("empty="),
            Ok(HeaderArg {
                key: "empty".into(),
                value: Some(Vec::new())
            })
        );
        assert_eq!(
            header("nothing"),
            Ok(HeaderArg {
                key: "nothing".into(),
                value: None
            })
        );
        assert!(header("=v").is_err());
    }

    #[test]
    fn codecs_have_kafka_names() {
        assert_eq!(compression("zstd"), Ok(Compression::Zstd));
        assert_eq!(compression("NONE"), Ok(Compression::None));
        assert!(compression("brotli")
            .unwrap_err()
            .contains("use none, gzip"));
    }

    #[test]
    fn start_positions_parse_every_form() {
        assert_eq!("beginning".parse(), Ok(StartAt::Beginning));
        assert_eq!("earliest".parse(), Ok(StartAt::Beginning));
        assert_eq!("END".parse(), Ok(StartAt::End));
        assert_eq!("42".parse(), Ok(StartAt::Offset(42)));
        assert_eq!("-10".parse(), Ok(StartAt::BeforeEnd(10)));
        assert_eq!(
            "@1700000000000".parse(),
            Ok(StartAt::Timestamp(1_700_000_000_000))
        );
        for bad in ["", "soon", "@", "@-5", "--1", "1.5"] {
            assert!(bad.parse::<StartAt>().is_err(), "{bad}");
        }
        assert_eq!(StartAt::BeforeEnd(3).to_string(), "-3");
    }

    #[test]
    fn start_offsets_stay_inside_the_log() {
        assert_eq!(start_offset(StartAt::Beginning, 5, 20, None), Ok(5));
        assert_eq!(start_offset(StartAt::End, 5, 20, None), Ok(20));
        assert_eq!(start_offset(StartAt::BeforeEnd(3), 5, 20, None), Ok(17));
        assert_eq!(start_offset(StartAt::BeforeEnd(100), 5, 20, None), Ok(5));
        assert_eq!(start_offset(StartAt::Offset(20), 5, 20, None), Ok(20));
        assert_eq!(start_offset(StartAt::Timestamp(9), 5, 20, Some(12)), Ok(12));
        assert_eq!(start_offset(StartAt::Timestamp(9), 5, 20, Some(-1)), Ok(20));
        let error = start_offset(StartAt::Offset(21), 5, 20, None).unwrap_err();
        assert_eq!(error, "offset 21 is outside the partition's offsets 5-20");
        assert!(start_offset(StartAt::Offset(4), 5, 20, None).is_err());
    }
}
