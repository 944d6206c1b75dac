//! Relays bytes between a TCP connection and a tunnel stream, both ways at once.
//!
//! TCP FIN ⇄ stream FIN (half-close), TCP RST ⇄ stream RESET_STREAM/STOP_SENDING. When one
//! direction fails abnormally, the other is torn down too, so neither side hangs.
//!
//! A direction holds no read buffer while its connection is idle: it waits for readability
//! first, then reads into a buffer sized by what recent reads needed ([`ReadSize`]: 16 KiB,
//! doubling while reads fill it up to 256 KiB, halving when they use under a quarter). Growth
//! past the minimum is granted from one [`BufferBudget`] per gateway, so bulk transfers cannot
//! take more than `limits.relay_buffer_budget` between them.

use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

use super::codes;
use super::stream::{TunnelRecv, TunnelSend};

/// Smallest read buffer: what a connection gets when it becomes readable.
const MIN_READ: usize = 16 * 1024;
/// Largest read buffer, reached while reads keep filling it (bulk transfer).
const MAX_READ: usize = 256 * 1024;

/// Read-buffer bytes above [`MIN_READ`] granted to all relays of a gateway at once.
#[derive(Debug)]
pub struct BufferBudget {
    used: AtomicUsize,
    limit: usize,
}

impl BufferBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        BufferBudget { used: AtomicUsize::new(0), limit }
    }

    /// Bytes granted now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(n).filter(|t| *t <= self.limit))
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// How much one relay direction reads at a time: doubles while reads fill the buffer (and the
/// budget allows), halves when a read uses under a quarter of it. Gives its grant back when
/// dropped.
#[derive(Debug)]
struct ReadSize<'a> {
    size: usize,
    budget: &'a BufferBudget,
}

impl<'a> ReadSize<'a> {
    fn new(budget: &'a BufferBudget) -> Self {
        ReadSize { size: MIN_READ, budget }
    }

    /// After a read of `n` bytes into a buffer of the current size.
    fn record(&mut self, n: usize) {
        if n >= self.size && self.size < MAX_READ {
            let next = (self.size * 2).min(MAX_READ);
            if self.budget.try_take(next - self.size) {
                self.size = next;
            }
        } else if n < self.size / 4 && self.size > MIN_READ {
            let next = (self.size / 2).max(MIN_READ);
            self.budget.give(self.size - next);
            self.size = next;
        }
    }
}

impl Drop for ReadSize<'_> {
    fn drop(&mut self) {
        self.budget.give(self.size - MIN_READ);
    }
}

