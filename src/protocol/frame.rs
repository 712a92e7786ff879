//! Request and response framing around the generated messages: reading a request header
//! with the header version its api key and version call for, and encoding a complete
//! size-prefixed response (or request, for Weir's own client) as chunks ready for a
//! vectored write.
//!
//! A frame here is what follows the 4-byte size on the socket; the server reads the size
//! and enforces its own limit before calling in.

use bytes::Bytes;

use super::generated::api_keys::{
    request_header_version, response_header_version, ApiKey, RequestBody,
};
use super::messages::{RequestHeader, ResponseHeader};
use super::wire::{DecodeError, EncodeError, Encoder, Message};

/// Bytes `peek_request_header` needs: api key, api version and correlation id.
pub const REQUEST_HEADER_PEEK_BYTES: usize = 8;

/// Reads api key, api version and correlation id from the start of a request frame
/// without decoding anything else; `None` if the frame is shorter than 8 bytes.
pub fn peek_request_header(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let api_key = i16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
    let api_version = i16::from_be_bytes([*frame.get(2)?, *frame.get(3)?]);
    let correlation_id = i32::from_be_bytes([
        *frame.get(4)?,
        *frame.get(5)?,
        *frame.get(6)?,
        *frame.get(7)?,
    ]);
    Some((api_key, api_version, correlation_id))
}

/// Decodes the request header at the front of `frame`, leaving `frame` at the body.
///
/// The header version follows from the api key and version (v2 for flexible requests).
/// An api key without a schema is `DecodeError::UnknownApiKey`, which still carries the
/// correlation id; a version outside the key's range is decoded anyway so the handler
/// can answer UNSUPPORTED_VERSION.
pub fn decode_request_header(frame: &mut Bytes) -> Result<RequestHeader, DecodeError> {
    let Some((api_key, api_version, correlation_id)) = peek_request_header(frame) else {
        return Err(DecodeError::Truncated {
            what: "request header",
            needed: REQUEST_HEADER_PEEK_BYTES,
            remaining: frame.len(),
        });
    };
    if ApiKey::from_i16(api_key).is_none() {
        return Err(DecodeError::UnknownApiKey {
            api_key,
            api_version,
            correlation_id,
        });
    }
    RequestHeader::decode(frame, request_header_version(api_key, api_version))
}

/// Decodes a whole request frame: the header, then the body its api key and version
/// name. Trailing bytes after the body are left in `frame` for the caller to judge.
pub fn decode_request(frame: &mut Bytes) -> Result<(RequestHeader, RequestBody), DecodeError> {
    let header = decode_request_header(frame)?;
    let Some(api_key) = ApiKey::from_i16(header.request_api_key) else {
        return Err(DecodeError::UnknownApiKey {
            api_key: header.request_api_key,
            api_version: header.request_api_version,
            correlation_id: header.correlation_id,
        });
    };
    let body = RequestBody::decode(api_key, frame, header.request_api_version)?;
    Ok((header, body))
}

/// Encodes `[size][response header][body]` for a response to `api_key` at `api_version`.
/// Large record slices in `body` stay separate chunks (zero copy).
pub fn encode_response<M: Message>(
    correlation_id: i32,
    api_key: i16,
    api_version: i16,
    body: &M,
) -> Result<Vec<Bytes>, EncodeError> {
    let mut out = Encoder::dropping_absent_fields();
    let size = out.reserve_length_prefix();
    let header = ResponseHeader {
        correlation_id,
        ..ResponseHeader::default()
    };
    header.encode(&mut out, response_header_version(api_key, api_version))?;
    body.encode(&mut out, api_version)?;
    out.patch_length_prefix(size)?;
    Ok(out.finish())
}

/// Encodes `[size][request header][body]` for a request (Weir's CLI client and tests).
pub fn encode_request<M: Message>(
    correlation_id: i32,
    client_id: Option<&str>,
    api_key: i16,
    api_version: i16,
    body: &M,
) -> Result<Vec<Bytes>, EncodeError> {
    let mut out = Encoder::new();
    let size = out.reserve_length_prefix();
    let header = RequestHeader {
        request_api_key: api_key,
        request_api_version: api_version,
        correlation_id,
        client_id: client_id.map(str::to_owned),
        ..RequestHeader::default()
    };
    header.encode(&mut out, request_header_version(api_key, api_version))?;
    body.encode(&mut out, api_version)?;
    out.patch_length_prefix(size)?;
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::super::messages::{
        ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    };
    use super::*;

    fn concatenate(chunks: &[Bytes]) -> Vec<u8> {
        chunks
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .collect()
    }

    #[test]
    fn peek_needs_eight_bytes() {
        assert_eq!(
            peek_request_header(&[0, 18, 0, 3, 0, 0, 0, 7]),
            Some((18, 3, 7))
        );
        assert_eq!(peek_request_header(&[0, 18, 0, 3, 0, 0, 0]), None);
    }

    #[test]
    fn unknown_api_key_keeps_the_correlation_id() {
        let mut frame = Bytes::from_static(&[0x03, 0xe7, 0, 1, 0, 0, 0, 42, 0, 0]);
        assert_eq!(
            decode_request_header(&mut frame),
            Err(DecodeError::UnknownApiKey {
                api_key: 999,
                api_version: 1,
                correlation_id: 42
            })
        );
    }

    #[test]
    fn request_round_trips_through_header_and_body() {
        let body = MetadataRequest {
            topics: None,
            ..MetadataRequest::default()
        };
        for version in [1, 9, 12] {
            let chunks = encode_request(5, Some("weir-cli"), 3, version, &body).expect("encodes");
            let frame = concatenate(&chunks);
            let size =
                usize::try_from(u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]))
                    .expect("fits");
            assert_eq!(size, frame.len() - 4);
            let mut rest = Bytes::from(frame[4..].to_vec());
            let header = decode_request_header(&mut rest).expect("header decodes");
            assert_eq!(header.client_id.as_deref(), Some("weir-cli"));
            assert_eq!(
                (
                    header.request_api_key,
                    header.request_api_version,
                    header.correlation_id
                ),
                (3, version, 5)
            );
            assert_eq!(
                MetadataRequest::decode(&mut rest, version).expect("body decodes"),
                body
            );
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn api_versions_response_uses_header_v0_even_when_flexible() {
        let body = ApiVersionsResponse::default();
        let frame = concatenate(&encode_response(9, 18, 3, &body).expect("encodes"));
        // size, correlation id, then the body's error code (0x0000): no tagged-field byte.
        assert_eq!(&frame[4..8], &9i32.to_be_bytes());
        assert_eq!(&frame[8..10], &[0, 0]);
    }

    #[test]
    fn flexible_response_has_header_tagged_section() {
        let body = MetadataResponse::default();
        let frame = concatenate(&encode_response(9, 3, 12, &body).expect("encodes"));
        // correlation id then an empty tagged-field section (0) before the body.
        assert_eq!(&frame[4..9], &[0, 0, 0, 9, 0]);
    }

    #[test]
    fn api_versions_request_header_v2_keeps_classic_client_id() {
        let body = ApiVersionsRequest::default();
        let frame = concatenate(&encode_request(1, Some("ab"), 18, 3, &body).expect("encodes"));
        // key 18, version 3, correlation 1, client id int16 length 2 "ab", empty tags.
        assert_eq!(
            &frame[4..],
            &[0, 18, 0, 3, 0, 0, 0, 1, 0, 2, b'a', b'b', 0, 1, 1, 0]
        );
    }
}
