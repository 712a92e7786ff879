//! Fuzzes the request path the server runs on untrusted bytes: the input is a request
//! frame without its 4-byte size; the header is decoded with the header version its api
//! key and version call for, then the body with the request type of that api key, for
//! every key and version in the `ApiKey` table (and any version outside it).
//!
//! Oracle: decoding never panics, and a request that decodes re-encodes at its version
//! and decodes back to the same value, consuming exactly the re-encoded bytes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::protocol::frame::decode_request;
use weir::protocol::{Encoder, RequestBody};

fuzz_target!(|data: &[u8]| check_request_frame(data));

fn check_request_frame(data: &[u8]) {
    let mut frame = Bytes::copy_from_slice(data);
    let Ok((header, body)) = decode_request(&mut frame) else {
        return;
    };
    let version = header.request_api_version;
    let api_key = body.api_key();
    let mut out = Encoder::new();
    if let Err(error) = body.encode(&mut out, version) {
        panic!("decoded {api_key:?} v{version} does not re-encode: {error}");
    }
    let mut encoded = out.into_single();
    match RequestBody::decode(api_key, &mut encoded, version) {
        Ok(again) => assert_eq!(again, body, "{api_key:?} v{version} decodes differently"),
        Err(error) => panic!("re-encoded {api_key:?} v{version} does not decode: {error}"),
    }
    let left = encoded.len();
    assert_eq!(
        left, 0,
        "re-encoded {api_key:?} v{version} left {left} bytes"
    );
}
