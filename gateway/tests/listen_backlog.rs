//! Every TCP listener gets `limits.listen_backlog` as its accept queue: a burst of new
//! connections past the std/tokio default of 128 would wait a second for a SYN retransmit
//! (measured: 128 of 500 simultaneous connections, docs/benchmarks.md).

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::{GwSpec, Pki, free_udp};

/// The accept-queue size the kernel reports for a listening socket (`ss`'s Send-Q column).
fn backlog(addr: SocketAddr) -> Option<u64> {
    let out = Command::new("ss").args(["-ltnH", &format!("sport = :{}", addr.port())]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.split_whitespace().nth(2)?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_take_the_configured_backlog() {
    common::init();
    let pki = Pki::new();
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
    let want = 2000.min(somaxconn);
    assert!(want > 128, "net.core.somaxconn {somaxconn} leaves nothing to test");
    let gw = GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("aws-1", "aws-1", 1),
        peers: vec![],
        extra: "\n[limits]\nlisten_backlog = 2000\n\n[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"echo.prod\"\nport = 7000\n"
            .into(),
    }
    .start()
    .await;
    let Some(b) = backlog(gw.addrs.tcp[0]) else {
        panic!("`ss -ltnH` (iproute2) is needed to read a listener's backlog");
    };
    assert_eq!(b, want, "port-mapped listener");
    for (what, addr) in [("SNI", gw.addrs.sni.unwrap()), ("HTTP", gw.addrs.http.unwrap())] {
        assert_eq!(backlog(addr), Some(want), "{what} listener");
    }
    // The admin port keeps a short queue: probes must not wait behind a flood of silent sockets.
    assert_eq!(backlog(gw.addrs.admin), Some(128.min(somaxconn)), "admin listener");
}
