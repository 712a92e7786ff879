//! Wire runtime for the generated Kafka codec: primitive readers and writers, the
//! `Message` trait every generated type implements, and the chunked `Encoder`.
//!
//! Invariants (this is the code that faces untrusted bytes):
//! - every read checks the bytes remaining first and returns `DecodeError`, never panics;
//! - a length or count taken from the wire is rejected when negative (unless the field is
//!   nullable there and the value means null) or larger than the bytes remaining, so no
//!   input can make a reader allocate more than the input's own size: `Vec::with_capacity`
//!   reserves at most `remaining bytes / size_of::<T>()` elements;
//! - `bytes`, `records` and unknown tagged fields are `split_to` slices of the input
//!   (zero copy); strings are validated UTF-8 and copied into `String`;
//! - recursion depth is bounded by the schema: generated readers only call the readers of
//!   their own nested struct types, and no Kafka struct contains itself.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Byte slices shorter than this are copied into the encoder's buffer; longer ones are
/// appended as their own chunk so cached record batches go to the socket without memcpy.
pub const ZERO_COPY_THRESHOLD_BYTES: usize = 4096;

/// Longest string Kafka accepts: lengths are int16 on the classic wire, and the flexible
/// wire keeps the same limit.
pub const STRING_LENGTH_MAX: usize = i16::MAX as usize;

/// A Kafka message: a request, response, header or record body generated from a schema.
pub trait Message: Sized + Default + Clone + fmt::Debug + PartialEq {
    /// `validVersions` of the schema, inclusive.
    const VERSIONS: (i16, i16);
    /// First flexible (compact, tagged) version, `None` if the message is never flexible.
    const FLEXIBLE_MIN: Option<i16>;
    /// Decodes one message at `version`, consuming exactly its bytes from the front of `buf`.
    fn decode(buf: &mut Bytes, version: i16) -> Result<Self, DecodeError>;
    /// Encodes the message at `version` (fields absent there are skipped or rejected).
    fn encode(&self, out: &mut Encoder, version: i16) -> Result<(), EncodeError>;
}

/// The version-aware reader and writer every generated struct has, nested ones included.
/// Messages reach it through `Message`, which checks the version range first.
pub trait WireStruct: Sized {
    /// Schema name of the struct, used in error messages.
    const NAME: &'static str;
    fn read(buf: &mut Bytes, version: i16) -> Result<Self, DecodeError>;
    fn write(&self, out: &mut Encoder, version: i16) -> Result<(), EncodeError>;
}

/// Checks `version` against the message's range, then reads it.
pub fn decode_message<M: Message + WireStruct>(
    buf: &mut Bytes,
    version: i16,
) -> Result<M, DecodeError> {
    let (min, max) = M::VERSIONS;
    if version < min || version > max {
        return Err(DecodeError::UnsupportedVersion {
            message: M::NAME,
            version,
            min,
            max,
        });
    }
    M::read(buf, version)
}

/// Checks `version` against the message's range, then writes it.
pub fn encode_message<M: Message + WireStruct>(
    message: &M,
    out: &mut Encoder,
    version: i16,
) -> Result<(), EncodeError> {
    let (min, max) = M::VERSIONS;
    if version < min || version > max {
        return Err(EncodeError::UnsupportedVersion {
            message: M::NAME,
            version,
            min,
            max,
        });
    }
    message.write(out, version)
}

/// Encodes `message` into one contiguous buffer (tests, clients, small control messages).
pub fn encode_to_bytes<M: Message>(message: &M, version: i16) -> Result<Bytes, EncodeError> {
    let mut out = Encoder::new();
    message.encode(&mut out, version)?;
    Ok(out.into_single())
}

