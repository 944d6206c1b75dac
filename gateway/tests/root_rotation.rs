//! Rotating the root CA under load: add the new root to every bundle, reissue every leaf under
//! it, drop the old root; a long transfer and steady new connections run throughout and none
//! may fail.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Pki, backends, quic, service, start_pair};
use skybridge_api::ca::{self, PemPair};
use skybridge_api::header::{OpenRequest, Status};
use skybridge_api::identity::SpiffeId;
use skybridge_api::model::ClusterId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn leaf(root: &PemPair, td: &str, cluster: &str) -> PemPair {
    let id = SpiffeId::gateway(td, ClusterId::new(cluster).unwrap());
    ca::issue(root, &id, &[], time::OffsetDateTime::now_utc(), 1).unwrap()
}

/// Whether `identity` (a gateway certificate for `cluster`) can open a stream at `tunnel`.
async fn accepted(tunnel: std::net::SocketAddr, identity: &PemPair, cluster: &str) -> bool {
    let Ok(conn) = quic::connect(tunnel, Some(identity)).await else { return false };
    let req = OpenRequest::probe(ClusterId::new(cluster).unwrap());
    matches!(
        tokio::time::timeout(Duration::from_secs(5), quic::raw_open(&conn, &quic::header(&req))).await,
        Ok(Ok((Status::Ok, _)))
    )
}

/// Polls `f` every 50 ms for up to 5 s.
async fn within_5s(mut f: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_rotates_under_load_without_a_failed_connection() {
    common::init();
    let pki = Pki::new();
    let td = pki.trust_domain();
    let echo = backends::echo().await;
    let services = move |eps: bool| {
        service("prod", "echo", &["gcp-1"], 7000, "tcp", if eps { std::slice::from_ref(&echo) } else { &[] })
    };
    let listener = "\n[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"echo.prod\"\nport = 7000\n";
    let (a, b) = start_pair(&pki, services, listener, "").await;
    let entry = a.addrs.tcp[0];

    // The long transfer: one connection echoing a chunk every 5 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let (moved, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let long = {
        let (stop, moved) = (stop.clone(), moved.clone());
        tokio::spawn(async move {
            let mut s = TcpStream::connect(entry).await.unwrap();
            let chunk = vec![7u8; 16 * 1024];
            let mut back = vec![0u8; chunk.len()];
            while !stop.load(Ordering::Relaxed) {
                s.write_all(&chunk).await.unwrap();
                s.read_exact(&mut back).await.unwrap();
                assert_eq!(back, chunk);
                moved.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Steady new connections, one every 20 ms.
    let steady = {
        let (stop, failures) = (stop.clone(), failures.clone());
        tokio::spawn(async move {
            let mut opened = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ok = async {
                    let mut s = TcpStream::connect(entry).await.ok()?;
                    s.write_all(b"ping").await.ok()?;
                    s.shutdown().await.ok()?;
                    let mut out = Vec::new();
                    s.read_to_end(&mut out).await.ok()?;
                    (out == b"ping").then_some(())
                };
                if tokio::time::timeout(Duration::from_secs(5), ok).await.ok().flatten().is_none() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                opened += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            opened
        })
    };

    let new_root = ca::init(&td, time::OffsetDateTime::now_utc(), 1).unwrap();
    let both = format!("{}{}", pki.ca.cert_pem, new_root.cert_pem);
    let dirs = [("aws-1", a.addrs.admin), ("gcp-1", b.addrs.admin)];
    let read = |dir: &str, f: &str| std::fs::read_to_string(pki.dir.path().join(dir).join(f)).unwrap();
    let reloads = r#"skybridge_gateway_cert_reloads_total{result="ok"}"#;
    // 1. Both roots in every bundle, leaves unchanged.
    for (dir, _) in dirs {
        let current = PemPair { cert_pem: read(dir, "cert.pem"), key_pem: read(dir, "key.pem") };
        common::write_identity(&pki.dir.path().join(dir), &current, &both);
    }
    // Files are replaced one by one, so a reload may see a half-written update: wait for what
    // the update does, not for a reload count.
    let new_leaf = leaf(&new_root, &td, "aws-1");
    assert!(within_5s(async || accepted(b.addrs.tunnel, &new_leaf, "aws-1").await).await, "new root not trusted");
    // 2. Every leaf reissued under the new root.
    for (dir, _) in dirs {
        common::write_identity(&pki.dir.path().join(dir), &leaf(&new_root, &td, dir), &both);
    }
    for (_, admin) in dirs {
        assert!(common::wait_metric(admin, reloads, 2.0).await, "no reload after the new leaf on {admin}");
    }
    // Both roots are trusted while the leaves roll.
    assert!(accepted(b.addrs.tunnel, &leaf(&pki.ca, &td, "aws-1"), "aws-1").await);
    assert!(accepted(b.addrs.tunnel, &leaf(&new_root, &td, "aws-1"), "aws-1").await);
    // 3. The old root leaves every bundle.
    for (dir, _) in dirs {
        let current = PemPair { cert_pem: read(dir, "cert.pem"), key_pem: read(dir, "key.pem") };
        common::write_identity(&pki.dir.path().join(dir), &current, &new_root.cert_pem);
    }
    let old_leaf = leaf(&pki.ca, &td, "aws-1");
    assert!(
        within_5s(async || !accepted(b.addrs.tunnel, &old_leaf, "aws-1").await).await,
        "the old root is still trusted"
    );
    assert!(accepted(b.addrs.tunnel, &leaf(&new_root, &td, "aws-1"), "aws-1").await);

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    long.await.unwrap();
    let opened = steady.await.unwrap();
    assert!(opened >= 5, "only {opened} new connections during the rotation");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "of {opened} new connections");
    assert!(moved.load(Ordering::Relaxed) > 0);
    // The pair still carries new connections (on its pooled tunnel connection; the checks above
    // made fresh handshakes against gcp-1's new trust).
    let mut s = TcpStream::connect(entry).await.unwrap();
    s.write_all(b"after").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"after");
}
