//! Kafka's default partitioner, as the Java producer applies it: a record with a key goes to
//! `toPositive(murmur2(key)) % partitions` (an empty key is a key and is hashed); a record
//! without one goes to the current "sticky" partition, which moves on each time a batch for it
//! is completed (KIP-480), so null-key records fill whole batches instead of spraying one
//! record per partition. Weir moves round-robin from a random start instead of picking a random
//! partition each time: the spread is as even and a test can predict it.

use crate::records::murmur2::partition_for_key;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioner {
    partitions: i32,
    sticky: i32,
}

impl Partitioner {
    /// A partitioner over `partitions` (at least 1) whose first sticky partition is
    /// `start % partitions`.
    pub fn new(partitions: i32, start: u32) -> Partitioner {
        let partitions = partitions.max(1);
        let start = i32::try_from(start % partitions.unsigned_abs()).unwrap_or(0);
        Partitioner {
            partitions,
            sticky: start,
        }
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The partition for a record with `key`.
    pub fn partition(&self, key: Option<&[u8]>) -> i32 {
        match key {
            Some(key) => partition_for_key(key, self.partitions),
            None => self.sticky,
        }
    }

    /// A batch for `partition` was closed: null-key records move to the next partition if
    /// that was the sticky one.
    pub fn batch_completed(&mut self, partition: i32) {
        if partition == self.sticky {
            self.sticky = (self.sticky + 1) % self.partitions;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_like_the_java_client() {
        let partitioner = Partitioner::new(12, 0);
        // toPositive(murmur2(key)) % 12, values from Kafka's murmur2 test vectors.
        for (key, partitions) in [
            (&b"21"[..], 12),
            (b"foobar", 12),
            (b"a-little-bit-long-string", 12),
        ] {
            assert_eq!(
                partitioner.partition(Some(key)),
                partition_for_key(key, partitions)
            );
        }
        // The same key always lands on the same partition, whatever happened in between.
        let mut partitioner = Partitioner::new(7, 3);
        let before = partitioner.partition(Some(b"orders-42"));
        partitioner.batch_completed(3);
        assert_eq!(partitioner.partition(Some(b"orders-42")), before);
    }

    #[test]
    fn an_empty_key_is_hashed_not_sticky() {
        let partitioner = Partitioner::new(10, 0);
        assert_eq!(partitioner.partition(Some(b"")), partition_for_key(b"", 10));
        // murmur2("") = 275646681 -> 275646681 % 10 = 1, different from the sticky 0.
        assert_eq!(partitioner.partition(Some(b"")), 1);
        assert_eq!(partitioner.partition(None), 0);
    }

    #[test]
    fn null_keys_stick_until_their_batch_completes_then_rotate() {
        let mut partitioner = Partitioner::new(3, 4);
        assert_eq!(partitioner.partition(None), 1);
        assert_eq!(partitioner.partition(None), 1);
        // Completing another partition's batch does not move the sticky partition.
        partitioner.batch_completed(0);
        assert_eq!(partitioner.partition(None), 1);
        let mut seen = Vec::new();
        for _ in 0..6 {
            partitioner.batch_completed(partitioner.partition(None));
            seen.push(partitioner.partition(None));
        }
        assert_eq!(seen, vec![2, 0, 1, 2, 0, 1]);
    }

    #[test]
    fn a_single_partition_topic_always_gets_partition_zero() {
        let mut partitioner = Partitioner::new(1, 99);
        assert_eq!(partitioner.partition(None), 0);
        partitioner.batch_completed(0);
        assert_eq!(partitioner.partition(None), 0);
        assert_eq!(partitioner.partition(Some(b"k")), 0);
        assert_eq!(Partitioner::new(0, 5).partitions(), 1);
    }
}