/// Why bytes could not be decoded. Every variant names what was being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended while reading `what`.
    Truncated {
        what: &'static str,
        needed: usize,
        remaining: usize,
    },
    /// An unsigned varint longer than 5 bytes (or 10 for a varlong), or overflowing.
    VarintTooLong,
    /// A length or count below -1, or -1 where -1 is not allowed.
    NegativeLength { what: &'static str, length: i64 },
    /// A length or count larger than the bytes that remain.
    LengthExceedsRemaining {
        what: &'static str,
        length: u64,
        remaining: usize,
    },
    /// A string longer than 32767 bytes.
    StringTooLong { length: usize },
    /// A null where the schema does not allow one at this version.
    UnexpectedNull { what: &'static str },
    /// A string that is not valid UTF-8.
    InvalidUtf8,
    /// A known tagged field whose declared size differs from what its value used.
    TaggedFieldSizeMismatch { tag: u32, trailing: usize },
    /// `version` is outside the message's `validVersions`.
    UnsupportedVersion {
        message: &'static str,
        version: i16,
        min: i16,
        max: i16,
    },
    /// A request header named an api key this broker has no schema for; the correlation
    /// id is kept so the server can still answer or log against it.
    UnknownApiKey {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated {
                what,
                needed,
                remaining,
            } => {
                write!(
                    f,
                    "truncated {what}: needs {needed} bytes, {remaining} remain"
                )
            }
            Self::VarintTooLong => write!(f, "varint is longer than its type allows"),
            Self::NegativeLength { what, length } => {
                write!(f, "{what} has invalid negative length {length}")
            }
            Self::LengthExceedsRemaining {
                what,
                length,
                remaining,
            } => {
                write!(
                    f,
                    "{what} length {length} exceeds the {remaining} bytes remaining"
                )
            }
            Self::StringTooLong { length } => {
                write!(f, "string length {length} exceeds {STRING_LENGTH_MAX}")
            }
            Self::UnexpectedNull { what } => write!(f, "{what} is null where it is not nullable"),
            Self::InvalidUtf8 => write!(f, "string is not valid UTF-8"),
            Self::TaggedFieldSizeMismatch { tag, trailing } => {
                write!(
                    f,
                    "tagged field {tag} left {trailing} unread bytes of its declared size"
                )
            }
            Self::UnsupportedVersion {
                message,
                version,
                min,
                max,
            } => {
                write!(
                    f,
                    "{message} version {version} is outside the supported {min}..={max}"
                )
            }
            Self::UnknownApiKey {
                api_key,
                api_version,
                correlation_id,
            } => write!(
                f,
                "unknown api key {api_key} (version {api_version}, correlation id {correlation_id})"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a value could not be encoded at the requested version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// `version` is outside the message's `validVersions`.
    UnsupportedVersion {
        message: &'static str,
        version: i16,
        min: i16,
        max: i16,
    },
    /// A non-ignorable field absent at `version` holds a non-default value (Kafka's
    /// UnsupportedVersionException: sending would silently drop information).
    NonDefaultAbsentField { field: &'static str, version: i16 },
    /// A field holds `None` at a version where it is not nullable.
    NullNotAllowed { field: &'static str, version: i16 },
    /// A string longer than 32767 bytes.
    StringTooLong { field: &'static str, length: usize },
    /// A bytes field or array with more than `i32::MAX` entries.
    LengthTooLarge { field: &'static str, length: usize },
    /// Unknown tagged fields set on a struct encoded at a non-flexible version.
    TaggedFieldsUnsupported { message: &'static str, version: i16 },
    /// A length prefix that would exceed `i32::MAX`, or that belongs to another encoder.
    InvalidLengthPrefix { length: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVersion {
                message,
                version,
                min,
                max,
            } => {
                write!(
                    f,
                    "{message} version {version} is outside the supported {min}..={max}"
                )
            }
            Self::NonDefaultAbsentField { field, version } => write!(
                f,
                "{field} has a non-default value but does not exist at version {version}"
            ),
            Self::NullNotAllowed { field, version } => {
                write!(
                    f,
                    "{field} is None but is not nullable at version {version}"
                )
            }
            Self::StringTooLong { field, length } => {
                write!(
                    f,
                    "{field} is {length} bytes, longer than {STRING_LENGTH_MAX}"
                )
            }
            Self::LengthTooLarge { field, length } => {
                write!(f, "{field} has {length} entries, more than i32::MAX")
            }
            Self::TaggedFieldsUnsupported { message, version } => write!(
                f,
                "{message} has unknown tagged fields but version {version} is not flexible"
            ),
            Self::InvalidLengthPrefix { length } => {
                write!(f, "length prefix cannot hold {length} bytes")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Kafka's 128-bit UUID (topic ids, directory ids), kept as its 16 big-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID Kafka uses for "no id".
    pub const ZERO: Uuid = Uuid([0; 16]);

    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// Parses Kafka's text form: URL-safe base64 without padding (22 characters).
    pub fn from_base64(text: &str) -> Option<Uuid> {
        let characters = text.as_bytes();
        let (&last, leading) = characters.split_last()?;
        if leading.len() != 21 {
            return None;
        }
        // 21 characters carry the first 126 bits; the last one 2 bits and 4 zero bits.
        let mut bits: u128 = 0;
        for &character in leading {
            bits = (bits << 6) | u128::from(base64_value(character)?);
        }
        let last = base64_value(last)?;
        if last & 0x0f != 0 {
            return None;
        }
        Some(Uuid(((bits << 2) | u128::from(last >> 4)).to_be_bytes()))
    }
}

const BASE64_URL_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64_value(character: u8) -> Option<u8> {
    BASE64_URL_ALPHABET
        .iter()
        .position(|&candidate| candidate == character)
        .and_then(|index| u8::try_from(index).ok())
}

/// Kafka's text form: URL-safe base64 without padding, as `Uuid.toString()` prints it.
impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = u128::from_be_bytes(self.0);
        let mut text = [0u8; 22];
        for (index, slot) in (0u32..).zip(text.iter_mut()) {
            // Sextet `index` covers bits 6*index.. counted from the top of the 128 bits,
            // followed by zero padding after bit 128.
            let start = 6 * index;
            let sextet = if start + 6 <= 128 {
                bits >> (122 - start)
            } else {
                bits << (start + 6 - 128)
            };
            *slot = BASE64_URL_ALPHABET[(sextet & 0x3f) as usize];
        }
        // The alphabet is ASCII, so this cannot fail; fall back to an error to stay total.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// A tagged field the schema does not know at the decoded version: kept as raw bytes so
/// that re-encoding the struct emits it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTaggedField {
    pub tag: u32,
    pub data: Bytes,
}

fn ensure_remaining(buf: &Bytes, needed: usize, what: &'static str) -> Result<(), DecodeError> {
    if buf.remaining() < needed {
        return Err(DecodeError::Truncated {
            what,
            needed,
            remaining: buf.remaining(),
        });
    }
    Ok(())
}

/// A fixed-size value with the same encoding in every version.
pub trait Primitive: Copy {
    fn read_from(buf: &mut Bytes) -> Result<Self, DecodeError>;
    fn write_to(self, out: &mut Encoder);
    /// Array element writer, so `write_array` takes primitives and structs alike.
    fn write_element(out: &mut Encoder, value: &Self) -> Result<(), EncodeError> {
        value.write_to(out);
        Ok(())
    }
}

macro_rules! fixed_width_primitive {
    ($type:ty, $what:literal, $get:ident, $put:ident) => {
        impl Primitive for $type {
            fn read_from(buf: &mut Bytes) -> Result<Self, DecodeError> {
                ensure_remaining(buf, std::mem::size_of::<$type>(), $what)?;
                Ok(buf.$get())
            }
            fn write_to(self, out: &mut Encoder) {
                out.buffer.$put(self);
            }
        }
    };
}

fixed_width_primitive!(i8, "int8", get_i8, put_i8);
fixed_width_primitive!(i16, "int16", get_i16, put_i16);
fixed_width_primitive!(u16, "uint16", get_u16, put_u16);
fixed_width_primitive!(i32, "int32", get_i32, put_i32);
fixed_width_primitive!(u32, "uint32", get_u32, put_u32);
fixed_width_primitive!(i64, "int64", get_i64, put_i64);
fixed_width_primitive!(f64, "float64", get_f64, put_f64);

impl Primitive for bool {
    /// Any non-zero byte is true, as in Kafka.
    fn read_from(buf: &mut Bytes) -> Result<Self, DecodeError> {
        ensure_remaining(buf, 1, "bool")?;
        Ok(buf.get_u8() != 0)
    }
    fn write_to(self, out: &mut Encoder) {
        out.buffer.put_u8(u8::from(self));
    }
}

impl Primitive for Uuid {
    fn read_from(buf: &mut Bytes) -> Result<Self, DecodeError> {
        ensure_remaining(buf, 16, "uuid")?;
        let mut bytes = [0u8; 16];
        buf.copy_to_slice(&mut bytes);
        Ok(Uuid(bytes))
    }
    fn write_to(self, out: &mut Encoder) {
        out.buffer.put_slice(&self.0);
    }
}

fn read_u8(buf: &mut Bytes, what: &'static str) -> Result<u8, DecodeError> {
    ensure_remaining(buf, 1, what)?;
    Ok(buf.get_u8())
}

/// Unsigned LEB128 varint of at most 5 bytes; bits beyond 32 are an error, not dropped.
pub fn read_uvarint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    let mut value: u32 = 0;
    for index in 0..5 {
        let byte = read_u8(buf, "varint")?;
        if index == 4 && byte > 0x0f {
            return Err(DecodeError::VarintTooLong);
        }
        value |= u32::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::VarintTooLong)
}

/// Unsigned LEB128 varlong of at most 10 bytes.
pub fn read_uvarlong(buf: &mut Bytes) -> Result<u64, DecodeError> {
    let mut value: u64 = 0;
    for index in 0..10 {
        let byte = read_u8(buf, "varlong")?;
        if index == 9 && byte > 0x01 {
            return Err(DecodeError::VarintTooLong);
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::VarintTooLong)
}

/// Zigzag-encoded signed varint (record headers, RecordBatch fields).
pub fn read_varint(buf: &mut Bytes) -> Result<i32, DecodeError> {
    let raw = read_uvarint(buf)?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Zigzag-encoded signed varlong.
pub fn read_varlong(buf: &mut Bytes) -> Result<i64, DecodeError> {
    let raw = read_uvarlong(buf)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Width of a classic (non-compact) length prefix.
#[derive(Clone, Copy)]
enum LengthWidth {
    Int16,
    Int32,
}

/// Reads a length or count: compact is `N + 1` as an unsigned varint (0 = null), classic
/// is int16/int32 (-1 = null). Returns `None` for null. Does not yet check `remaining`.
fn read_length(
    buf: &mut Bytes,
    compact: bool,
    width: LengthWidth,
    what: &'static str,
) -> Result<Option<u64>, DecodeError> {
    let classic = if compact {
        return Ok(read_uvarint(buf)?.checked_sub(1).map(u64::from));
    } else {
        match width {
            LengthWidth::Int16 => i64::from(i16::read_from(buf)?),
            LengthWidth::Int32 => i64::from(i32::read_from(buf)?),
        }
    };
    match classic {
        -1 => Ok(None),
        length if length < 0 => Err(DecodeError::NegativeLength { what, length }),
        length => Ok(Some(length.unsigned_abs())),
    }
}

/// Converts a wire length to `usize` after checking it against the bytes remaining.
fn within_remaining(buf: &Bytes, length: u64, what: &'static str) -> Result<usize, DecodeError> {
    match usize::try_from(length) {
        Ok(fits) if fits <= buf.remaining() => Ok(fits),
        _ => Err(DecodeError::LengthExceedsRemaining {
            what,
            length,
            remaining: buf.remaining(),
        }),
    }
}

fn require_present<T>(
    value: Option<T>,
    nullable: bool,
    what: &'static str,
) -> Result<Option<T>, DecodeError> {
    if value.is_none() && !nullable {
        return Err(DecodeError::UnexpectedNull { what });
    }
    Ok(value)
}

fn take_bytes(buf: &mut Bytes, length: u64, what: &'static str) -> Result<Bytes, DecodeError> {
    let length = within_remaining(buf, length, what)?;
    Ok(buf.split_to(length))
}

fn take_string(buf: &mut Bytes, length: u64) -> Result<String, DecodeError> {
    let length = within_remaining(buf, length, "string")?;
    if length > STRING_LENGTH_MAX {
        return Err(DecodeError::StringTooLong { length });
    }
    let text = std::str::from_utf8(&buf[..length]).map_err(|_| DecodeError::InvalidUtf8)?;
    let owned = text.to_owned();
    buf.advance(length);
    Ok(owned)
}

/// A string that must not be null at this version.
pub fn read_string(buf: &mut Bytes, compact: bool) -> Result<String, DecodeError> {
    match read_length(buf, compact, LengthWidth::Int16, "string")? {
        Some(length) => take_string(buf, length),
        None => Err(DecodeError::UnexpectedNull { what: "string" }),
    }
}

/// A string field typed `Option<String>`; null is accepted only when `nullable`.
pub fn read_opt_string(
    buf: &mut Bytes,
    compact: bool,
    nullable: bool,
) -> Result<Option<String>, DecodeError> {
    let length = read_length(buf, compact, LengthWidth::Int16, "string")?;
    match require_present(length, nullable, "string")? {
        Some(length) => take_string(buf, length).map(Some),
        None => Ok(None),
    }
}

/// A bytes field that must not be null at this version; zero copy.
pub fn read_bytes(buf: &mut Bytes, compact: bool) -> Result<Bytes, DecodeError> {
    match read_length(buf, compact, LengthWidth::Int32, "bytes")? {
        Some(length) => take_bytes(buf, length, "bytes"),
        None => Err(DecodeError::UnexpectedNull { what: "bytes" }),
    }
}

/// A bytes or records field typed `Option<Bytes>`; zero copy.
pub fn read_opt_bytes(
    buf: &mut Bytes,
    compact: bool,
    nullable: bool,
) -> Result<Option<Bytes>, DecodeError> {
    let length = read_length(buf, compact, LengthWidth::Int32, "bytes")?;
    match require_present(length, nullable, "bytes")? {
        Some(length) => take_bytes(buf, length, "bytes").map(Some),
        None => Ok(None),
    }
}

/// Elements to reserve up front for `count` claimed elements: never more memory than the
/// bytes left in the input. Further growth is paid for by elements actually decoded.
fn preallocated_elements<T>(count: usize, remaining_bytes: usize) -> usize {
    count.min(remaining_bytes / std::mem::size_of::<T>().max(1))
}

fn read_elements<T>(
    buf: &mut Bytes,
    count: u64,
    mut read_element: impl FnMut(&mut Bytes) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    // Kafka's rule: a count larger than the bytes left is malformed, whatever the element.
    let count = within_remaining(buf, count, "array")?;
    let mut elements = Vec::with_capacity(preallocated_elements::<T>(count, buf.remaining()));
    for _ in 0..count {
        elements.push(read_element(buf)?);
    }
    Ok(elements)
}

/// An array that must not be null at this version.
pub fn read_array<T>(
    buf: &mut Bytes,
    compact: bool,
    read_element: impl FnMut(&mut Bytes) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    match read_length(buf, compact, LengthWidth::Int32, "array")? {
        Some(count) => read_elements(buf, count, read_element),
        None => Err(DecodeError::UnexpectedNull { what: "array" }),
    }
}

/// An array field typed `Option<Vec<T>>`; null is accepted only when `nullable`.
pub fn read_opt_array<T>(
    buf: &mut Bytes,
    compact: bool,
    nullable: bool,
    read_element: impl FnMut(&mut Bytes) -> Result<T, DecodeError>,
) -> Result<Option<Vec<T>>, DecodeError> {
    let count = read_length(buf, compact, LengthWidth::Int32, "array")?;
    match require_present(count, nullable, "array")? {
        Some(count) => read_elements(buf, count, read_element).map(Some),
        None => Ok(None),
    }
}

/// A struct field typed `Option<T>`: when nullable, an int8 marker (-1 null, 1 present).
pub fn read_opt_struct<T>(
    buf: &mut Bytes,
    nullable: bool,
    read: impl FnOnce(&mut Bytes) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if nullable && i8::read_from(buf)? < 0 {
        return Ok(None);
    }
    read(buf).map(Some)
}

/// A nullable struct inside a tagged field: an unsigned varint marker (0 null, 1 present).
pub fn read_tagged_opt_struct<T>(
    buf: &mut Bytes,
    read: impl FnOnce(&mut Bytes) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if read_uvarint(buf)? == 0 {
        return Ok(None);
    }
    read(buf).map(Some)
}

/// Reads a tagged-field section. `known(tag, data)` decodes a tag the schema knows at
/// this version from exactly its `data` and returns true, or returns false to keep the
/// field raw. A known field must consume all of its declared size.
pub fn read_tagged_fields(
    buf: &mut Bytes,
    mut known: impl FnMut(u32, &mut Bytes) -> Result<bool, DecodeError>,
) -> Result<Vec<RawTaggedField>, DecodeError> {
    let count = read_uvarint(buf)?;
    let mut unknown = Vec::new();
    // Each field takes at least two bytes, so the loop ends with the input.
    for _ in 0..count {
        let tag = read_uvarint(buf)?;
        let size = read_uvarint(buf)?;
        let mut data = take_bytes(buf, u64::from(size), "tagged field")?;
        if known(tag, &mut data)? {
            if !data.is_empty() {
                return Err(DecodeError::TaggedFieldSizeMismatch {
                    tag,
                    trailing: data.len(),
                });
            }
        } else {
            unknown.push(RawTaggedField { tag, data });
        }
    }
    // Kept in the ascending order the encoder writes, so decode → encode → decode is stable
    // even for a sender that listed tags out of order.
    unknown.sort_by_key(|field| field.tag);
    Ok(unknown)
}

/// Chunked output buffer. Small writes go into one `BytesMut`; `put_records` with a
/// large slice seals it and appends the slice as its own chunk. `finish` yields the
/// chunks in order, ready for a vectored write.
#[derive(Debug, Default)]
pub struct Encoder {
    buffer: BytesMut,
    sealed: Vec<Chunk>,
    sealed_length: usize,
    /// Skip (rather than refuse) non-default fields a version lacks: for responses, whose
    /// handlers fill every field and let the version decide what goes on the wire, as
    /// Kafka's handlers do field by field.
    drops_absent_fields: bool,
}

#[derive(Debug)]
enum Chunk {
    /// Bytes this encoder wrote; still mutable so length prefixes can be patched.
    Owned(BytesMut),
    /// A caller's slice appended without copying.
    Shared(Bytes),
}

/// A reserved 4-byte big-endian length, patched by `Encoder::patch_length_prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a reserved length prefix stays zero until it is patched"]
pub struct LengthPrefix {
    chunk: usize,
    offset: usize,
    content_start: usize,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// An encoder that silently leaves out fields the target version does not have.
    pub fn dropping_absent_fields() -> Self {
        Self {
            drops_absent_fields: true,
            ..Self::default()
        }
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buffer: BytesMut::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// Total bytes written, over all chunks.
    pub fn len(&self) -> usize {
        self.sealed_length + self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn put_slice(&mut self, data: &[u8]) {
        self.buffer.put_slice(data);
    }

    /// Appends `data` raw: copied when short, otherwise kept as its own chunk (zero copy).
    pub fn put_records(&mut self, data: Bytes) {
        if data.len() < ZERO_COPY_THRESHOLD_BYTES {
            self.buffer.put_slice(&data);
            return;
        }
        self.seal_buffer();
        self.sealed_length += data.len();
        self.sealed.push(Chunk::Shared(data));
    }

    pub fn put_uvarint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.buffer.put_u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.buffer.put_u8(value as u8);
    }

    pub fn put_uvarlong(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buffer.put_u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.buffer.put_u8(value as u8);
    }

    pub fn put_varint(&mut self, value: i32) {
        self.put_uvarint(((value << 1) ^ (value >> 31)) as u32);
    }

    pub fn put_varlong(&mut self, value: i64) {
        self.put_uvarlong(((value << 1) ^ (value >> 63)) as u64);
    }

    /// Reserves a 4-byte length to be patched once the content after it is written.
    pub fn reserve_length_prefix(&mut self) -> LengthPrefix {
        let prefix = LengthPrefix {
            chunk: self.sealed.len(),
            offset: self.buffer.len(),
            content_start: self.len() + 4,
        };
        self.buffer.put_i32(0);
        prefix
    }

    /// Writes the number of bytes written since `prefix` (over all chunks) into it.
    pub fn patch_length_prefix(&mut self, prefix: LengthPrefix) -> Result<(), EncodeError> {
        let length = self.len().saturating_sub(prefix.content_start);
        let encoded = i32::try_from(length)
            .map_err(|_| EncodeError::InvalidLengthPrefix { length })?
            .to_be_bytes();
        let target = if prefix.chunk == self.sealed.len() {
            Some(&mut self.buffer)
        } else {
            match self.sealed.get_mut(prefix.chunk) {
                Some(Chunk::Owned(bytes)) => Some(bytes),
                _ => None,
            }
        };
        let slot = target
            .and_then(|bytes| bytes.get_mut(prefix.offset..prefix.offset + 4))
            .ok_or(EncodeError::InvalidLengthPrefix { length })?;
        slot.copy_from_slice(&encoded);
        Ok(())
    }

    fn seal_buffer(&mut self) {
        if !self.buffer.is_empty() {
            let written = self.buffer.split();
            self.sealed_length += written.len();
            self.sealed.push(Chunk::Owned(written));
        }
    }

    /// The encoded bytes as chunks in order (one chunk unless large slices were added).
    pub fn finish(mut self) -> Vec<Bytes> {
        self.seal_buffer();
        self.sealed
            .into_iter()
            .map(|chunk| match chunk {
                Chunk::Owned(bytes) => bytes.freeze(),
                Chunk::Shared(bytes) => bytes,
            })
            .collect()
    }

    /// The encoded bytes in one buffer, copying only when there are several chunks.
    pub fn into_single(self) -> Bytes {
        let mut chunks = self.finish();
        if chunks.len() <= 1 {
            return chunks.pop().unwrap_or_default();
        }
        let mut joined = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
        for chunk in &chunks {
            joined.put_slice(chunk);
        }
        joined.freeze()
    }
}

fn write_length(
    out: &mut Encoder,
    compact: bool,
    width: LengthWidth,
    length: usize,
    field: &'static str,
) -> Result<(), EncodeError> {
    let too_large = EncodeError::LengthTooLarge { field, length };
    let length = i32::try_from(length).map_err(|_| too_large)?;
    if compact {
        // length <= i32::MAX, so length + 1 fits in u32.
        out.put_uvarint(length.unsigned_abs() + 1);
        return Ok(());
    }
    match width {
        LengthWidth::Int16 => {
            let short = i16::try_from(length).map_err(|_| EncodeError::StringTooLong {
                field,
                length: length.unsigned_abs() as usize,
            })?;
            short.write_to(out);
        }
        LengthWidth::Int32 => length.write_to(out),
    }
    Ok(())
}

fn write_null(
    out: &mut Encoder,
    compact: bool,
    width: LengthWidth,
    nullable: bool,
    field: &'static str,
    version: i16,
) -> Result<(), EncodeError> {
    if !nullable {
        return Err(EncodeError::NullNotAllowed { field, version });
    }
    match (compact, width) {
        (true, _) => out.put_uvarint(0),
        (false, LengthWidth::Int16) => (-1i16).write_to(out),
        (false, LengthWidth::Int32) => (-1i32).write_to(out),
    }
    Ok(())
}

/// A non-null string.
pub fn write_string(
    out: &mut Encoder,
    compact: bool,
    value: &str,
    field: &'static str,
) -> Result<(), EncodeError> {
    if value.len() > STRING_LENGTH_MAX {
        return Err(EncodeError::StringTooLong {
            field,
            length: value.len(),
        });
    }
    write_length(out, compact, LengthWidth::Int16, value.len(), field)?;
    out.put_slice(value.as_bytes());
    Ok(())
}

/// An `Option<String>` field; `None` is an error unless `nullable` at `version`.
pub fn write_opt_string(
    out: &mut Encoder,
    compact: bool,
    nullable: bool,
    value: Option<&str>,
    field: &'static str,
    version: i16,
) -> Result<(), EncodeError> {
    match value {
        Some(text) => write_string(out, compact, text, field),
        None => write_null(out, compact, LengthWidth::Int16, nullable, field, version),
    }
}

/// A non-null bytes field; large values are appended without copying.
pub fn write_bytes(
    out: &mut Encoder,
    compact: bool,
    value: &Bytes,
    field: &'static str,
) -> Result<(), EncodeError> {
    write_length(out, compact, LengthWidth::Int32, value.len(), field)?;
    out.put_records(value.clone());
    Ok(())
}

/// An `Option<Bytes>` field (bytes or records); `None` is an error unless `nullable`.
pub fn write_opt_bytes(
    out: &mut Encoder,
    compact: bool,
    nullable: bool,
    value: Option<&Bytes>,
    field: &'static str,
    version: i16,
) -> Result<(), EncodeError> {
    match value {
        Some(bytes) => write_bytes(out, compact, bytes, field),
        None => write_null(out, compact, LengthWidth::Int32, nullable, field, version),
    }
}

/// A non-null array; `write_element` encodes one element.
pub fn write_array<T>(
    out: &mut Encoder,
    compact: bool,
    elements: &[T],
    field: &'static str,
    mut write_element: impl FnMut(&mut Encoder, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    write_length(out, compact, LengthWidth::Int32, elements.len(), field)?;
    elements
        .iter()
        .try_for_each(|element| write_element(out, element))
}

/// An `Option<Vec<T>>` field; `None` is an error unless `nullable` at `version`.
pub fn write_opt_array<T>(
    out: &mut Encoder,
    compact: bool,
    nullable: bool,
    elements: Option<&[T]>,
    field: &'static str,
    version: i16,
    write_element: impl FnMut(&mut Encoder, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    match elements {
        Some(elements) => write_array(out, compact, elements, field, write_element),
        None => write_null(out, compact, LengthWidth::Int32, nullable, field, version),
    }
}

/// An `Option<T>` struct field: int8 marker when nullable, bare struct otherwise.
pub fn write_opt_struct<T>(
    out: &mut Encoder,
    nullable: bool,
    value: Option<&T>,
    field: &'static str,
    version: i16,
    write: impl FnOnce(&mut Encoder, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    match (value, nullable) {
        (None, false) => Err(EncodeError::NullNotAllowed { field, version }),
        (None, true) => {
            (-1i8).write_to(out);
            Ok(())
        }
        (Some(value), nullable) => {
            if nullable {
                1i8.write_to(out);
            }
            write(out, value)
        }
    }
}

/// A nullable struct inside a tagged field: unsigned varint marker (0 null, 1 present).
pub fn write_tagged_opt_struct<T>(
    out: &mut Encoder,
    value: Option<&T>,
    write: impl FnOnce(&mut Encoder, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    match value {
        None => {
            out.put_uvarint(0);
            Ok(())
        }
        Some(value) => {
            out.put_uvarint(1);
            write(out, value)
        }
    }
}

/// Encodes one tagged field's value on its own, so its size is known before it is written.
pub fn encode_tagged(
    write: impl FnOnce(&mut Encoder) -> Result<(), EncodeError>,
) -> Result<Bytes, EncodeError> {
    let mut value = Encoder::new();
    write(&mut value)?;
    Ok(value.into_single())
}

/// Writes a tagged-field section: the known fields (ascending tags, already encoded)
/// merged with the unknown ones in ascending tag order.
pub fn write_tagged_fields(
    out: &mut Encoder,
    known: Vec<(u32, Bytes)>,
    unknown: &[RawTaggedField],
) -> Result<(), EncodeError> {
    let count = known.len() + unknown.len();
    let too_many = EncodeError::LengthTooLarge {
        field: "tagged fields",
        length: count,
    };
    out.put_uvarint(u32::try_from(count).map_err(|_| too_many)?);
    if count == 0 {
        return Ok(());
    }
    let mut fields: Vec<(u32, &Bytes)> = known.iter().map(|(tag, data)| (*tag, data)).collect();
    fields.extend(unknown.iter().map(|field| (field.tag, &field.data)));
    fields.sort_by_key(|(tag, _)| *tag);
    for (tag, data) in fields {
        let too_large = EncodeError::LengthTooLarge {
            field: "tagged field",
            length: data.len(),
        };
        out.put_uvarint(tag);
        out.put_uvarint(u32::try_from(data.len()).map_err(|_| too_large)?);
        out.put_records(data.clone());
    }
    Ok(())
}

/// Fails when unknown tagged fields would be dropped at a non-flexible version.
pub fn ensure_no_tagged_fields(
    unknown: &[RawTaggedField],
    message: &'static str,
    version: i16,
) -> Result<(), EncodeError> {
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(EncodeError::TaggedFieldsUnsupported { message, version })
    }
}

/// Fails when a non-ignorable field absent at `version` holds a non-default value, unless
/// `out` drops absent fields (responses).
pub fn ensure_default(
    out: &Encoder,
    is_default: bool,
    field: &'static str,
    version: i16,
) -> Result<(), EncodeError> {
    if is_default || out.drops_absent_fields {
        Ok(())
    } else {
        Err(EncodeError::NonDefaultAbsentField { field, version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(data: &[u8]) -> Bytes {
        Bytes::copy_from_slice(data)
    }

    #[test]
    fn uvarint_round_trips_boundaries() {
        for value in [
            0u32,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            268_435_455,
            u32::MAX,
        ] {
            let mut out = Encoder::new();
            out.put_uvarint(value);
            let mut input = out.into_single();
            assert_eq!(read_uvarint(&mut input), Ok(value));
            assert!(input.is_empty());
        }
    }

    #[test]
    fn uvarint_rejects_six_bytes_and_overflowing_fifth_byte() {
        let mut six = bytes(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
        assert_eq!(read_uvarint(&mut six), Err(DecodeError::VarintTooLong));
        let mut overflow = bytes(&[0xff, 0xff, 0xff, 0xff, 0x1f]);
        assert_eq!(read_uvarint(&mut overflow), Err(DecodeError::VarintTooLong));
        let mut max = bytes(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(read_uvarint(&mut max), Ok(u32::MAX));
    }

    #[test]
    fn uvarint_truncated_is_an_error() {
        let mut input = bytes(&[0x80, 0x80]);
        assert!(matches!(
            read_uvarint(&mut input),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn zigzag_varint_and_varlong_round_trip() {
        for value in [0, -1, 1, i32::MIN, i32::MAX, -64, 63, 64] {
            let mut out = Encoder::new();
            out.put_varint(value);
            assert_eq!(read_varint(&mut out.into_single()), Ok(value));
        }
        for value in [0, -1, 1, i64::MIN, i64::MAX, 1 << 40] {
            let mut out = Encoder::new();
            out.put_varlong(value);
            assert_eq!(read_varlong(&mut out.into_single()), Ok(value));
        }
        // Known answers from the Kafka protocol guide: zigzag(-1) = 1, zigzag(1) = 2.
        let mut out = Encoder::new();
        out.put_varint(-1);
        out.put_varint(1);
        assert_eq!(&out.into_single()[..], &[0x01, 0x02]);
    }

    #[test]
    fn varlong_rejects_eleven_bytes() {
        let mut input = bytes(&[0xff; 11]);
        assert_eq!(read_uvarlong(&mut input), Err(DecodeError::VarintTooLong));
    }

    #[test]
    fn primitives_round_trip_big_endian() {
        let mut out = Encoder::new();
        0x0102i16.write_to(&mut out);
        (-2i32).write_to(&mut out);
        u16::MAX.write_to(&mut out);
        1.5f64.write_to(&mut out);
        true.write_to(&mut out);
        Uuid([7; 16]).write_to(&mut out);
        let mut input = out.into_single();
        assert_eq!(&input[..2], &[0x01, 0x02]);
        assert_eq!(i16::read_from(&mut input), Ok(0x0102));
        assert_eq!(i32::read_from(&mut input), Ok(-2));
        assert_eq!(u16::read_from(&mut input), Ok(u16::MAX));
        assert_eq!(f64::read_from(&mut input), Ok(1.5));
        assert_eq!(bool::read_from(&mut input), Ok(true));
        assert_eq!(Uuid::read_from(&mut input), Ok(Uuid([7; 16])));
        assert!(matches!(
            i64::read_from(&mut input),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn compact_and_classic_null_strings() {
        assert_eq!(read_opt_string(&mut bytes(&[0]), true, true), Ok(None));
        assert_eq!(
            read_opt_string(&mut bytes(&[0xff, 0xff]), false, true),
            Ok(None)
        );
        assert_eq!(
            read_string(&mut bytes(&[0]), true),
            Err(DecodeError::UnexpectedNull { what: "string" })
        );
        assert_eq!(
            read_opt_string(&mut bytes(&[0xff, 0xff]), false, false),
            Err(DecodeError::UnexpectedNull { what: "string" })
        );
        assert_eq!(
            read_string(&mut bytes(&[3, b'a', b'b']), true),
            Ok("ab".to_owned())
        );
    }

    #[test]
    fn negative_and_oversized_lengths_are_rejected_without_allocating() {
        assert_eq!(
            read_string(&mut bytes(&[0xff, 0xfe]), false),
            Err(DecodeError::NegativeLength {
                what: "string",
                length: -2
            })
        );
        // 0x7fffffff elements claimed with 4 bytes left: rejected before any reservation.
        let huge = read_array(
            &mut bytes(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
            false,
            i32::read_from,
        );
        assert!(matches!(
            huge,
            Err(DecodeError::LengthExceedsRemaining {
                length: 0x7fff_ffff,
                ..
            })
        ));
        let compact_huge = read_array(
            &mut bytes(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            true,
            i32::read_from,
        );
        assert!(matches!(
            compact_huge,
            Err(DecodeError::LengthExceedsRemaining { .. })
        ));
        let bytes_too_long = read_bytes(&mut bytes(&[0, 0, 0, 9, 1, 2]), false);
        assert!(matches!(
            bytes_too_long,
            Err(DecodeError::LengthExceedsRemaining { .. })
        ));
        assert_eq!(
            read_opt_array(
                &mut bytes(&[0xff, 0xff, 0xff, 0xfe]),
                false,
                true,
                i32::read_from
            ),
            Err(DecodeError::NegativeLength {
                what: "array",
                length: -2
            })
        );
    }

    #[test]
    fn preallocation_never_exceeds_the_input() {
        assert_eq!(preallocated_elements::<[u8; 64]>(1_000_000, 1000), 15);
        assert_eq!(preallocated_elements::<u8>(10, 1000), 10);
        assert_eq!(preallocated_elements::<()>(10, 3), 3);
        assert_eq!(preallocated_elements::<u64>(usize::MAX, 0), 0);
    }

    #[test]
    fn array_count_within_remaining_but_elements_short_is_truncated() {
        // Three int32 elements claimed, five bytes left: count passes, elements run out.
        let result = read_array(
            &mut bytes(&[0, 0, 0, 3, 0, 0, 0, 1, 0]),
            false,
            i32::read_from,
        );
        assert!(matches!(
            result,
            Err(DecodeError::Truncated { what: "int32", .. })
        ));
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        assert_eq!(
            read_string(&mut bytes(&[0, 2, 0xc3, 0x28]), false),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn bytes_are_zero_copy_slices_of_the_input() {
        let input = Bytes::from(vec![0, 0, 0, 3, 9, 8, 7, 6]);
        let base = input.as_ptr();
        let mut cursor = input.clone();
        let value = read_bytes(&mut cursor, false).expect("valid bytes");
        assert_eq!(&value[..], &[9, 8, 7]);
        assert_eq!(value.as_ptr(), base.wrapping_add(4));
        assert_eq!(&cursor[..], &[6]);
    }

    #[test]
    fn tagged_fields_keep_unknown_and_check_known_sizes() {
        // Two fields: tag 1 (known, 1 byte) and tag 5 (unknown, 2 bytes).
        let mut input = bytes(&[2, 1, 1, 42, 5, 2, 0xaa, 0xbb]);
        let mut known_value = 0;
        let unknown = read_tagged_fields(&mut input, |tag, data| {
            if tag == 1 {
                known_value = i8::read_from(data)?;
                return Ok(true);
            }
            Ok(false)
        })
        .expect("valid tagged fields");
        assert_eq!(known_value, 42);
        assert_eq!(
            unknown,
            vec![RawTaggedField {
                tag: 5,
                data: bytes(&[0xaa, 0xbb])
            }]
        );

        let mut oversized = bytes(&[1, 1, 2, 42, 0]);
        let result =
            read_tagged_fields(&mut oversized, |_, data| i8::read_from(data).map(|_| true));
        assert_eq!(
            result,
            Err(DecodeError::TaggedFieldSizeMismatch {
                tag: 1,
                trailing: 1
            })
        );
    }

    #[test]
    fn tagged_field_count_larger_than_input_is_truncated() {
        let mut input = bytes(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0]);
        let result = read_tagged_fields(&mut input, |_, _| Ok(false));
        assert!(matches!(result, Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn write_tagged_fields_merges_known_and_unknown_in_tag_order() {
        let mut out = Encoder::new();
        let unknown = [
            RawTaggedField {
                tag: 7,
                data: bytes(&[7]),
            },
            RawTaggedField {
                tag: 0,
                data: bytes(&[0]),
            },
        ];
        write_tagged_fields(&mut out, vec![(3, bytes(&[3, 3]))], &unknown).expect("encodes");
        assert_eq!(&out.into_single()[..], &[3, 0, 1, 0, 3, 2, 3, 3, 7, 1, 7]);
    }

    #[test]
    fn encoder_appends_large_records_as_separate_chunks() {
        let large = Bytes::from(vec![5u8; ZERO_COPY_THRESHOLD_BYTES]);
        let mut out = Encoder::new();
        let prefix = out.reserve_length_prefix();
        out.put_slice(&[1, 2]);
        out.put_records(Bytes::from_static(&[9, 9]));
        out.put_records(large.clone());
        out.put_slice(&[3]);
        out.patch_length_prefix(prefix).expect("fits");
        assert_eq!(out.len(), 4 + 2 + 2 + large.len() + 1);
        let chunks = out.finish();
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[1].as_ptr(),
            large.as_ptr(),
            "large slice is not copied"
        );
        let total = u32::try_from(2 + 2 + large.len() + 1).expect("small");
        assert_eq!(&chunks[0][..4], &total.to_be_bytes());
        assert_eq!(&chunks[0][4..], &[1, 2, 9, 9]);
        assert_eq!(&chunks[2][..], &[3]);
    }

    #[test]
    fn into_single_concatenates_chunks() {
        let mut out = Encoder::new();
        out.put_slice(&[1]);
        out.put_records(Bytes::from(vec![2u8; ZERO_COPY_THRESHOLD_BYTES]));
        out.put_slice(&[3]);
        let single = out.into_single();
        assert_eq!(single.len(), ZERO_COPY_THRESHOLD_BYTES + 2);
        assert_eq!(single[0], 1);
        assert_eq!(single[single.len() - 1], 3);
    }

    #[test]
    fn length_prefix_from_another_encoder_is_rejected() {
        let mut first = Encoder::new();
        first.put_slice(&[0; 8]);
        let foreign = first.reserve_length_prefix();
        let mut second = Encoder::new();
        assert!(second.patch_length_prefix(foreign).is_err());
    }

    #[test]
    fn nulls_are_rejected_where_not_nullable() {
        let mut out = Encoder::new();
        assert_eq!(
            write_opt_string(&mut out, false, false, None, "Test.Name", 3),
            Err(EncodeError::NullNotAllowed {
                field: "Test.Name",
                version: 3
            })
        );
        write_opt_string(&mut out, false, true, None, "Test.Name", 3).expect("nullable");
        write_opt_bytes(&mut out, true, true, None, "Test.Data", 3).expect("nullable");
        assert_eq!(&out.into_single()[..], &[0xff, 0xff, 0]);
    }

    #[test]
    fn overlong_strings_are_rejected_on_encode() {
        let long = "x".repeat(STRING_LENGTH_MAX + 1);
        let mut out = Encoder::new();
        assert_eq!(
            write_string(&mut out, true, &long, "Test.Name"),
            Err(EncodeError::StringTooLong {
                field: "Test.Name",
                length: STRING_LENGTH_MAX + 1
            })
        );
    }

    #[test]
    fn uuid_text_form_round_trips() {
        let uuid = Uuid([
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65,
            0x43, 0x21,
        ]);
        let text = uuid.to_string();
        assert_eq!(text.len(), 22);
        assert_eq!(Uuid::from_base64(&text), Some(uuid));
        assert_eq!(Uuid::ZERO.to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(Uuid::from_base64("too short"), None);
        assert_eq!(
            Uuid::from_base64("AAAAAAAAAAAAAAAAAAAAAB"),
            None,
            "padding bits must be zero"
        );
        // Kafka's own example: Uuid.fromString("ZmQb0kkDQ6y1PFWWFk7SNw").
        let kafka = Uuid::from_base64("ZmQb0kkDQ6y1PFWWFk7SNw").expect("valid");
        assert_eq!(&kafka.0[..3], &[0x66, 0x64, 0x1b]);
        assert_eq!(kafka.to_string(), "ZmQb0kkDQ6y1PFWWFk7SNw");
    }
}
