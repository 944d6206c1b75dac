//! The gateway-to-gateway tunnel: QUIC with mutual TLS, one bidirectional stream per
//! forwarded TCP connection, or the same streams over TLS on TCP when a path drops UDP (wire
//! format in docs/protocol.md).

pub mod admission;
pub mod client;
pub mod fallback;
pub mod probe;
pub mod proof;
pub mod server;
pub mod splice;
pub mod stream;
pub mod tcp;

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::{IdleTimeout, TransportConfig, VarInt};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Limits;

/// Application error codes on streams and connections.
pub mod codes {
    use quinn::VarInt;
    /// The TCP side was reset.
    pub const TCP_RESET: VarInt = VarInt::from_u32(1);
    /// The relay was cancelled (timeout, shutdown, or the other direction failed).
    pub const CANCELLED: VarInt = VarInt::from_u32(2);
    /// The stream header could not be decoded.
    pub const BAD_HEADER: VarInt = VarInt::from_u32(3);
    /// Connection closed because the gateway is shutting down.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(4);
    /// The peer's certificate did not identify a gateway.
    pub const UNAUTHENTICATED: VarInt = VarInt::from_u32(5);
}

/// QUIC transport settings shared by both ends, from the configured limits.
pub fn transport(limits: &Limits) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(limits.max_streams_per_peer));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    // Config bounds idle_timeout to 1h, far under QUIC's 2^62 ms; saturate rather than panic all
    // the same.
    let idle = IdleTimeout::try_from(limits.idle_timeout).unwrap_or(IdleTimeout::from(VarInt::MAX));
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval((!limits.keep_alive.is_zero()).then_some(limits.keep_alive));
    t.stream_receive_window(VarInt::from_u32(limits.stream_window));
    t.receive_window(VarInt::from_u32(limits.connection_window));
    t.send_window(u64::from(limits.connection_window));
    Arc::new(t)
}

/// Bytes buffered for each not-yet-admitted attempt after its first datagram (the rest of a
/// ClientHello that spans two Initials, which a post-quantum key share does).
const INCOMING_BUFFER: u64 = 16 * 1024;
/// Bytes buffered for all not-yet-admitted attempts together.
const INCOMING_BUFFER_TOTAL: u64 = 4 * 1024 * 1024;

/// Bounds the state quinn keeps for connection attempts before the accept loop decides on them
/// (it decides at once, so these only matter when it falls behind): at most four times
/// `max_handshakes` attempts (past it quinn refuses new ones with a small close packet) and
/// [`INCOMING_BUFFER`] / [`INCOMING_BUFFER_TOTAL`] bytes of their later datagrams. quinn's
/// defaults (65,536 attempts, 100 MiB) are sized for a server that takes its time.
pub fn bound_incoming(server: &mut quinn::ServerConfig, limits: &Limits) {
    server
        .max_incoming((limits.max_handshakes * 4).clamp(256, 65_536))
        .incoming_buffer_size(INCOMING_BUFFER)
        .incoming_buffer_size_total(INCOMING_BUFFER_TOTAL);
}

/// Binds the tunnel's UDP socket with the configured buffer sizes. The kernel caps them at
/// `net.core.{r,w}mem_max`; what it granted is returned so the caller can warn.
pub fn bind_udp(addr: SocketAddr, recv: usize, send: usize) -> std::io::Result<(std::net::UdpSocket, usize, usize)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Accept IPv4 peers too on a `[::]` listener.
        let _ = socket.set_only_v6(false);
    }
    socket.set_recv_buffer_size(recv)?;
    socket.set_send_buffer_size(send)?;
    socket.bind(&addr.into())?;
    // Linux reports double the requested size (it counts bookkeeping overhead).
    let got_recv = socket.recv_buffer_size()? / 2;
    let got_send = socket.send_buffer_size()? / 2;
    Ok((socket.into(), got_recv, got_send))
}