/// Waits until `r` is readable, holding no buffer meanwhile, then reads once into a fresh buffer
/// of `size` bytes (empty at EOF).
async fn read_some(r: &mut OwnedReadHalf, size: usize) -> std::io::Result<BytesMut> {
    loop {
        r.readable().await?;
        let mut buf = BytesMut::with_capacity(size);
        match r.try_read_buf(&mut buf) {
            Ok(_) => return Ok(buf),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}
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
pub async fn tcp_stream(
    tcp: TcpStream,
    send: TunnelSend,
    recv: TunnelRecv,
    budget: &BufferBudget,
    shutdown: &CancellationToken,
) -> Relayed {
    let (r, w) = tcp.into_split();
    let abort = shutdown.child_token();
    let (up, down) = tokio::join!(tcp_to_stream(r, send, budget, &abort), stream_to_tcp(recv, w, &abort));
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

async fn tcp_to_stream(
    mut r: OwnedReadHalf,
    mut send: TunnelSend,
    budget: &BufferBudget,
    abort: &CancellationToken,
) -> Half<OwnedReadHalf> {
    let mut n = 0u64;
    let mut size = ReadSize::new(budget);
    loop {
        let read = tokio::select! {
            biased;
            _ = abort.cancelled() => {
                send.reset(codes::CANCELLED);
                return Ok((End::Reset(n), r));
            }
            read = read_some(&mut r, size.size) => read,
        };
        match read {
            Ok(buf) if buf.is_empty() => {
                send.finish();
                return Ok((End::Clean(n), r));
            }
            Ok(buf) => {
                let k = buf.len();
                n += k as u64;
                size.record(k);
                let chunk = buf.freeze();
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

/// Relays between two TCP connections (local delivery on the egress side), with the same
/// half-close, reset and buffer rules as [`tcp_stream`].
pub async fn tcp_tcp(a: TcpStream, b: TcpStream, budget: &BufferBudget, shutdown: &CancellationToken) -> Relayed {
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let abort = shutdown.child_token();
    let (ab, ba) = tokio::join!(tcp_to_tcp(ar, bw, budget, &abort), tcp_to_tcp(br, aw, budget, &abort));
    let (Ok((ab, ar, bw)), Ok((ba, br, aw))) = (ab, ba);
    let reset = matches!((&ab, &ba), (End::Reset(_), _) | (_, End::Reset(_)));
    if reset {
        // Both sides see a reset, not an orderly close.
        for tcp in [ar.reunite(aw), br.reunite(bw)].into_iter().flatten() {
            let _ = tcp.set_zero_linger();
        }
    }
    Relayed { tcp_to_stream: bytes_of(ab), stream_to_tcp: bytes_of(ba), reset }
}

type Pair = Result<(End, OwnedReadHalf, OwnedWriteHalf), std::convert::Infallible>;

async fn tcp_to_tcp(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    budget: &BufferBudget,
    abort: &CancellationToken,
) -> Pair {
    let mut n = 0u64;
    let mut size = ReadSize::new(budget);
    loop {
        let read = tokio::select! {
            biased;
            _ = abort.cancelled() => return Ok((End::Reset(n), r, w)),
            read = read_some(&mut r, size.size) => read,
        };
        let buf = match read {
            Ok(buf) if buf.is_empty() => {
                let _ = w.shutdown().await;
                return Ok((End::Clean(n), r, w));
            }
            Ok(buf) => buf,
            Err(_) => {
                abort.cancel();
                return Ok((End::Reset(n), r, w));
            }
        };
        n += buf.len() as u64;
        size.record(buf.len());
        let wrote = tokio::select! {
            biased;
            _ = abort.cancelled() => Err(()),
            r = w.write_all(&buf) => r.map_err(|_| ()),
        };
        if wrote.is_err() {
            abort.cancel();
            return Ok((End::Reset(n), r, w));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_size_grows_while_reads_fill_it_and_shrinks_when_they_do_not() {
        let budget = BufferBudget::new(usize::MAX);
        let mut s = ReadSize::new(&budget);
        assert_eq!(s.size, MIN_READ);
        let mut sizes = Vec::new();
        for _ in 0..6 {
            let full = s.size;
            s.record(full);
            sizes.push(s.size / 1024);
        }
        assert_eq!(sizes, [32, 64, 128, 256, 256, 256]);
        assert_eq!(budget.used(), MAX_READ - MIN_READ);
        // A read over a quarter keeps the size; smaller ones halve it, down to the minimum.
        s.record(MAX_READ / 2);
        assert_eq!(s.size, MAX_READ);
        for want in [128, 64, 32, 16, 16] {
            s.record(100);
            assert_eq!(s.size / 1024, want);
        }
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn growth_stops_at_the_budget_and_grants_come_back_on_drop() {
        let budget = BufferBudget::new(48 * 1024);
        let mut a = ReadSize::new(&budget);
        let mut b = ReadSize::new(&budget);
        a.record(MIN_READ); // 16 -> 32 KiB: 16 KiB granted
        a.record(a.size); // 32 -> 64 KiB: 32 KiB more, 48 KiB in all
        assert_eq!((a.size / 1024, budget.used() / 1024), (64, 48));
        b.record(MIN_READ); // no budget left: stays at the minimum
        assert_eq!(b.size, MIN_READ);
        drop(a);
        assert_eq!(budget.used(), 0);
        b.record(MIN_READ);
        assert_eq!(b.size / 1024, 32);
    }
}
