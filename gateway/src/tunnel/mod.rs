//! The gateway-to-gateway tunnel: QUIC with mutual TLS, one bidirectional stream per
//! forwarded TCP connection (wire format in docs/protocol.md).

pub mod client;
pub mod probe;
pub mod server;
pub mod splice;

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
    // Validated to be well under QUIC's 2^62 ms limit.
    t.max_idle_timeout(Some(IdleTimeout::try_from(limits.idle_timeout).expect("idle timeout in range")));
    t.keep_alive_interval((!limits.keep_alive.is_zero()).then_some(limits.keep_alive));
    t.stream_receive_window(VarInt::from_u32(limits.stream_window));
    t.receive_window(VarInt::from_u32(limits.connection_window));
    t.send_window(u64::from(limits.connection_window));
    Arc::new(t)
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
