//! Kafka wire protocol: the codec generated from Kafka's JSON schemas (`generated/`,
//! written by `src/bin/weir-codegen`), its hand-written runtime (`wire`), error codes
//! (`error`) and request/response framing (`frame`).
//!
//! Decoding is bounded and total: any byte string yields a value or a `DecodeError`,
//! never a panic, and never an allocation larger than the input. Encoding of `bytes` and
//! `records` fields is zero copy above 4 KiB (`Encoder::finish` returns chunks).
//!
//! Items here are referred to with `self::`/`super::` paths only, so the module compiles
//! both as `crate::protocol` and as a standalone crate root.

pub mod error;
pub mod frame;
#[rustfmt::skip]
pub mod generated;
pub mod wire;

#[cfg(test)]
mod codec_tests;
#[cfg(test)]
mod sample;

pub use error::ErrorCode;
pub use generated::api_keys::{self, ApiKey, RequestBody, ResponseBody};
pub use generated::{group_coordinator, messages, metadata, transaction_coordinator};
pub use wire::{DecodeError, EncodeError, Encoder, Message, RawTaggedField, Uuid};
