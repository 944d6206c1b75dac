//! The tunnel over TLS on TCP, past the TLS layer: arbitrary bytes after the HTTP/2 client
//! preface, served the way `gateway::tunnel::tcp` serves a peer (the same HTTP/2 limits, the
//! same request check, the same stream-header reader over an HTTP/2 body). Must not panic, must
//! end (the input is finite: every stream and the connection end at EOF), and a header it
//! accepts re-encodes and decodes to an equal request within the limit.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use skybridge_api::header::OpenRequest;
use skybridge_gateway::tunnel::server::read_header;
use skybridge_gateway::tunnel::stream::{H2Recv, TunnelRecv};
use skybridge_gateway::tunnel::tcp::is_stream_request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const MAX_HEADER: usize = 2048;

static RT: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());

fuzz_target!(|data: &[u8]| {
    let ended = RT.block_on(async { tokio::time::timeout(Duration::from_secs(10), run(data)).await });
    assert!(ended.is_ok(), "serving a finite input did not end");
});

async fn run(data: &[u8]) {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    client.write_all(PREFACE).await.unwrap();
    client.write_all(data).await.unwrap();
    client.shutdown().await.unwrap();
    let drain = async move {
        let mut sink = vec![0u8; 65536];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let serve = async move {
        let Ok(mut conn) = h2::server::Builder::new()
            .initial_window_size(65_535)
            .max_concurrent_streams(8)
            .max_frame_size(64 * 1024)
            .max_header_list_size(16 * 1024)
            .handshake::<_, Bytes>(server)
            .await
        else {
            return;
        };
        let mut streams = tokio::task::JoinSet::new();
        while let Some(Ok((req, mut respond))) = conn.accept().await {
            if !is_stream_request(&req) {
                let not_found = http::Response::builder().status(404).body(()).unwrap();
                let _ = respond.send_response(not_found, true);
                continue;
            }
            let Ok(_send) = respond.send_response(http::Response::new(()), false) else { continue };
            let mut recv = TunnelRecv::H2(H2Recv::accepted(req.into_body()));
            streams.spawn(async move {
                if let Ok(req) = read_header(&mut recv, MAX_HEADER).await {
                    check(&req);
                }
            });
        }
        while streams.join_next().await.is_some() {}
    };
    tokio::join!(drain, serve);
}

fn check(req: &OpenRequest) {
    let mut out = BytesMut::new();
    req.encode(&mut out);
    assert!(out.len() <= 3 + MAX_HEADER, "accepted a header over the limit: {}", out.len());
    assert_eq!(OpenRequest::decode(&out, 65535), Ok(Some((req.clone(), out.len()))), "round trip failed for {req:?}");
}
