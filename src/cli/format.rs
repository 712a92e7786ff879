//! The `consume --format` template, kcat style: `%` specifiers for record fields, backslash
//! escapes, everything else literal. Each record is printed as the template followed by a
//! newline. Keys, values and header values are written as raw bytes (no re-encoding); a null is
//! written as the `--null` marker (empty by default), which is what tells null from empty.
//!
//! | spec | prints | | spec | prints |
//! |---|---|---|---|---|
//! | `%t` | topic | | `%k` | key |
//! | `%p` | partition | | `%K` | key length (-1 for null) |
//! | `%o` | offset | | `%v`, `%s` | value |
//! | `%T` | timestamp (ms) | | `%S` | value length (-1 for null) |
//! | `%h` | headers as `k=v,k2=v2` | | `%%` | `%` |
//!
//! Escapes: `\n`, `\t`, `\r`, `\0`, `\\`.

use std::io::{self, Write};

use crate::client::ConsumedRecord;

/// The specifiers, for error messages and help.
pub const SPECIFIERS: &str = "%t %p %o %T %k %K %v %s %S %h %%";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    KeyLength,
    Value,
    ValueLength,
    Headers,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    tokens: Vec<Token>,
    null: Vec<u8>,
}

impl Format {
    /// Parses `template`; `null` is what a null key, value or header value prints as.
    pub fn parse(template: &str, null: &str) -> Result<Format, String> {
        let mut tokens = Vec::new();
        let mut literal = Vec::new();
        let mut characters = template.chars();
        while let Some(character) = characters.next() {
            match character {
                '%' => {
                    let token = match characters.next() {
                        Some('%') => {
                            literal.push(b'%');
                            continue;
                        }
                        Some('t') => Token::Topic,
                        Some('p') => Token::Partition,
                        Some('o') => Token::Offset,
                        Some('T') => Token::Timestamp,
                        Some('k') => Token::Key,
                        Some('K') => Token::KeyLength,
                        Some('v' | 's') => Token::Value,
                        Some('S') => Token::ValueLength,
                        Some('h') => Token::Headers,
                        Some(other) => {
                            return Err(format!(
                                "unknown format specifier %{other}; known: {SPECIFIERS}"
                            ))
                        }
                        None => {
                            return Err(format!(
                                "the format ends with a lone %; use %% for a percent sign \
                                 (known: {SPECIFIERS})"
                            ))
                        }
                    };
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal)));
                    }
                    tokens.push(token);
                }
                '\\' => {
                    let escaped = match characters.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('0') => '\0',
                        Some('\\') => '\\',
                        Some(other) => {
                            return Err(format!(
                                "unknown escape \\{other}; use \\n, \\t, \\r, \\0 or \\\\"
                            ))
                        }
                        None => return Err("the format ends with a lone \\".into()),
                    };
                    push_char(&mut literal, escaped);
                }
                other => push_char(&mut literal, other),
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(Format {
            tokens,
            null: null.as_bytes().to_vec(),
        })
    }

    /// Writes `record` of `topic`, then a newline.
    pub fn write(
        &self,
        out: &mut impl Write,
        topic: &str,
        record: &ConsumedRecord,
    ) -> io::Result<()> {
        for token in &self.tokens {
            match token {
                Token::Literal(bytes) => out.write_all(bytes)?,
                Token::Topic => out.write_all(topic.as_bytes())?,
                Token::Partition => write!(out, "{}", record.partition)?,
                Token::Offset => write!(out, "{}", record.offset)?,
                Token::Timestamp => write!(out, "{}", record.timestamp)?,
                Token::Key => self.write_nullable(out, record.key.as_deref())?,
                Token::KeyLength => write!(out, "{}", length(record.key.as_deref()))?,
                Token::Value => self.write_nullable(out, record.value.as_deref())?,
                Token::ValueLength => write!(out, "{}", length(record.value.as_deref()))?,
                Token::Headers => {
                    for (index, header) in record.headers.iter().enumerate() {
                        if index > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(header.key.as_bytes())?;
                        out.write_all(b"=")?;
                        self.write_nullable(out, header.value.as_deref())?;
                    }
                }
            }
        }
        out.write_all(b"\n")
    }

    fn write_nullable(&self, out: &mut impl Write, bytes: Option<&[u8]>) -> io::Result<()> {
        out.write_all(bytes.unwrap_or(&self.null))
    }
}

fn push_char(buffer: &mut Vec<u8>, character: char) {
    let mut utf8 = [0u8; 4];
    buffer.extend_from_slice(character.encode_utf8(&mut utf8).as_bytes());
}

fn length(bytes: Option<&[u8]>) -> i64 {
    bytes.map_or(-1, |b| i64::try_from(b.len()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::batch::TimestampType;
    use crate::records::record::Header;
    use bytes::Bytes;

    fn record() -> ConsumedRecord {
        ConsumedRecord {
            partition: 2,
            offset: 41,
            timestamp: 1_700_000_000_123,
            timestamp_type: TimestampType::CreateTime,
            key: Some(Bytes::from_static(b"user-1")),
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![
                Header {
                    key: "trace".into(),
                    value: Some(Bytes::from_static(b"t1")),
                },
                Header {
                    key: "none".into(),
                    value: None,
                },
            ],
        }
    }

    fn render(template: &str, null: &str, record: &ConsumedRecord) -> String {
        let format = Format::parse(template, null).unwrap();
        let mut out = Vec::new();
        format.write(&mut out, "orders", record).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_specifier_prints_its_field() {
        assert_eq!(
            render("%t/%p@%o %T %k(%K)=%v(%S) [%h] 100%%", "", &record()),
            "orders/2@41 1700000000123 user-1(6)=hello(5) [trace=t1,none=] 100%\n"
        );
        assert_eq!(render("%s", "", &record()), "hello\n");
    }

    #[test]
    fn nulls_print_the_marker_and_empties_print_nothing() {
        let mut nulls = record();
        nulls.key = None;
        nulls.value = Some(Bytes::new());
        assert_eq!(
            render("%k|%v|%K|%S|%h", "NULL", &nulls),
            "NULL||-1|0|trace=t1,none=NULL\n"
        );
        nulls.value = None;
        assert_eq!(render("[%v]", "", &nulls), "[]\n");
    }

    #[test]
    fn escapes_and_literals_pass_through() {
        assert_eq!(render("a\\tb\\\\c%v\\n", "", &record()), "a\tb\\chello\n\n");
        assert_eq!(render("é %v", "", &record()), "é hello\n");
        assert_eq!(render("", "", &record()), "\n");
    }

    #[test]
    fn unknown_specifiers_and_dangling_characters_are_errors() {
        let error = Format::parse("%x", "").unwrap_err();
        assert!(
            error.contains("%x") && error.contains(SPECIFIERS),
            "{error}"
        );
        assert!(Format::parse("50%", "").is_err());
        assert!(Format::parse("\\q", "").is_err());
        assert!(Format::parse("end\\", "").is_err());
    }

    #[test]
    fn binary_values_are_written_unchanged() {
        let mut binary = record();
        binary.value = Some(Bytes::from_static(&[0, 0xff, b'\n', 0x80]));
        let format = Format::parse("%v", "").unwrap();
        let mut out = Vec::new();
        format.write(&mut out, "t", &binary).unwrap();
        assert_eq!(out, vec![0, 0xff, b'\n', 0x80, b'\n']);
    }
}
