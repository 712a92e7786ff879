//! Record-batch compression codecs, byte-compatible with the Java client.
//!
//! Owns the codec identifiers carried in batch attribute bits 0-2 and the
//! framing each codec uses on the wire:
//! - gzip: RFC 1952 members (several concatenated members are accepted).
//! - snappy: written in xerial block framing exactly as the Java client's
//!   `SnappyOutputStream` does (`\x82SNAPPY\0`, version 1, compatible
//!   version 1, then `[u32 big-endian length][raw snappy block]`, one block
//!   per 32 KiB of input). Read: xerial framing, plain raw snappy (librdkafka,
//!   sarama) and the official snappy framing format.
//! - lz4: an LZ4 frame as Kafka's `Lz4BlockOutputStream` writes it (64 KiB
//!   independent blocks, no block or content checksums); any valid frame is read.
//! - zstd: a standard zstd frame at Kafka's default level 3.
//!
//! Invariant: `decompress` never produces, nor allocates a buffer for, more
//! than `max_output` bytes, whatever sizes the compressed input declares; a
//! larger output is `CompressionError::OutputTooLarge`.

use std::fmt;
use std::io::{self, Read, Write};

/// Compression codec of a record batch (attribute bits 0-2).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

/// Mask of the codec bits inside batch attributes.
pub const COMPRESSION_CODEC_MASK: i16 = 0x07;

impl Compression {
    /// Every codec, in identifier order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec with wire identifier `id`, if Kafka defines one.
    pub fn from_id(id: u8) -> Option<Compression> {
        Compression::ALL.get(usize::from(id)).copied()
    }

    /// The codec named by batch `attributes` bits 0-2; `None` for the
    /// undefined identifiers 5, 6 and 7.
    pub fn from_attributes(attributes: i16) -> Option<Compression> {
        Compression::from_id((attributes & COMPRESSION_CODEC_MASK) as u8)
    }

    /// Parses a `compression.type` value. `"uncompressed"` and `"none"` both
    /// mean no compression. `"producer"` (keep whatever the producer sent) is
    /// a topic policy rather than a codec, so it yields `None` like any other
    /// unknown name; configuration code handles it before calling this.
    pub fn from_name(name: &str) -> Option<Compression> {
        let lowered = name.trim().to_ascii_lowercase();
        match lowered.as_str() {
            "none" | "uncompressed" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "snappy" => Some(Compression::Snappy),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The codec's configuration name, as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Wire identifier (the value stored in attribute bits 0-2).
    pub fn id(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Why compressing or decompressing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompressionError {
    /// The compressed input is malformed for `codec`.
    Corrupt { codec: Compression, reason: String },
    /// Decompressing would produce more than `limit` bytes.
    OutputTooLarge { codec: Compression, limit: usize },
    /// The input is larger than the codec or the batch format can describe.
    InputTooLarge { codec: Compression, length: usize },
}

impl fmt::Display for CompressionError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressionError::Corrupt { codec, reason } => {
                write!(formatter, "corrupt {codec} data: {reason}")
            }
            CompressionError::OutputTooLarge { codec, limit } => {
                write!(
                    formatter,
                    "{codec} data decompresses to more than {limit} bytes"
                )
            }
            CompressionError::InputTooLarge { codec, length } => {
                write!(
                    formatter,
                    "{length} bytes is too large to encode with {codec}"
                )
            }
        }
    }
}

impl std::error::Error for CompressionError {}

/// Kafka's default zstd level (`compression.zstd.level`).
const ZSTD_LEVEL: i32 = 3;
/// zstd's own default window limit for decoding; frames needing a larger
/// window are refused rather than allocating for them.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Uncompressed bytes per xerial block, as the Java client writes them.
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;
/// `\x82SNAPPY\0`, the xerial stream magic.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, version (i32) and minimum compatible version (i32).
const XERIAL_HEADER_LEN: usize = 16;
const XERIAL_VERSION: i32 = 1;
const XERIAL_COMPATIBLE_VERSION: i32 = 1;
/// Stream identifier chunk that opens the official snappy framing format.
const SNAPPY_FRAMED_MAGIC: [u8; 10] = [0xff, 0x06, 0x00, 0x00, b's', b'N', b'a', b'P', b'p', b'Y'];

/// Compresses `input` with `codec` into the framing Kafka clients expect.
pub fn compress(codec: Compression, input: &[u8]) -> Result<Vec<u8>, CompressionError> {
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => compress_gzip(input),
        Compression::Snappy => compress_xerial_snappy(input),
        Compression::Lz4 => compress_lz4(input),
        Compression::Zstd => compress_zstd(input),
    }
}

