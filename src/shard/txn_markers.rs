//! TEMPORARY shim on branch txn-coord: replaced by the partition-side implementation at merge.
use std::rc::Rc;

use super::Shard;
use crate::protocol::error::ErrorCode;

pub async fn write_marker(
    _shard: &Rc<Shard>,
    _topic: &str,
    _partition: i32,
    _producer_id: i64,
    _producer_epoch: i16,
    _coordinator_epoch: i32,
    _commit: bool,
) -> Result<i64, ErrorCode> {
    Err(ErrorCode::UnknownServerError)
}
