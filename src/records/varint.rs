//! Variable-length integers as Kafka's `ByteUtils` encodes them.
//!
//! Record fields use zigzag varints (`i32`, at most 5 bytes) and zigzag
//! varlongs (`i64`, at most 10 bytes); flexible protocol versions use plain
//! unsigned varints. Invariants: readers never look past the slice they are
//! given, never loop more than the maximum encoded width, and reject an
//! encoding whose final byte carries bits that do not fit the target width
//! (Java silently drops them; no correct encoder produces them).

use std::fmt;

/// Longest encoding of a 32-bit varint.
pub const MAX_VARINT_LEN: usize = 5;
/// Longest encoding of a 64-bit varlong.
pub const MAX_VARLONG_LEN: usize = 10;

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The slice ended before the final byte (one without the continuation bit).
    Truncated,
    /// The encoding is longer than the maximum width, or its last byte has
    /// bits beyond the target integer width.
    Overflow,
}

impl fmt::Display for VarintError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarintError::Truncated => formatter.write_str("varint is truncated"),
            VarintError::Overflow => formatter.write_str("varint overflows its integer width"),
        }
    }
}

impl std::error::Error for VarintError {}

/// Reads an unsigned LEB128 value of at most `max_len` bytes and `bits` bits.
/// Returns the raw value and the number of bytes consumed.
#[inline]
fn read_unsigned(input: &[u8], max_len: usize, bits: u32) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for index in 0..max_len {
        let Some(&byte) = input.get(index) else {
            return Err(VarintError::Truncated);
        };
        let shift = 7 * index as u32;
        let payload = u64::from(byte & 0x7f);
        // Bits that would land beyond the target width make the encoding invalid.
        let room = bits - shift;
        if room < 7 && payload >> room != 0 {
            return Err(VarintError::Overflow);
        }
        value |= payload << shift;
        if byte & 0x80 == 0 {
            return Ok((value, index + 1));
        }
    }
    Err(VarintError::Overflow)
}

/// Reads a zigzag-encoded `i32`; returns the value and the bytes consumed.
#[inline]
pub fn read_varint(input: &[u8]) -> Result<(i32, usize), VarintError> {
    let (raw, length) = read_unsigned(input, MAX_VARINT_LEN, 32)?;
    let raw = raw as u32;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), length))
}

/// Reads a zigzag-encoded `i64`; returns the value and the bytes consumed.
#[inline]
pub fn read_varlong(input: &[u8]) -> Result<(i64, usize), VarintError> {
    let (raw, length) = read_unsigned(input, MAX_VARLONG_LEN, 64)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), length))
}

/// Reads an unsigned (non-zigzag) 32-bit varint, as used by compact protocol fields.
#[inline]
pub fn read_unsigned_varint(input: &[u8]) -> Result<(u32, usize), VarintError> {
    let (raw, length) = read_unsigned(input, MAX_VARINT_LEN, 32)?;
    Ok((raw as u32, length))
}

#[inline]
fn write_unsigned(output: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        output.push((value as u8) | 0x80);
        value >>= 7;
    }
    output.push(value as u8);
}

/// Appends `value` as a zigzag varint.
#[inline]
pub fn write_varint(output: &mut Vec<u8>, value: i32) {
    write_unsigned(output, u64::from(zigzag32(value)));
}

/// Appends `value` as a zigzag varlong.
#[inline]
pub fn write_varlong(output: &mut Vec<u8>, value: i64) {
    write_unsigned(output, zigzag64(value));
}

/// Appends `value` as an unsigned varint.
#[inline]
pub fn write_unsigned_varint(output: &mut Vec<u8>, value: u32) {
    write_unsigned(output, u64::from(value));
}

/// Encoded length of `value` as a zigzag varint.
#[inline]
pub fn varint_size(value: i32) -> usize {
    unsigned_size(u64::from(zigzag32(value)))
}

/// Encoded length of `value` as a zigzag varlong.
#[inline]
pub fn varlong_size(value: i64) -> usize {
    unsigned_size(zigzag64(value))
}

/// Encoded length of `value` as an unsigned varint.
#[inline]
pub fn unsigned_varint_size(value: u32) -> usize {
    unsigned_size(u64::from(value))
}

#[inline]
fn unsigned_size(value: u64) -> usize {
    let significant_bits = 64 - (value | 1).leading_zeros() as usize;
    significant_bits.div_ceil(7)
}

#[inline]
fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

#[inline]
fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings_match_kafka() {
        // Values and encodings from the protobuf/Kafka zigzag definition.
        let cases: [(i32, &[u8]); 7] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (value, encoding) in cases {
            let mut output = Vec::new();
            write_varint(&mut output, value);
            assert_eq!(output, encoding, "encoding of {value}");
            assert_eq!(read_varint(encoding), Ok((value, encoding.len())));
            assert_eq!(varint_size(value), encoding.len());
        }
    }

    #[test]
    fn varlong_extremes_use_ten_bytes() {
        for value in [i64::MAX, i64::MIN] {
            let mut output = Vec::new();
            write_varlong(&mut output, value);
            assert_eq!(output.len(), MAX_VARLONG_LEN);
            assert_eq!(read_varlong(&output), Ok((value, MAX_VARLONG_LEN)));
        }
    }

    #[test]
    fn truncation_and_overflow_are_errors() {
        assert_eq!(read_varint(&[]), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[0x80, 0x80]), Err(VarintError::Truncated));
        // Six bytes: continuation bit still set on the fifth.
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(VarintError::Overflow)
        );
        // Fifth byte carries bits beyond 32.
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
            Err(VarintError::Overflow)
        );
        assert_eq!(read_varlong(&[0xff; 11]), Err(VarintError::Overflow));
        let mut ten = [0xffu8; 10];
        ten[9] = 0x02;
        assert_eq!(read_varlong(&ten), Err(VarintError::Overflow));
    }

    #[test]
    fn unsigned_varint_round_trips() {
        for value in [0u32, 1, 127, 128, 16_383, 16_384, u32::MAX] {
            let mut output = Vec::new();
            write_unsigned_varint(&mut output, value);
            assert_eq!(output.len(), unsigned_varint_size(value));
            assert_eq!(read_unsigned_varint(&output), Ok((value, output.len())));
        }
    }

    proptest! {
        #[test]
        fn varint_round_trips(value: i32, trailing in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut output = Vec::new();
            write_varint(&mut output, value);
            prop_assert_eq!(output.len(), varint_size(value));
            let length = output.len();
            output.extend_from_slice(&trailing);
            prop_assert_eq!(read_varint(&output), Ok((value, length)));
        }

        #[test]
        fn varlong_round_trips(value: i64) {
            let mut output = Vec::new();
            write_varlong(&mut output, value);
            prop_assert_eq!(output.len(), varlong_size(value));
            prop_assert_eq!(read_varlong(&output), Ok((value, output.len())));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok((_, length)) = read_varint(&bytes) {
                prop_assert!(length <= MAX_VARINT_LEN && length <= bytes.len());
            }
            if let Ok((_, length)) = read_varlong(&bytes) {
                prop_assert!(length <= MAX_VARLONG_LEN && length <= bytes.len());
            }
        }
    }
}
