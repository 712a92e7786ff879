//! Sparse offset and time indexes of one segment, in Kafka's on-disk formats.
//!
//! `.index`: entries of (relative offset u32 BE, file position u32 BE), 8 bytes each; an entry
//! maps the last offset of a batch to the position where that batch (or the append holding it)
//! starts, added every `index.interval.bytes`. `.timeindex`: entries of (timestamp i64 BE,
//! relative offset u32 BE), 12 bytes each, added when the segment's max timestamp grows.
//!
//! Both live in memory (a `Vec`); files are written whole when a segment is sealed or the broker
//! shuts down cleanly, and rebuilt by scanning the log otherwise. Invariant: entries are strictly
//! increasing in offset (and, for the offset index, in position).

pub const OFFSET_ENTRY_LEN: usize = 8;
pub const TIME_ENTRY_LEN: usize = 12;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct OffsetIndex {
    base_offset: i64,
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn new(base_offset: i64) -> OffsetIndex {
        OffsetIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the index file takes.
    pub fn size_bytes(&self) -> usize {
        self.entries.len() * OFFSET_ENTRY_LEN
    }

    /// Adds an entry if it keeps the index increasing; older or equal entries are ignored.
    pub fn append(&mut self, offset: i64, position: u32) {
        let relative = (offset - self.base_offset) as u32;
        if let Some(&(last_offset, last_position)) = self.entries.last() {
            if relative <= last_offset || position <= last_position {
                return;
            }
        }
        self.entries.push((relative, position));
    }

    /// The position to start scanning for `target`: the entry with the largest offset ≤ target,
    /// else the segment start.
    pub fn lookup(&self, target: i64) -> (i64, u32) {
        let relative = target - self.base_offset;
        if relative < 0 {
            return (self.base_offset, 0);
        }
        let index = self
            .entries
            .partition_point(|&(offset, _)| (offset as i64) <= relative);
        if index == 0 {
            (self.base_offset, 0)
        } else {
            let (offset, position) = self.entries[index - 1];
            (self.base_offset + offset as i64, position)
        }
    }

    /// Drops entries at or beyond `position` (after the log was truncated there).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(keep);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_bytes());
        for &(offset, position) in &self.entries {
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&position.to_be_bytes());
        }
        out
    }

    /// Parses an index file; `None` if it is not a well-formed index of a log of `log_size` bytes
    /// (then the caller rebuilds it from the log). Trailing zero entries (Kafka preallocates) end it.
    pub fn from_bytes(base_offset: i64, bytes: &[u8], log_size: u64) -> Option<OffsetIndex> {
        if bytes.len() % OFFSET_ENTRY_LEN != 0 {
            return None;
        }
        let mut index = OffsetIndex::new(base_offset);
        for chunk in bytes.chunks_exact(OFFSET_ENTRY_LEN) {
            let offset = u32::from_be_bytes(chunk[0..4].try_into().unwrap());
            let position = u32::from_be_bytes(chunk[4..8].try_into().unwrap());
            if offset == 0 && position == 0 && !index.entries.is_empty() {
                break;
            }
            if position as u64 >= log_size.max(1) {
                return None;
            }
            if let Some(&(last_offset, last_position)) = index.entries.last() {
                if offset <= last_offset || position <= last_position {
                    return None;
                }
            }
            index.entries.push((offset, position));
        }
        Some(index)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimeIndex {
    base_offset: i64,
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn new(base_offset: i64) -> TimeIndex {
        TimeIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds (timestamp, offset) if the timestamp is larger than the last entry's.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        let relative = (offset - self.base_offset) as u32;
        if let Some(&(last_timestamp, last_offset)) = self.entries.last() {
            if timestamp <= last_timestamp || relative < last_offset {
                return;
            }
        }
        self.entries.push((timestamp, relative));
    }

    /// The offset to start looking from for the first record with timestamp ≥ `target`: the
    /// entry with the largest timestamp < target, else the segment start (Kafka's lookup).
    /// Timestamp of the first entry (the first batch's largest timestamp).
    pub fn first_timestamp(&self) -> Option<i64> {
        self.entries.first().map(|&(timestamp, _)| timestamp)
    }

    pub fn lookup(&self, target: i64) -> i64 {
        let index = self
            .entries
            .partition_point(|&(timestamp, _)| timestamp < target);
        if index == 0 {
            self.base_offset
        } else {
            self.base_offset + self.entries[index - 1].1 as i64
        }
    }

    /// The largest timestamp indexed, if any.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|&(timestamp, offset)| (timestamp, self.base_offset + offset as i64))
    }

    /// Drops entries pointing at offsets ≥ `offset`.
    pub fn truncate_to_offset(&mut self, offset: i64) {
        let relative = offset - self.base_offset;
        let keep = self
            .entries
            .partition_point(|&(_, o)| (o as i64) < relative);
        self.entries.truncate(keep);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for &(timestamp, offset) in &self.entries {
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        out
    }

    pub fn from_bytes(base_offset: i64, bytes: &[u8]) -> Option<TimeIndex> {
        if bytes.len() % TIME_ENTRY_LEN != 0 {
            return None;
        }
        let mut index = TimeIndex::new(base_offset);
        for chunk in bytes.chunks_exact(TIME_ENTRY_LEN) {
            let timestamp = i64::from_be_bytes(chunk[0..8].try_into().unwrap());
            let offset = u32::from_be_bytes(chunk[8..12].try_into().unwrap());
            if timestamp == 0 && offset == 0 && !index.entries.is_empty() {
                break;
            }
            if let Some(&(last_timestamp, last_offset)) = index.entries.last() {
                if timestamp <= last_timestamp || offset < last_offset {
                    return None;
                }
            }
            index.entries.push((timestamp, offset));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_lookup_finds_largest_entry_not_above_target() {
        let mut index = OffsetIndex::new(100);
        index.append(109, 0);
        index.append(119, 4096);
        index.append(129, 8192);
        assert_eq!(index.lookup(50), (100, 0));
        assert_eq!(index.lookup(105), (100, 0));
        assert_eq!(index.lookup(109), (109, 0));
        assert_eq!(index.lookup(125), (119, 4096));
        assert_eq!(index.lookup(1000), (129, 8192));
    }

    #[test]
    fn time_lookup_starts_before_the_first_larger_timestamp() {
        let mut index = TimeIndex::new(0);
        index.maybe_append(1000, 9);
        index.maybe_append(900, 19); // not larger: ignored
        index.maybe_append(2000, 29);
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup(500), 0);
        assert_eq!(index.lookup(1000), 0);
        assert_eq!(index.lookup(1500), 9);
        assert_eq!(index.lookup(5000), 29);
    }

    #[test]
    fn truncated_or_non_monotonic_files_are_rejected() {
        let mut index = OffsetIndex::new(0);
        index.append(5, 0);
        index.append(9, 100);
        let bytes = index.to_bytes();
        assert_eq!(OffsetIndex::from_bytes(0, &bytes, 200), Some(index.clone()));
        assert_eq!(OffsetIndex::from_bytes(0, &bytes[..7], 200), None);
        assert_eq!(
            OffsetIndex::from_bytes(0, &bytes, 50),
            None,
            "position beyond the log"
        );
        let mut swapped = bytes[8..].to_vec();
        swapped.extend_from_slice(&bytes[..8]);
        assert_eq!(OffsetIndex::from_bytes(0, &swapped, 200), None);
    }

    proptest! {
        #[test]
        fn offset_index_round_trips(steps in proptest::collection::vec((1u32..1000, 1u32..100_000), 0..200)) {
            let mut index = OffsetIndex::new(7);
            let (mut offset, mut position) = (7i64, 0u32);
            for (d_offset, d_position) in steps {
                offset += d_offset as i64;
                position += d_position;
                index.append(offset, position);
            }
            let parsed = OffsetIndex::from_bytes(7, &index.to_bytes(), position as u64 + 1).unwrap();
            prop_assert_eq!(parsed, index);
        }

        #[test]
        fn time_index_round_trips(steps in proptest::collection::vec((1i64..1000, 0u32..100), 0..200)) {
            let mut index = TimeIndex::new(3);
            let (mut timestamp, mut offset) = (0i64, 3i64);
            for (d_timestamp, d_offset) in steps {
                timestamp += d_timestamp;
                offset += d_offset as i64;
                index.maybe_append(timestamp, offset);
            }
            prop_assert_eq!(TimeIndex::from_bytes(3, &index.to_bytes()).unwrap(), index);
        }
    }
}
