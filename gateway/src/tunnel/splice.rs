//! Relays bytes between a TCP connection and a tunnel stream, both ways at once.
//!
//! TCP FIN ⇄ stream FIN (half-close), TCP RST ⇄ stream RESET_STREAM/STOP_SENDING. When one
//! direction fails abnormally, the other is torn down too, so neither side hangs.

use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

use super::codes;
use super::stream::{TunnelRecv, TunnelSend};

/// Read size per syscall / QUIC chunk.
const CHUNK: usize = 256 * 1024;
/// QUIC delivers data frame by frame (about one datagram each); gathering up to this many per
/// read and writing them with one `writev` saves a syscall per frame on the TCP side.
const GATHER: usize = 32;

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Relayed {
    /// Bytes read from TCP and sent on the stream.
    pub tcp_to_stream: u64,
    /// Bytes received on the stream and written to TCP.
    pub stream_to_tcp: u64,
    /// Whether it ended with a reset in either direction (or a forced shutdown).
    pub reset: bool,
}

enum End {
    Clean(u64),
    Reset(u64),
}

/// Relays until both directions finish. `shutdown` aborts the relay (drain deadline passed).
pub async fn tcp_stream(tcp: TcpStream, send: TunnelSend, recv: TunnelRecv, shutdown: &CancellationToken) -> Relayed {
    let (r, w) = tcp.into_split();
    let abort = shutdown.child_token();
    let (up, down) = tokio::join!(tcp_to_stream(r, send, &abort), stream_to_tcp(recv, w, &abort));
    let (up, down, reset) = match (up, down) {
        (Ok((End::Clean(a), r)), Ok((End::Clean(b), w))) => {
            drop((r, w));
            (a, b, false)
        }
        (Ok((ua, r)), Ok((db, w))) => {
            // Make the client (or endpoint) see a reset, not an orderly close.
            if let Ok(tcp) = r.reunite(w) {
                let _ = tcp.set_zero_linger();
            }
            (bytes_of(ua), bytes_of(db), true)
        }
        _ => unreachable!("both halves return Ok"),
    };
    Relayed { tcp_to_stream: up, stream_to_tcp: down, reset }
}

fn bytes_of(e: End) -> u64 {
    match e {
        End::Clean(n) | End::Reset(n) => n,
    }
}

type Half<T> = Result<(End, T), std::convert::Infallible>;

async fn tcp_to_stream(mut r: OwnedReadHalf, mut send: TunnelSend, abort: &CancellationToken) -> Half<OwnedReadHalf> {
    let mut n = 0u64;
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        if buf.capacity() < CHUNK / 4 {
            buf.reserve(CHUNK);
        }
        let read = tokio::select! {
            biased;
            _ = abort.cancelled() => {
                send.reset(codes::CANCELLED);
                return Ok((End::Reset(n), r));
            }
            read = r.read_buf(&mut buf) => read,
        };
        match read {
            Ok(0) => {
                send.finish();
                return Ok((End::Clean(n), r));
            }
            Ok(k) => {
                n += k as u64;
                let chunk = buf.split().freeze();
                let sent = tokio::select! {
                    biased;
                    _ = abort.cancelled() => Err(()),
                    s = send.write_chunk(chunk) => s.map_err(|_| ()),
                };
                if sent.is_err() {
                    // The peer stopped reading (or the connection died): tear down both ways.
                    send.reset(codes::CANCELLED);
                    abort.cancel();
                    return Ok((End::Reset(n), r));
                }
            }
            Err(_) => {
                send.reset(codes::TCP_RESET);
                abort.cancel();
                return Ok((End::Reset(n), r));
            }
        }
    }
}

async fn stream_to_tcp(mut recv: TunnelRecv, mut w: OwnedWriteHalf, abort: &CancellationToken) -> Half<OwnedWriteHalf> {
    let mut n = 0u64;
    let mut bufs: [Bytes; GATHER] = std::array::from_fn(|_| Bytes::new());
    loop {
        let got = tokio::select! {
            biased;
            _ = abort.cancelled() => {
                recv.stop(codes::CANCELLED);
                return Ok((End::Reset(n), w));
            }
            c = recv.read_chunks(&mut bufs) => c,
        };
        match got {
            Ok(Some(k)) => {
                n += bufs[..k].iter().map(|b| b.len() as u64).sum::<u64>();
                let wrote = tokio::select! {
                    biased;
                    _ = abort.cancelled() => Err(()),
                    r = write_all_vectored(&mut w, &mut bufs[..k]) => r.map_err(|_| ()),
                };
                if wrote.is_err() {
                    recv.stop(codes::TCP_RESET);
                    abort.cancel();
                    return Ok((End::Reset(n), w));
                }
            }
            Ok(None) => {
                let _ = w.shutdown().await;
                return Ok((End::Clean(n), w));
            }
            Err(e) => {
                if !e.reset {
                    tracing::debug!(error = %e, "tunnel stream failed");
                }
                abort.cancel();
                return Ok((End::Reset(n), w));
            }
        }
    }
}

/// Writes every buffer, in order, with as few `writev` calls as the socket allows.
async fn write_all_vectored(w: &mut OwnedWriteHalf, bufs: &mut [Bytes]) -> std::io::Result<()> {
    let mut first = 0;
    while first < bufs.len() {
        let slices: [IoSlice<'_>; GATHER] =
            std::array::from_fn(|i| IoSlice::new(bufs.get(first + i).map_or(&[][..], |b| &b[..])));
        let mut written = w.write_vectored(&slices[..bufs.len() - first]).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let len = bufs[first].len();
            if written >= len {
                written -= len;
                first += 1;
            } else {
                bufs[first].advance(written);
                written = 0;
            }
        }
        // Skip empty buffers so the loop ends even if the last ones carried no bytes.
        while first < bufs.len() && bufs[first].is_empty() {
            first += 1;
        }
    }
    Ok(())
}

/// Relays between two TCP connections (local delivery on the egress side).
pub async fn tcp_tcp(mut a: TcpStream, mut b: TcpStream, shutdown: &CancellationToken) -> Relayed {
    let copied = tokio::select! {
        _ = shutdown.cancelled() => None,
        r = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, CHUNK, CHUNK) => r.ok(),
    };
    match copied {
        Some((ab, ba)) => Relayed { tcp_to_stream: ab, stream_to_tcp: ba, reset: false },
        None => {
            let _ = a.set_zero_linger();
            let _ = b.set_zero_linger();
            Relayed { reset: true, ..Relayed::default() }
        }
    }
}
