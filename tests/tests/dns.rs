//! End to end through real processes: a client resolves `<svc>.prod.svc.clusterset.local` at
//! its gateway's DNS server with Debian's `dig`, then `curl --resolve`s the answered address and
//! reaches the service in another cluster through the tunnel; a service added to the
//! federator's catalog appears in DNS, and one removed becomes NXDOMAIN, within TTL + 1 s.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use skybridge_tests::fleet::{Fleet, Layout, until};

const LAYOUT: Layout = Layout { aws_gcp: 20, aws_azure: 30, gcp_azure: 40 };
/// The gateways' `dns.ttl` (the default).
const TTL: Duration = Duration::from_secs(5);

fn dig(at: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args([&format!("@{}", at.ip()), "-p", &at.port().to_string(), "+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("dig is not installed: run scripts/test.sh (Debian package bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `status:` of dig's answer header (`NOERROR`, `NXDOMAIN`, ...).
fn status(out: &str) -> &str {
    out.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("no answer")
}

/// The records of one section of dig's output, whitespace-normalised.
fn section(out: &str, name: &str) -> Vec<String> {
    let head = format!(";; {name} SECTION:");
    out.lines()
        .skip_while(|l| *l != head)
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// `curl --resolve host:port:ip http://host:port/`: the body, or curl's error.
fn curl(host: &str, port: u16, ip: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--resolve",
            &format!("{host}:{port}:{ip}"),
            &format!("http://{host}:{port}/"),
        ])
        .output()
        .expect("curl is not installed: run scripts/test.sh");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_then_curl_reaches_the_service_and_dns_follows_the_catalog() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let f = Fleet::start(LAYOUT).await;
    // web.prod only in gcp-1: aws-1's clients must cross the tunnel to reach it.
    f.write_catalog(&["gcp-1"]);
    let (dns, http) = (f.dns["aws-1"], f.http["aws-1"]);
    let web = "web.prod.svc.clusterset.local";
    until("aws-1 answers web.prod", Duration::from_secs(30), async || {
        status(&dig(dns, &[web, "A"])) == "NOERROR" && curl(web, http.port(), "127.0.0.1").contains("hello from gcp-1")
    })
    .await;

    // A: the egress listener's address, authoritative, with the configured TTL.
    let out = dig(dns, &[web, "A"]);
    assert!(out.contains("flags: qr aa rd"), "{out}");
    assert_eq!(section(&out, "ANSWER"), vec![format!("{web}. 5 IN A 127.0.0.1")], "{out}");
    // Resolve, then connect to what was answered: the tunnel to gcp-1 serves it.
    let ip = dig(dns, &["+short", web, "A"]).trim().to_owned();
    assert_eq!(curl(web, http.port(), &ip).trim(), "hello from gcp-1");

    // AAAA: the name exists without IPv6: NODATA with the zone's SOA (negative TTL = TTL).
    let out = dig(dns, &[web, "AAAA"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(section(&out, "ANSWER").is_empty(), "{out}");
    let soa = section(&out, "AUTHORITY");
    assert!(soa.len() == 1 && soa[0].starts_with("clusterset.local. 5 IN SOA ns.clusterset.local."), "{out}");

    // SRV: by protocol or port number, the HTTP listener's port, the addresses as additionals.
    for owner in [format!("_http._tcp.{web}"), format!("_80._tcp.{web}")] {
        let out = dig(dns, &[&owner, "SRV"]);
        assert_eq!(section(&out, "ANSWER"), vec![format!("{owner}. 5 IN SRV 0 100 {} {web}.", http.port())], "{out}");
        assert_eq!(section(&out, "ADDITIONAL").iter().filter(|l| l.contains(" IN A 127.0.0.1")).count(), 1, "{out}");
    }

    // Names not in the catalog: NXDOMAIN with the SOA; other zones: REFUSED.
    let out = dig(dns, &["typo.prod.svc.clusterset.local", "A"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert_eq!(section(&out, "AUTHORITY").len(), 1, "{out}");
    assert_eq!(status(&dig(dns, &["example.com", "A"])), "REFUSED");
    // TCP answers the same.
    assert_eq!(dig(dns, &["+tcp", "+short", web]).trim(), "127.0.0.1");

    // A service added to the catalog appears within TTL + 1 s, and routes.
    let api = "api.prod.svc.clusterset.local";
    assert_eq!(status(&dig(dns, &[api, "A"])), "NXDOMAIN");
    f.write_services(&[("web", &["gcp-1"]), ("api", &["azure-1"])]);
    let written = Instant::now();
    until("api.prod resolves", TTL + Duration::from_secs(1), async || status(&dig(dns, &[api, "A"])) == "NOERROR")
        .await;
    println!("api.prod appeared {:?} after the catalog write", written.elapsed());
    assert_eq!(curl(api, http.port(), "127.0.0.1").trim(), "hello from azure-1");

    // Removed: NXDOMAIN within TTL + 1 s (a cache would hold the positive answer for TTL).
    f.write_services(&[("web", &["gcp-1"])]);
    let written = Instant::now();
    until("api.prod is gone", TTL + Duration::from_secs(1), async || status(&dig(dns, &[api, "A"])) == "NXDOMAIN")
        .await;
    println!("api.prod disappeared {:?} after the catalog write", written.elapsed());
    // Every gateway answers from its own catalog: gcp-1 hosts web and answers it too.
    assert_eq!(dig(f.dns["gcp-1"], &["+short", web]).trim(), "127.0.0.1");
}
