//! The tunnel stream header (`skybridge_api::header`): must not panic, and
//! - `OpenRequest::decode`: on `Ok(Some((req, used)))`, `used` is 3 + the body length from the
//!   prefix, fits in the input and respects `max_body`; `req` re-encodes to at most `used` bytes
//!   (unknown optional fields are dropped) and decodes back to an equal request, taking exactly
//!   the encoded length; every strict prefix of the encoding decodes as "need more";
//! - `Ok(None)` only when the input really is shorter than the header;
//! - a decided answer does not change when payload bytes follow;
//! - `OpenResponse::decode_prefix`: a decoded status and UTF-8 reason re-encode to the same bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use skybridge_api::header::{OpenRequest, OpenResponse};

fuzz_target!(|data: &[u8]| {
    request(data, 65535);
    request(data, 256);
    response(data);
});

fn request(data: &[u8], max_body: usize) {
    let got = OpenRequest::decode(data, max_body);
    match &got {
        Ok(Some((req, used))) => {
            let body = usize::from(u16::from_be_bytes([data[1], data[2]]));
            assert_eq!(*used, 3 + body, "used does not match the prefix");
            assert!(*used <= data.len(), "used {used} > input {}", data.len());
            assert!(body <= max_body, "body {body} > max_body {max_body}");

            let mut out = BytesMut::new();
            req.encode(&mut out);
            assert!(out.len() <= *used, "re-encoding grew: {} > {used}", out.len());
            let again = OpenRequest::decode(&out, 65535);
            assert_eq!(again, Ok(Some((req.clone(), out.len()))), "round trip failed for {req:?}");
            for cut in [0, 1, 2, 3, out.len() / 2, out.len() - 1] {
                assert_eq!(OpenRequest::decode(&out[..cut], 65535), Ok(None), "encoded prefix {cut}");
            }
        }
        Ok(None) => {
            let short = data.len() < 3 || data.len() < 3 + usize::from(u16::from_be_bytes([data[1], data[2]]));
            assert!(short, "Ok(None) for a complete header of {} bytes", data.len());
        }
        Err(_) => {}
    }
    if got != Ok(None) {
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"\x01\x00\x00GET / HTTP/1.1\r\n");
        assert_eq!(OpenRequest::decode(&longer, max_body), got, "payload after the header changed the answer");
    }
}

fn response(data: &[u8]) {
    let &[a, b, c, ..] = data else { return };
    let Ok((status, len)) = OpenResponse::decode_prefix([a, b, c]) else { return };
    assert_eq!(status as u8, b);
    assert_eq!(len, usize::from(c));
    let Some(reason) = data.get(3..3 + len).and_then(|r| std::str::from_utf8(r).ok()) else { return };
    let mut out = BytesMut::new();
    OpenResponse { status, reason: reason.to_owned() }.encode(&mut out);
    assert_eq!(&out[..], &data[..3 + len], "response re-encoding differs");
}
