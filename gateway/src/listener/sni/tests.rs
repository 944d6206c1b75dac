use super::*;

/// Builds a ClientHello record with the given extensions block (None: no extensions field).
pub(crate) fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut list = vec![NAME_TYPE_HOST];
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name.as_bytes());
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend(list);
        exts.extend_from_slice(&EXT_SERVER_NAME.to_be_bytes());
        exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
        exts.extend(data);
    }
    // An unrelated extension (supported_versions) to make sure we skip others.
    exts.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    record(&hs)
}

fn record(frag: &[u8]) -> Vec<u8> {
    let mut r = vec![RECORD_HANDSHAKE, 3, 1];
    r.extend_from_slice(&(frag.len() as u16).to_be_bytes());
    r.extend_from_slice(frag);
    r
}

#[test]
fn finds_sni() {
    let ch = client_hello(Some("Payments.prod.svc.clusterset.local"));
    assert_eq!(peek(&ch, 16384), Ok(Peek::Done(Some("payments.prod.svc.clusterset.local".into()))));
}

#[test]
fn no_sni_is_done_without_name() {
    assert_eq!(peek(&client_hello(None), 16384), Ok(Peek::Done(None)));
}

#[test]
fn every_truncation_needs_more() {
    let ch = client_hello(Some("a.b"));
    for cut in 0..ch.len() {
        assert_eq!(peek(&ch[..cut], 16384), Ok(Peek::NeedMore), "cut at {cut}");
    }
}

#[test]
fn split_across_records() {
    let ch = client_hello(Some("db.prod"));
    let hs = &ch[5..];
    let (a, b) = hs.split_at(10);
    let two = [record(a), record(b)].concat();
    assert_eq!(peek(&two, 16384), Ok(Peek::Done(Some("db.prod".into()))));
}

#[test]
fn rejects_non_tls_and_oversize() {
    assert_eq!(peek(b"GET / HTTP/1.1\r\n", 16384), Err(SniError::NotTls));
    let ch = client_hello(Some(&"a".repeat(600)));
    assert_eq!(peek(&ch, 512), Err(SniError::TooLarge(512)));
    // Refused as soon as the declared length is visible, before the record is complete.
    assert_eq!(peek(&ch[..9], 512), Err(SniError::TooLarge(512)));
    let mut not_hello = client_hello(Some("a.b"));
    not_hello[5] = 2;
    assert_eq!(peek(&not_hello, 16384), Err(SniError::NotClientHello));
}

#[test]
fn rejects_malformed_lengths() {
    let mut ch = client_hello(Some("a.b"));
    // Corrupt the extensions length to run past the message.
    let ext_len_at = 5 + 4 + 2 + 32 + 1 + 4 + 2;
    ch[ext_len_at] = 0xff;
    assert!(matches!(peek(&ch, 16384), Err(SniError::Malformed(_))));
    let mut ch = client_hello(Some("a b"));
    let n = ch.len();
    ch.truncate(n); // name with a space is not printable-without-space ASCII
    assert!(matches!(peek(&ch, 16384), Err(SniError::Malformed(_))));
}

#[test]
fn raw_bytes_past_max_are_too_large_not_need_more() {
    // A record header announcing 16 KiB and a message header that fits: still incomplete, but
    // already past the byte limit.
    let mut buf = vec![22, 3, 1, 0x40, 0x00, 1, 0, 0, 0x64];
    buf.resize(600, 0);
    assert_eq!(peek(&buf, 512), Err(SniError::TooLarge(512)));
    assert_eq!(peek(&buf[..300], 512), Ok(Peek::NeedMore));
    // A ClientHello that fits as a message but not with its record headers.
    let ch = client_hello(Some("db.prod"));
    let hs = &ch[5..];
    let split: Vec<u8> = hs.chunks(8).flat_map(record).collect();
    assert!(peek(&split, ch.len() + 8).is_err(), "record headers count against the limit");
    assert_eq!(peek(&split, split.len()), Ok(Peek::Done(Some("db.prod".into()))));
}
