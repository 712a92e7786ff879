//! Kafka's default key partitioner hash: `org.apache.kafka.common.utils.Utils.murmur2`.
//!
//! MurmurHash2 (32-bit) with seed `0x9747b28c`, reading little-endian 4-byte
//! words, folding the 1-3 trailing bytes in, all in wrapping 32-bit
//! arithmetic with logical (unsigned) shifts, exactly as the Java client.
//! Keys hash to the same partition as in every Java-compatible client.

const SEED: u32 = 0x9747_b28c;
const MULTIPLIER: u32 = 0x5bd1_e995;
const SHIFT: u32 = 24;

/// The Java client's `Utils.murmur2(byte[])`.
pub fn murmur2(data: &[u8]) -> i32 {
    let mut hash = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut mixed = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        mixed = mixed.wrapping_mul(MULTIPLIER);
        mixed ^= mixed >> SHIFT;
        mixed = mixed.wrapping_mul(MULTIPLIER);
        hash = hash.wrapping_mul(MULTIPLIER);
        hash ^= mixed;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (index, &byte) in tail.iter().enumerate() {
            hash ^= u32::from(byte) << (8 * index);
        }
        hash = hash.wrapping_mul(MULTIPLIER);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(MULTIPLIER);
    hash ^= hash >> 15;
    hash as i32
}

/// The Java client's `Utils.toPositive`: clears the sign bit (not `abs`,
/// which would overflow on `i32::MIN`).
pub fn to_positive(value: i32) -> i32 {
    value & 0x7fff_ffff
}

/// Partition for a keyed record under Kafka's default partitioner:
/// `toPositive(murmur2(key)) % partitions`. A non-positive partition count
/// has no valid answer and yields 0 rather than dividing by zero.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    to_positive(murmur2(key)) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors, from `UtilsTest.testMurmur2`.
    #[test]
    fn matches_kafka_utils_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107), // Kafka writes this one as new byte[] {'a', 'b', 'c'},
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn positive_and_partition() {
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(5), 5);
        // toPositive(-790332482) = 1357151166; 1357151166 % 50 = 16.
        assert_eq!(partition_for_key(b"foobar", 50), 16);
        assert_eq!(partition_for_key(b"foobar", 0), 0);
        for partitions in 1..20 {
            let partition = partition_for_key(b"any key", partitions);
            assert!((0..partitions).contains(&partition));
        }
    }
}