/// Decompresses `input`, refusing to produce more than `max_output` bytes.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    max_output: usize,
) -> Result<Vec<u8>, CompressionError> {
    match codec {
        Compression::None => {
            if input.len() > max_output {
                return Err(CompressionError::OutputTooLarge {
                    codec,
                    limit: max_output,
                });
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => read_bounded(
            codec,
            flate2::read::MultiGzDecoder::new(input),
            input.len(),
            max_output,
        ),
        Compression::Snappy => decompress_snappy(input, max_output),
        Compression::Lz4 => read_bounded(
            codec,
            lz4_flex::frame::FrameDecoder::new(input),
            input.len(),
            max_output,
        ),
        Compression::Zstd => decompress_zstd(input, max_output),
    }
}

fn corrupt(codec: Compression, reason: impl fmt::Display) -> CompressionError {
    CompressionError::Corrupt {
        codec,
        reason: reason.to_string(),
    }
}

fn compress_gzip(input: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let codec = Compression::Gzip;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(input.len() / 2 + 64),
        flate2::Compression::default(),
    );
    encoder
        .write_all(input)
        .map_err(|error| corrupt(codec, error))?;
    encoder.finish().map_err(|error| corrupt(codec, error))
}

fn compress_lz4(input: &[u8]) -> Result<Vec<u8>, CompressionError> {
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    let codec = Compression::Lz4;
    // Kafka's reader rejects linked blocks; match its writer's frame descriptor.
    let frame_info = FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent)
        .block_checksums(false)
        .content_checksum(false);
    let output = Vec::with_capacity(input.len() / 2 + 64);
    let mut encoder = FrameEncoder::with_frame_info(frame_info, output);
    encoder
        .write_all(input)
        .map_err(|error| corrupt(codec, error))?;
    encoder.finish().map_err(|error| corrupt(codec, error))
}

fn compress_zstd(input: &[u8]) -> Result<Vec<u8>, CompressionError> {
    zstd::bulk::compress(input, ZSTD_LEVEL).map_err(|error| corrupt(Compression::Zstd, error))
}

