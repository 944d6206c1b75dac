//! Reads the SNI from a TLS ClientHello without terminating TLS (RFC 8446 §4.1.2, RFC 6066 §3).
//! Handles a ClientHello split across several TLS records and across reads.

/// Outcome of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// Not enough bytes yet.
    NeedMore,
    /// A complete ClientHello; the host name if it carried one.
    Done(Option<String>),
}

/// Why the bytes are not a usable ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    #[error("not a TLS handshake record")]
    NotTls,
    #[error("first handshake message is not a ClientHello")]
    NotClientHello,
    #[error("ClientHello larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;

/// Looks for a ClientHello in `buf` (bytes from the start of the connection). `max` bounds the
/// raw bytes (record headers included) up to the end of the ClientHello: past it the answer is
/// `TooLarge`, never `NeedMore`, so the caller's buffer is bounded by the parser.
pub fn peek(buf: &[u8], max: usize) -> Result<Peek, SniError> {
    match peek_records(buf, max)? {
        (Peek::NeedMore, _) if buf.len() >= max => Err(SniError::TooLarge(max)),
        (p, _) => Ok(p),
    }
}

/// The decision and how many raw bytes it took.
fn peek_records(buf: &[u8], max: usize) -> Result<(Peek, usize), SniError> {
    // Reassemble the handshake message from consecutive handshake records.
    let mut msg = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return Ok((Peek::NeedMore, buf.len()));
        }
        if rest[0] != RECORD_HANDSHAKE {
            return Err(SniError::NotTls);
        }
        if rest[1] != 3 {
            return Err(SniError::NotTls);
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 {
            return Err(SniError::Malformed("empty handshake record"));
        }
        if len > 16384 + 2048 {
            return Err(SniError::Malformed("record longer than TLS allows"));
        }
        let Some(frag) = rest.get(5..5 + len) else {
            // Incomplete record: still judge the handshake header if it is already visible, so
            // an oversized or wrong message is refused now rather than after buffering it.
            let partial = &rest[5..];
            let seen = [&msg[..], partial].concat();
            check_header(&seen, max)?;
            return Ok((Peek::NeedMore, buf.len()));
        };
        msg.extend_from_slice(frag);
        rest = &rest[5 + len..];
        if let Some(body_len) = check_header(&msg, max)?
            && msg.len() >= 4 + body_len
        {
            let used = buf.len() - rest.len();
            if used > max {
                return Err(SniError::TooLarge(max));
            }
            return parse_client_hello(&msg[4..4 + body_len]).map(|name| (Peek::Done(name), used));
        }
        if msg.len() > max {
            return Err(SniError::TooLarge(max));
        }
    }
}

/// Checks the handshake message header once 4 bytes are there; returns the body length.
fn check_header(msg: &[u8], max: usize) -> Result<Option<usize>, SniError> {
    if msg.is_empty() {
        return Ok(None);
    }
    if msg[0] != HANDSHAKE_CLIENT_HELLO {
        return Err(SniError::NotClientHello);
    }
    if msg.len() < 4 {
        return Ok(None);
    }
    let body_len = (usize::from(msg[1]) << 16) | (usize::from(msg[2]) << 8) | usize::from(msg[3]);
    if body_len + 4 > max {
        return Err(SniError::TooLarge(max));
    }
    Ok(Some(body_len))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SniError> {
        if self.0.len() < n {
            return Err(SniError::Malformed("field runs past the end"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, SniError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, SniError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Result<&'a [u8], SniError> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Result<&'a [u8], SniError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

fn parse_client_hello(body: &[u8]) -> Result<Option<String>, SniError> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(SniError::Malformed("cipher suites"));
    }
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Ok(None); // no extensions at all: no SNI
    }
    let mut exts = Reader(r.vec16()?);
    let mut sni = None;
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        if ty == EXT_SERVER_NAME {
            if sni.is_some() {
                return Err(SniError::Malformed("server_name extension twice"));
            }
            sni = Some(parse_server_name(data)?);
        }
    }
    Ok(sni.flatten())
}

fn parse_server_name(data: &[u8]) -> Result<Option<String>, SniError> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16()?);
    if !r.0.is_empty() {
        return Err(SniError::Malformed("bytes after server_name list"));
    }
    while !list.0.is_empty() {
        let ty = list.u8()?;
        let name = list.vec16()?;
        if ty == NAME_TYPE_HOST {
            if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
                return Err(SniError::Malformed("host_name is not printable ASCII"));
            }
            let s = std::str::from_utf8(name).map_err(|_| SniError::Malformed("host_name"))?;
            return Ok(Some(s.to_ascii_lowercase()));
        }
    }
    Ok(None)
}

/// A fatal TLS alert record (TLS 1.2 framing, which every client parses before the handshake).
pub fn alert(description: u8) -> [u8; 7] {
    [21, 3, 3, 0, 2, 2, description]
}

/// `unrecognized_name` (RFC 6066): the SNI names no service we know.
pub const ALERT_UNRECOGNIZED_NAME: u8 = 112;
/// `decode_error`: the ClientHello could not be parsed.
pub const ALERT_DECODE_ERROR: u8 = 50;
/// `internal_error`: no route could be opened.
pub const ALERT_INTERNAL_ERROR: u8 = 80;

#[cfg(test)]
mod tests;
