//! Test-only value builder for the generated types: every generated struct implements
//! `Sample`, filling exactly the fields present at a version (nulls only where nullable,
//! tagged and unknown tagged fields in flexible versions), so property tests can check
//! encode → decode → encode on populated messages.
//!
//! Values come from a small deterministic generator seeded by the property test, so a
//! failing case replays from its seed.

use bytes::Bytes;

use super::wire::{RawTaggedField, Uuid, ZERO_COPY_THRESHOLD_BYTES};

/// Builds a populated value of a generated type at `version`.
pub trait Sample: Sized {
    fn sample(sampler: &mut Sampler, version: i16) -> Self;
}

/// Deterministic pseudo-random source (splitmix64).
pub struct Sampler {
    state: u64,
}

/// Longest array a sample builds: enough to exercise loops, small enough to stay fast.
const SAMPLE_ARRAY_LENGTH_MAX: u64 = 3;

impl Sampler {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// A value of a scalar, string, bytes or uuid field.
    pub fn value<T: SampleValue>(&mut self) -> T {
        T::sample_value(self)
    }

    /// `None` a quarter of the time when `nullable`, otherwise `Some(build())`.
    pub fn option<T>(&mut self, nullable: bool, build: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if nullable && self.below(4) == 0 {
            return None;
        }
        Some(build(self))
    }

    /// Zero to three elements.
    pub fn vec<T>(&mut self, mut build: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let length = self.below(SAMPLE_ARRAY_LENGTH_MAX + 1);
        (0..length).map(|_| build(self)).collect()
    }

    /// A records blob: usually small, sometimes above the zero-copy threshold.
    pub fn records(&mut self) -> Bytes {
        let length = if self.below(4) == 0 {
            ZERO_COPY_THRESHOLD_BYTES + self.below(64) as usize
        } else {
            self.below(40) as usize
        };
        let fill = self.next_u64() as u8;
        Bytes::from(vec![fill; length])
    }

    /// Up to two unknown tagged fields with tags at or above `first_free_tag`, ascending.
    pub fn unknown_tags(&mut self, first_free_tag: u32) -> Vec<RawTaggedField> {
        let mut tag = first_free_tag;
        let mut fields = Vec::new();
        for _ in 0..self.below(3) {
            tag += self.below(3) as u32;
            fields.push(RawTaggedField {
                tag,
                data: self.value(),
            });
            tag += 1;
        }
        fields
    }
}

/// Types the sampler can produce directly.
pub trait SampleValue {
    fn sample_value(sampler: &mut Sampler) -> Self;
}

macro_rules! integer_sample {
    ($($type:ty),*) => {$(
        impl SampleValue for $type {
            /// Small values half the time (defaults such as 0 and -1 included).
            fn sample_value(sampler: &mut Sampler) -> Self {
                if sampler.below(2) == 0 {
                    (sampler.below(4) as i64 - 1) as $type
                } else {
                    sampler.next_u64() as $type
                }
            }
        }
    )*};
}

integer_sample!(i8, i16, u16, i32, u32, i64);

impl SampleValue for bool {
    fn sample_value(sampler: &mut Sampler) -> Self {
        sampler.below(2) == 1
    }
}

impl SampleValue for f64 {
    /// Finite values only, so sampled messages compare equal to themselves.
    fn sample_value(sampler: &mut Sampler) -> Self {
        (sampler.below(1 << 20) as f64) / 8.0 - 4096.0
    }
}

impl SampleValue for String {
    /// Zero to eight characters, some of them multi-byte.
    fn sample_value(sampler: &mut Sampler) -> Self {
        const ALPHABET: [char; 8] = ['a', 'Z', '0', '-', '.', '_', 'é', '流'];
        let length = sampler.below(9);
        (0..length)
            .map(|_| ALPHABET[sampler.below(8) as usize])
            .collect()
    }
}

impl SampleValue for Bytes {
    fn sample_value(sampler: &mut Sampler) -> Self {
        let length = sampler.below(9);
        (0..length)
            .map(|_| sampler.next_u64() as u8)
            .collect::<Vec<u8>>()
            .into()
    }
}

impl SampleValue for Uuid {
    fn sample_value(sampler: &mut Sampler) -> Self {
        let high = sampler.next_u64().to_be_bytes();
        let low = sampler.next_u64().to_be_bytes();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&high);
        bytes[8..].copy_from_slice(&low);
        Uuid(bytes)
    }
}
