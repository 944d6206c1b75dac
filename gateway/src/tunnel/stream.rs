//! One tunnel stream and one tunnel connection, whichever transport carries them: a QUIC
//! bidirectional stream, or an HTTP/2 stream on TLS over TCP (see [`super::tcp`]). The stream
//! protocol on top (header, status before payload, FIN, reset) is the same on both, so route
//! choice, connect-retry and relaying do not care which one it is.

use std::future::poll_fn;
use std::time::Duration;

use bytes::{Buf, Bytes};
use quinn::VarInt;

use super::fallback::Transport;
use super::tcp::TcpConn;

/// Why a stream operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct StreamError {
    /// The peer reset the stream (as opposed to the connection failing).
    pub reset: bool,
    pub reason: String,
}

impl StreamError {
    pub(super) fn other(reason: impl ToString) -> Self {
        StreamError { reset: false, reason: reason.to_string() }
    }
}

pub(super) fn h2_error(e: h2::Error) -> StreamError {
    StreamError { reset: e.is_reset(), reason: e.to_string() }
}

/// The HTTP/2 error code that stands for a QUIC application error code (the same number).
fn reason(code: VarInt) -> h2::Reason {
    h2::Reason::from(u32::try_from(code.into_inner()).unwrap_or(u32::MAX))
}

/// The sending half of a tunnel stream.
pub enum TunnelSend {
    Quic(quinn::SendStream),
    H2(h2::SendStream<Bytes>),
}

impl TunnelSend {
    /// Sends `chunk`, waiting for flow-control credit.
    pub async fn write_chunk(&mut self, mut chunk: Bytes) -> Result<(), StreamError> {
        match self {
            TunnelSend::Quic(s) => s.write_chunk(chunk).await.map_err(StreamError::other),
            TunnelSend::H2(s) => {
                while !chunk.is_empty() {
                    s.reserve_capacity(chunk.len());
                    while s.capacity() == 0 {
                        match poll_fn(|cx| s.poll_capacity(cx)).await {
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Err(h2_error(e)),
                            None => return Err(StreamError::other("stream closed")),
                        }
                    }
                    let n = s.capacity().min(chunk.len());
                    s.send_data(chunk.split_to(n), false).map_err(h2_error)?;
                }
                Ok(())
            }
        }
    }

