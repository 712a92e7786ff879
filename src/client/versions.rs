//! ApiVersions negotiation: for each API, the highest version both the broker (its ApiVersions
//! response) and this client speak. Pure; the connection runs the exchange.
//!
//! The client's range for an API is the generated codec's (`ApiKey::versions`), narrowed where
//! the client's own logic needs more than the codec: Produce and Fetch from the first versions
//! that carry RecordBatch v2 only, ListOffsets and Metadata from v1, whose semantics the client
//! implements; and never a version the schema marks unstable.

use std::collections::BTreeMap;

use crate::protocol::messages::api_versions_response::ApiVersion;
use crate::protocol::ApiKey;

/// The versions of `key` this client can send and read.
pub fn client_range(key: ApiKey) -> (i16, i16) {
    let (codec_min, codec_max) = key.versions();
    let max = if key.latest_version_unstable() {
        codec_max - 1
    } else {
        codec_max
    };
    let floor = match key {
        // v0-v2 carry message formats v0/v1; the client writes RecordBatch v2 only.
        ApiKey::Produce => 3,
        // v4 is the first Fetch whose responses may hold v2 batches with transactions.
        ApiKey::Fetch => 4,
        // v0 answers with a list of old-style offsets instead of one offset.
        ApiKey::ListOffsets => 1,
        // v0 cannot ask for all topics (a null list) and always auto-creates.
        ApiKey::Metadata => 1,
        _ => codec_min,
    };
    (floor.max(codec_min), max)
}

/// The highest version in both inclusive ranges, if they overlap.
pub fn pick_version(client: (i16, i16), broker: (i16, i16)) -> Option<i16> {
    let low = client.0.max(broker.0);
    let high = client.1.min(broker.1);
    (low <= high).then_some(high)
}

/// The outcome of ApiVersions for one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiVersions {
    /// Broker ranges by api key, as advertised (keys this build does not know included).
    broker: BTreeMap<i16, (i16, i16)>,
    /// Negotiated version by api key, for keys both sides speak.
    chosen: BTreeMap<i16, i16>,
}

impl ApiVersions {
    /// Negotiates every API this client knows against the broker's advertised list.
    /// A broker listing an API twice is taken at its last entry.
    pub fn negotiate(advertised: &[ApiVersion]) -> ApiVersions {
        let broker: BTreeMap<i16, (i16, i16)> = advertised
            .iter()
            .map(|api| (api.api_key, (api.min_version, api.max_version)))
            .collect();
        let chosen = ApiKey::ALL
            .iter()
            .filter_map(|&key| {
                let range = broker.get(&key.code())?;
                pick_version(client_range(key), *range).map(|version| (key.code(), version))
            })
            .collect();
        ApiVersions { broker, chosen }
    }

    /// The version to send `key` at, `None` when no version is common.
    pub fn version(&self, key: ApiKey) -> Option<i16> {
        self.chosen.get(&key.code()).copied()
    }

    /// What the broker advertised for `key`, `None` if it does not serve it.
    pub fn broker_range(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.broker.get(&key.code()).copied()
    }

    /// Whether the broker serves `key` at some version this client speaks.
    pub fn supports(&self, key: ApiKey) -> bool {
        self.version(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(key: ApiKey, min_version: i16, max_version: i16) -> ApiVersion {
        ApiVersion {
            api_key: key.code(),
            min_version,
            max_version,
            ..ApiVersion::default()
        }
    }

    #[test]
    fn picks_the_highest_common_version() {
        assert_eq!(pick_version((0, 12), (0, 9)), Some(9));
        assert_eq!(pick_version((3, 11), (0, 13)), Some(11));
        assert_eq!(pick_version((4, 17), (4, 12)), Some(12));
        assert_eq!(pick_version((5, 5), (5, 5)), Some(5));
    }

    #[test]
    fn disjoint_ranges_have_no_version() {
        assert_eq!(pick_version((3, 11), (0, 2)), None);
        assert_eq!(pick_version((0, 1), (2, 4)), None);
    }

    #[test]
    fn negotiation_covers_every_advertised_api_the_client_knows() {
        let versions = ApiVersions::negotiate(&[
            api(ApiKey::Produce, 0, 11),
            api(ApiKey::Fetch, 4, 12),
            api(ApiKey::Metadata, 0, 99),
            api(ApiKey::ListOffsets, 0, 0),
            ApiVersion {
                api_key: 999,
                min_version: 0,
                max_version: 3,
                ..ApiVersion::default()
            },
        ]);
        assert_eq!(versions.version(ApiKey::Produce), Some(11));
        assert_eq!(versions.version(ApiKey::Fetch), Some(12));
        // Capped at what the codec can encode.
        assert_eq!(
            versions.version(ApiKey::Metadata),
            Some(ApiKey::Metadata.versions().1)
        );
        // Only v0 offered, and the client needs v1+.
        assert_eq!(versions.version(ApiKey::ListOffsets), None);
        assert_eq!(versions.broker_range(ApiKey::ListOffsets), Some((0, 0)));
        assert!(!versions.supports(ApiKey::DescribeCluster));
        assert_eq!(versions.broker_range(ApiKey::DescribeCluster), None);
    }

    #[test]
    fn client_ranges_skip_old_formats_and_unstable_versions() {
        assert_eq!(client_range(ApiKey::Produce).0, 3);
        assert_eq!(client_range(ApiKey::Fetch).0, 4);
        let (_, end_txn_max) = ApiKey::EndTxn.versions();
        assert!(ApiKey::EndTxn.latest_version_unstable());
        assert_eq!(client_range(ApiKey::EndTxn).1, end_txn_max - 1);
        assert_eq!(
            client_range(ApiKey::CreateTopics),
            ApiKey::CreateTopics.versions()
        );
    }
}
