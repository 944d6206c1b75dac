//! The admin server at the process's open-file limit (issue 14): accept errors back off instead
//! of spinning (before: one failed accept and one log line every 50 ms), and the server answers
//! again once the idle connections that used up the descriptors are closed. In its own test
//! binary because it lowers this process's fd limit.

mod common;

use std::time::{Duration, Instant};

use common::{GwSpec, Pki, admin_get, free_udp};
use skybridge_gateway::metrics::ReasonLabels;

/// The highest descriptor number open in this process (a new one gets the lowest free number,
/// which must be below the soft limit).
fn highest_fd() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap()
}

fn soft_nofile() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

fn set_nofile(soft: u64) {
    let pid = std::process::id().to_string();
    let ok = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={soft}:")])
        .status()
        .expect("prlimit (util-linux) is needed for this test")
        .success();
    assert!(ok, "prlimit failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_at_the_fd_limit_back_off_and_the_admin_port_recovers() {
    common::init();
    let pki = Pki::new();
    let gw = GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("aws-1", "aws-1", 1),
        peers: vec![],
        extra: "\n[limits]\nadmin_header_timeout = \"1s\"\n".into(),
    }
    .start()
    .await;
    let admin = gw.addrs.admin;
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);
    let accept_errors =
        || gw.context().metrics.admin_refusals.get_or_create(&ReasonLabels { reason: "accept_error" }).get();

    // Sockets made while descriptors are free, connected once none are left: their
    // connections wait in the listener's backlog, where every accept fails with EMFILE. (Opening
    // clients until the limit instead races the server for the last descriptor.)
    let before = soft_nofile();
    let waiting: Vec<socket2::Socket> =
        (0..4).map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap()).collect();
    set_nofile(highest_fd() + 1);
    // Free numbers below the highest one (closed descriptors) are taken too.
    let mut fillers = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        fillers.push(f);
    }
    for s in &waiting {
        s.connect(&admin.into()).unwrap();
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let during = accept_errors();
    drop((waiting, fillers));
    set_nofile(before);
    let mut healthy = false;
    for _ in 0..50 {
        if admin_get(admin, "/healthz").await.0 == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = accept_errors();
    eprintln!("accept errors: {during} in the first 800 ms, {total} in {:?}", start.elapsed());
    assert!(during >= 1, "the fd limit was never reached");
    // Backoff 10 ms doubling to 1 s: about 8 attempts in a second, not one every 50 ms or a spin.
    assert!(total <= 12, "{total} failed accepts in {:?}: not backing off", start.elapsed());
    assert!(healthy, "the admin port did not recover");
}
