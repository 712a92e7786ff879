//! The aborted-transaction index, `<base>.txnindex` (Kafka's `TransactionIndex`): one entry per
//! transaction aborted by a marker stored in the segment, so read_committed fetches can tell
//! consumers which producers' batches to skip.
//!
//! Entry layout (34 bytes, big-endian): version i16 = 0, producer id i64, first offset i64,
//! last offset i64 (the ABORT marker's offset), last stable offset i64 at completion. Entries are
//! in marker order. The entries live in memory with their segment ([`super::segment::Segment`]);
//! the file is written whole, with the other index files, when the segment is sealed, at clean
//! shutdown and when compaction rewrites the segment. After a crash, the active segment's entries
//! past the producer snapshot are rebuilt from the markers recovery replays.

/// Encoded size of one entry.
pub const ENTRY_LEN: usize = 34;
const VERSION: i16 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

pub fn encode(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for entry in entries {
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&entry.producer_id.to_be_bytes());
        out.extend_from_slice(&entry.first_offset.to_be_bytes());
        out.extend_from_slice(&entry.last_offset.to_be_bytes());
        out.extend_from_slice(&entry.last_stable_offset.to_be_bytes());
    }
    out
}

/// Decodes a file's entries. Stops at the first partial entry, entry of another version, or
/// entry out of order (a torn or corrupt tail); the second value says whether the whole file was
/// read.
pub fn decode(bytes: &[u8]) -> (Vec<AbortedTxn>, bool) {
    let mut entries: Vec<AbortedTxn> = Vec::with_capacity(bytes.len() / ENTRY_LEN);
    for raw in bytes.chunks(ENTRY_LEN) {
        if raw.len() != ENTRY_LEN || i16::from_be_bytes([raw[0], raw[1]]) != VERSION {
            return (entries, false);
        }
        let field = |at: usize| i64::from_be_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
        let entry = AbortedTxn {
            producer_id: field(2),
            first_offset: field(10),
            last_offset: field(18),
            last_stable_offset: field(26),
        };
        let ordered = entry.first_offset <= entry.last_offset
            && entries
                .last()
                .is_none_or(|p| p.last_offset < entry.last_offset);
        if !ordered {
            return (entries, false);
        }
        entries.push(entry);
    }
    (entries, true)
}

/// Kafka's `collectAbortedTxns` over the indexes of the segments from the one holding `from` on,
/// oldest first: every aborted transaction with `last_offset >= from` and `first_offset <
/// upper_bound`, as (producer id, first offset). Stops early at an entry whose last stable
/// offset reaches `upper_bound`: no transaction completed after it can start below the bound.
pub fn collect<'a>(
    indexes: impl IntoIterator<Item = &'a [AbortedTxn]>,
    from: i64,
    upper_bound: i64,
) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for entries in indexes {
        let start = entries.partition_point(|e| e.last_offset < from);
        for entry in &entries[start..] {
            if entry.first_offset < upper_bound {
                out.push((entry.producer_id, entry.first_offset));
            }
            if entry.last_stable_offset >= upper_bound {
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(producer_id: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_are_kafkas_34_bytes() {
        let bytes = encode(&[entry(0x0102, 5, 9, 10)]);
        assert_eq!(bytes.len(), 34);
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &0x0102i64.to_be_bytes());
        assert_eq!(&bytes[10..18], &5i64.to_be_bytes());
        assert_eq!(&bytes[18..26], &9i64.to_be_bytes());
        assert_eq!(&bytes[26..34], &10i64.to_be_bytes());
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_at_the_last_whole_entry() {
        let entries = vec![entry(1, 0, 4, 5), entry(2, 3, 8, 9)];
        let bytes = encode(&entries);
        assert_eq!(decode(&bytes), (entries.clone(), true));
        assert_eq!(decode(&bytes[..50]), (entries[..1].to_vec(), false));
        let mut other_version = bytes.clone();
        other_version[ENTRY_LEN + 1] = 1;
        assert_eq!(decode(&other_version), (entries[..1].to_vec(), false));
        let out_of_order = encode(&[entry(1, 0, 8, 9), entry(2, 3, 4, 5)]);
        assert!(!decode(&out_of_order).1);
    }

    #[test]
    fn collect_returns_the_aborted_transactions_overlapping_the_range() {
        // Producer 1 aborts [0, 4]; producer 2 aborts [3, 10] (open while 1 aborted, so the LSO
        // at 1's abort was 3); producer 3 aborts [20, 25] in the next segment.
        let first = vec![entry(1, 0, 4, 3), entry(2, 3, 10, 11)];
        let second = vec![entry(3, 20, 25, 26)];
        let segments = [first.as_slice(), second.as_slice()];
        assert_eq!(collect(segments, 0, 100), vec![(1, 0), (2, 3), (3, 20)]);
        assert_eq!(collect(segments, 5, 100), vec![(2, 3), (3, 20)]);
        assert_eq!(collect(segments, 5, 15), vec![(2, 3)]);
        assert_eq!(collect(segments, 0, 3), vec![(1, 0)]);
        assert_eq!(collect(segments, 11, 20), Vec::<(i64, i64)>::new());
        assert_eq!(collect(segments, 26, 40), Vec::<(i64, i64)>::new());
    }

    proptest! {
        /// Against the definition: the early stop never loses an entry, whatever the layout.
        #[test]
        fn collect_matches_a_full_scan(
            txns in proptest::collection::vec((0i64..4, 0i64..50, 1i64..20), 0..20),
            from in 0i64..120,
            width in 0i64..60,
        ) {
            // Build a consistent history: transactions ordered by marker offset, each LSO the
            // minimum first offset of the transactions still open at its marker.
            let mut spans: Vec<(i64, i64, i64)> = txns
                .iter()
                .enumerate()
                .map(|(i, (pid, first, len))| (*pid * 100 + i as i64, *first, *first + *len))
                .collect();
            spans.sort_by_key(|s| s.2);
            spans.dedup_by_key(|s| s.2);
            let entries: Vec<AbortedTxn> = spans
                .iter()
                .map(|&(pid, first, last)| {
                    let open_first = spans
                        .iter()
                        .filter(|o| o.1 <= last && o.2 > last)
                        .map(|o| o.1)
                        .min();
                    entry(pid, first, last, open_first.unwrap_or(last + 1).min(last + 1))
                })
                .collect();
            let upper = from + width;
            let expected: Vec<(i64, i64)> = entries
                .iter()
                .filter(|e| e.last_offset >= from && e.first_offset < upper)
                .map(|e| (e.producer_id, e.first_offset))
                .collect();
            let (a, b) = entries.split_at(entries.len() / 2);
            prop_assert_eq!(collect([a, b], from, upper), expected);
        }
    }
}