    /// Sends every chunk in order.
    pub async fn write_all_chunks(&mut self, chunks: &mut [Bytes]) -> Result<(), StreamError> {
        match self {
            TunnelSend::Quic(s) => s.write_all_chunks(chunks).await.map_err(StreamError::other),
            TunnelSend::H2(_) => {
                for c in chunks.iter_mut() {
                    let c = std::mem::take(c);
                    if !c.is_empty() {
                        self.write_chunk(c).await?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Ends the stream in order (FIN / END_STREAM).
    pub fn finish(&mut self) {
        match self {
            TunnelSend::Quic(s) => {
                let _ = s.finish();
            }
            TunnelSend::H2(s) => {
                let _ = s.send_data(Bytes::new(), true);
            }
        }
    }

    /// Abandons the stream with `code` (RESET_STREAM / RST_STREAM).
    pub fn reset(&mut self, code: VarInt) {
        match self {
            TunnelSend::Quic(s) => {
                let _ = s.reset(code);
            }
            TunnelSend::H2(s) => s.send_reset(reason(code)),
        }
    }

    /// Which transport carries it.
    pub fn transport(&self) -> Transport {
        match self {
            TunnelSend::Quic(_) => Transport::Quic,
            TunnelSend::H2(_) => Transport::Tcp,
        }
    }

    /// The stream's id, for spans.
    pub fn id(&self) -> String {
        match self {
            TunnelSend::Quic(s) => s.id().to_string(),
            TunnelSend::H2(s) => format!("h2:{}", s.stream_id().as_u32()),
        }
    }
}

/// The receiving half of a tunnel stream.
pub enum TunnelRecv {
    Quic(quinn::RecvStream),
    H2(H2Recv),
}

/// An HTTP/2 stream's body, with what a partial read left over. On the dialling side the
/// response head has not necessarily arrived yet: the first read waits for it.
pub struct H2Recv {
    response: Option<h2::client::ResponseFuture>,
    body: Option<h2::RecvStream>,
    leftover: Bytes,
}

impl H2Recv {
    /// The body of an accepted request (the receiving gateway).
    pub fn accepted(body: h2::RecvStream) -> Self {
        H2Recv { response: None, body: Some(body), leftover: Bytes::new() }
    }

    /// The body of the response to a request just sent (the dialling gateway).
    pub fn responding(response: h2::client::ResponseFuture) -> Self {
        H2Recv { response: Some(response), body: None, leftover: Bytes::new() }
    }

    async fn body(&mut self) -> Result<&mut h2::RecvStream, StreamError> {
        if let Some(r) = self.response.take() {
            let resp = r.await.map_err(h2_error)?;
            if resp.status() != http::StatusCode::OK {
                return Err(StreamError::other(format!("peer answered HTTP {}", resp.status())));
            }
            self.body = Some(resp.into_body());
        }
        self.body.as_mut().ok_or_else(|| StreamError::other("stream already closed"))
    }

    /// The next chunk, `None` at the end of the stream. Credit is returned as data is taken,
    /// so at most one window per stream is buffered.
    async fn next(&mut self) -> Result<Option<Bytes>, StreamError> {
        if !self.leftover.is_empty() {
            return Ok(Some(std::mem::take(&mut self.leftover)));
        }
        let body = self.body().await?;
        loop {
            match body.data().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(h2_error(e)),
                Some(Ok(b)) => {
                    let _ = body.flow_control().release_capacity(b.len());
                    if !b.is_empty() {
                        return Ok(Some(b));
                    }
                }
            }
        }
    }
}

impl TunnelRecv {
    /// Reads up to `bufs.len()` chunks; `None` at the end of the stream.
    pub async fn read_chunks(&mut self, bufs: &mut [Bytes]) -> Result<Option<usize>, StreamError> {
        match self {
            TunnelRecv::Quic(r) => r
                .read_chunks(bufs)
                .await
                .map_err(|e| StreamError { reset: matches!(e, quinn::ReadError::Reset(_)), reason: e.to_string() }),
            TunnelRecv::H2(r) => Ok(r.next().await?.map(|b| {
                bufs[0] = b;
                1
            })),
        }
    }

    /// Fills `buf` exactly (the stream header and status).
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StreamError> {
        match self {
            TunnelRecv::Quic(r) => r.read_exact(buf).await.map_err(StreamError::other),
            TunnelRecv::H2(r) => {
                let mut filled = 0;
                while filled < buf.len() {
                    let Some(mut b) = r.next().await? else {
                        return Err(StreamError::other("stream ended early"));
                    };
                    let n = b.len().min(buf.len() - filled);
                    buf[filled..filled + n].copy_from_slice(&b[..n]);
                    b.advance(n);
                    r.leftover = b;
                    filled += n;
                }
                Ok(())
            }
        }
    }

    /// Tells the sender to stop (STOP_SENDING). HTTP/2 has no such frame: the caller resets
    /// the sending half too, which ends the whole stream.
    pub fn stop(&mut self, code: VarInt) {
        match self {
            TunnelRecv::Quic(r) => {
                let _ = r.stop(code);
            }
            TunnelRecv::H2(r) => {
                r.response = None;
                r.body = None;
            }
        }
    }
}

/// A pooled connection to a peer gateway.
#[derive(Clone)]
pub enum Conn {
    Quic(quinn::Connection),
    Tcp(TcpConn),
}

impl Conn {
    /// Which transport it is.
    pub fn transport(&self) -> Transport {
        match self {
            Conn::Quic(_) => Transport::Quic,
            Conn::Tcp(_) => Transport::Tcp,
        }
    }

    /// Why it closed, if it did (`Some("")` when closed locally).
    pub fn closed(&self) -> Option<String> {
        match self {
            Conn::Quic(c) => c.close_reason().map(|r| match r {
                quinn::ConnectionError::LocallyClosed => String::new(),
                r => r.to_string(),
            }),
            Conn::Tcp(c) => c.closed(),
        }
    }

    /// Closes it (streams in flight end).
    pub fn close(&self, code: VarInt, why: &[u8]) {
        match self {
            Conn::Quic(c) => c.close(code, why),
            Conn::Tcp(c) => c.close(),
        }
    }

    /// Identifies the connection while it lives.
    pub fn stable_id(&self) -> usize {
        match self {
            Conn::Quic(c) => c.stable_id(),
            Conn::Tcp(c) => c.id(),
        }
    }

    /// The transport's own RTT estimate (QUIC only; TCP paths are timed by probes alone).
    pub fn rtt(&self) -> Option<Duration> {
        match self {
            Conn::Quic(c) => Some(c.rtt()),
            Conn::Tcp(_) => None,
        }
    }

    /// Datagrams received on it so far (QUIC only): unchanged across a failed open means the
    /// peer sent nothing at all meanwhile.
    pub fn rx_datagrams(&self) -> Option<u64> {
        match self {
            Conn::Quic(c) => Some(c.stats().udp_rx.datagrams),
            Conn::Tcp(_) => None,
        }
    }

    /// Opens a bidirectional stream.
    pub async fn open_bi(&self) -> Result<(TunnelSend, TunnelRecv), StreamError> {
        match self {
            Conn::Quic(c) => {
                let (s, r) = c.open_bi().await.map_err(StreamError::other)?;
                Ok((TunnelSend::Quic(s), TunnelRecv::Quic(r)))
            }
            Conn::Tcp(c) => c.open_bi().await,
        }
    }
}