fn compress_xerial_snappy(input: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let codec = Compression::Snappy;
    let block_count = input.len().div_ceil(XERIAL_BLOCK_SIZE);
    let worst_block = snap::raw::max_compress_len(XERIAL_BLOCK_SIZE);
    let mut output = Vec::with_capacity(XERIAL_HEADER_LEN + input.len() / 2 + block_count * 8);
    output.extend_from_slice(&XERIAL_MAGIC);
    output.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    output.extend_from_slice(&XERIAL_COMPATIBLE_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    let mut block = vec![0u8; worst_block];
    for chunk in input.chunks(XERIAL_BLOCK_SIZE) {
        let length = encoder
            .compress(chunk, &mut block)
            .map_err(|error| corrupt(codec, error))?;
        output.extend_from_slice(&(length as u32).to_be_bytes());
        output.extend_from_slice(&block[..length]);
    }
    Ok(output)
}

fn decompress_snappy(input: &[u8], max_output: usize) -> Result<Vec<u8>, CompressionError> {
    if input.starts_with(&XERIAL_MAGIC) {
        decompress_xerial_snappy(input, max_output)
    } else if input.starts_with(&SNAPPY_FRAMED_MAGIC) {
        read_bounded(
            Compression::Snappy,
            snap::read::FrameDecoder::new(input),
            input.len(),
            max_output,
        )
    } else {
        decompress_raw_snappy(input, max_output)
    }
}

fn decompress_raw_snappy(input: &[u8], max_output: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = Compression::Snappy;
    let length = snap::raw::decompress_len(input).map_err(|error| corrupt(codec, error))?;
    if length > max_output {
        return Err(CompressionError::OutputTooLarge {
            codec,
            limit: max_output,
        });
    }
    let mut output = vec![0u8; length];
    let written = snap::raw::Decoder::new()
        .decompress(input, &mut output)
        .map_err(|error| corrupt(codec, error))?;
    output.truncate(written);
    Ok(output)
}

/// Reads xerial block framing. A second stream header may follow a block
/// boundary (the Java reader accepts concatenated streams), so it is skipped.
fn decompress_xerial_snappy(input: &[u8], max_output: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = Compression::Snappy;
    let mut output = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    let mut position = 0;
    while position < input.len() {
        let rest = &input[position..];
        if rest.starts_with(&XERIAL_MAGIC) {
            if rest.len() < XERIAL_HEADER_LEN {
                return Err(corrupt(codec, "truncated xerial stream header"));
            }
            position += XERIAL_HEADER_LEN;
            continue;
        }
        let Some(length_bytes) = rest.get(..4) else {
            return Err(corrupt(codec, "truncated xerial block length"));
        };
        let block_length = u32::from_be_bytes([
            length_bytes[0],
            length_bytes[1],
            length_bytes[2],
            length_bytes[3],
        ]);
        let block_length = usize::try_from(block_length).unwrap_or(usize::MAX);
        let Some(block) = rest.get(4..).and_then(|tail| tail.get(..block_length)) else {
            return Err(corrupt(
                codec,
                format!("xerial block of {block_length} bytes exceeds the input"),
            ));
        };
        append_raw_snappy_block(&mut decoder, block, &mut output, max_output)?;
        position += 4 + block_length;
    }
    Ok(output)
}

fn append_raw_snappy_block(
    decoder: &mut snap::raw::Decoder,
    block: &[u8],
    output: &mut Vec<u8>,
    max_output: usize,
) -> Result<(), CompressionError> {
    let codec = Compression::Snappy;
    let length = snap::raw::decompress_len(block).map_err(|error| corrupt(codec, error))?;
    let start = output.len();
    let end = start.checked_add(length).filter(|&end| end <= max_output);
    let Some(end) = end else {
        return Err(CompressionError::OutputTooLarge {
            codec,
            limit: max_output,
        });
    };
    output.resize(end, 0);
    let written = decoder
        .decompress(block, &mut output[start..])
        .map_err(|error| corrupt(codec, error))?;
    output.truncate(start + written);
    Ok(())
}

fn decompress_zstd(input: &[u8], max_output: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = Compression::Zstd;
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(input).map_err(|error| corrupt(codec, error))?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(|error| corrupt(codec, error))?;
    read_bounded(codec, decoder, input.len(), max_output)
}

/// Drains a decoding reader into a vector whose length and capacity never
/// exceed `max_output + 1` (the extra byte detects overflow).
fn read_bounded(
    codec: Compression,
    mut reader: impl Read,
    input_length: usize,
    max_output: usize,
) -> Result<Vec<u8>, CompressionError> {
    let hard_limit = max_output.saturating_add(1);
    // A guess sized from the input, never from anything the input declares.
    let initial = input_length
        .saturating_mul(4)
        .clamp(4096, 1 << 20)
        .min(hard_limit);
    let mut output: Vec<u8> = Vec::with_capacity(initial);
    let mut filled = 0;
    loop {
        if filled == output.len() {
            if filled >= hard_limit {
                return Err(CompressionError::OutputTooLarge {
                    codec,
                    limit: max_output,
                });
            }
            let target = filled.saturating_mul(2).max(initial).min(hard_limit);
            output.reserve_exact(target - output.len());
            output.resize(target, 0);
        }
        match reader.read(&mut output[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(corrupt(codec, error)),
        }
    }
    if filled > max_output {
        return Err(CompressionError::OutputTooLarge {
            codec,
            limit: max_output,
        });
    }
    output.truncate(filled);
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: usize = 1024 * 1024;

    fn sample(length: usize) -> Vec<u8> {
        (0..length)
            .map(|index| (index % 251) as u8 ^ (index / 997) as u8)
            .collect()
    }

    #[test]
    fn names_and_ids_round_trip() {
        for codec in Compression::ALL {
            assert_eq!(Compression::from_name(codec.name()), Some(codec));
            assert_eq!(Compression::from_id(codec.id()), Some(codec));
            assert_eq!(
                Compression::from_attributes(i16::from(codec.id()) | 0x78),
                Some(codec)
            );
        }
        assert_eq!(
            Compression::from_name("uncompressed"),
            Some(Compression::None)
        );
        assert_eq!(Compression::from_name("LZ4"), Some(Compression::Lz4));
        assert_eq!(Compression::from_name("producer"), None);
        assert_eq!(Compression::from_name("brotli"), None);
        for id in 5..8 {
            assert_eq!(Compression::from_attributes(id), None);
        }
    }

    #[test]
    fn every_codec_round_trips_across_block_boundaries() {
        for codec in Compression::ALL {
            for length in [0, 1, 100, XERIAL_BLOCK_SIZE, XERIAL_BLOCK_SIZE + 1, 200_000] {
                let input = sample(length);
                let compressed = compress(codec, &input).unwrap();
                let output = decompress(codec, &compressed, length).unwrap();
                assert!(output == input, "{codec} round trip of {length} bytes");
            }
        }
    }

    #[test]
    fn decompression_bombs_are_refused() {
        let zeros = vec![0u8; 10 * MIB];
        for codec in Compression::ALL {
            let compressed = compress(codec, &zeros).unwrap();
            let result = decompress(codec, &compressed, MIB);
            assert_eq!(
                result,
                Err(CompressionError::OutputTooLarge { codec, limit: MIB }),
                "{codec} bomb of {} compressed bytes",
                compressed.len()
            );
            // The exact size is allowed.
            assert_eq!(
                decompress(codec, &compressed, 10 * MIB).unwrap().len(),
                10 * MIB
            );
        }
    }

    #[test]
    fn raw_snappy_declaring_a_huge_length_is_refused_before_allocating() {
        // Varint 0xffffffff as the declared uncompressed length.
        let input = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(
            decompress(Compression::Snappy, &input, MIB),
            Err(CompressionError::OutputTooLarge { .. } | CompressionError::Corrupt { .. })
        ));
    }

    #[test]
    fn snappy_writes_xerial_framing_like_the_java_client() {
        let input = sample(XERIAL_BLOCK_SIZE * 2 + 10);
        let compressed = compress(Compression::Snappy, &input).unwrap();
        assert_eq!(&compressed[..8], b"\x82SNAPPY\0");
        assert_eq!(&compressed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        // Walk the blocks independently: three length-prefixed raw blocks.
        let mut position = XERIAL_HEADER_LEN;
        let mut decoded = Vec::new();
        while position < compressed.len() {
            let length =
                u32::from_be_bytes(compressed[position..position + 4].try_into().unwrap()) as usize;
            let block = &compressed[position + 4..position + 4 + length];
            decoded.extend(snap::raw::Decoder::new().decompress_vec(block).unwrap());
            position += 4 + length;
        }
        assert_eq!(decoded, input);
    }

    #[test]
    fn snappy_reads_raw_xerial_concatenated_and_framed_streams() {
        let input = sample(5000);
        let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw, MIB).unwrap(), input);

        // Hand-built xerial stream, two blocks, then a second stream header.
        let mut xerial = Vec::new();
        xerial.extend_from_slice(b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01");
        for half in input.chunks(2500) {
            let block = snap::raw::Encoder::new().compress_vec(half).unwrap();
            xerial.extend_from_slice(&(block.len() as u32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        let second_stream = compress(Compression::Snappy, b"tail").unwrap();
        xerial.extend_from_slice(&second_stream);
        let mut expected = input.clone();
        expected.extend_from_slice(b"tail");
        assert_eq!(
            decompress(Compression::Snappy, &xerial, MIB).unwrap(),
            expected
        );

        let mut framed = snap::write::FrameEncoder::new(Vec::new());
        framed.write_all(&input).unwrap();
        let framed = framed.into_inner().unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &framed, MIB).unwrap(),
            input
        );
    }

    #[test]
    fn truncated_xerial_blocks_are_corrupt() {
        let compressed = compress(Compression::Snappy, &sample(1000)).unwrap();
        for cut in [XERIAL_HEADER_LEN + 2, compressed.len() - 1] {
            assert!(matches!(
                decompress(Compression::Snappy, &compressed[..cut], MIB),
                Err(CompressionError::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn lz4_frame_descriptor_matches_kafkas_writer() {
        let compressed = compress(Compression::Lz4, b"kafka").unwrap();
        // Magic 0x184D2204 (LE), FLG version 1 + independent blocks, BD 64 KiB,
        // then the descriptor checksum byte: (xxh32(FLG, BD) >> 8) & 0xff.
        assert_eq!(
            &compressed[..7],
            &[0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82]
        );
        // End mark: a zero block length, and no content checksum after it.
        assert_eq!(&compressed[compressed.len() - 4..], &[0, 0, 0, 0]);
    }

    #[test]
    fn gzip_reads_concatenated_members() {
        let mut joined = compress(Compression::Gzip, b"first ").unwrap();
        joined.extend(compress(Compression::Gzip, b"second").unwrap());
        assert_eq!(
            decompress(Compression::Gzip, &joined, 100).unwrap(),
            b"first second"
        );
    }

    #[test]
    fn uncompressed_respects_the_limit() {
        assert!(decompress(Compression::None, &[1, 2, 3], 2).is_err());
        assert_eq!(
            decompress(Compression::None, &[1, 2, 3], 3).unwrap(),
            vec![1, 2, 3]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn garbage_never_panics(codec_id in 0u8..5, bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let codec = Compression::from_id(codec_id).unwrap();
            if let Ok(output) = decompress(codec, &bytes, 4096) {
                prop_assert!(output.len() <= 4096);
            }
        }

        #[test]
        fn corrupted_streams_never_panic(codec_id in 1u8..5, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let codec = Compression::from_id(codec_id).unwrap();
            let mut compressed = compress(codec, &sample(3000)).unwrap();
            for (position, value) in flips {
                let index = position % compressed.len();
                compressed[index] ^= value | 1;
            }
            if let Ok(output) = decompress(codec, &compressed, 4096) {
                prop_assert!(output.len() <= 4096);
            }
        }
    }
}
