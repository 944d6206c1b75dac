//! The static source's catalog file (TOML and JSON): never panics, and whatever it accepts is
//! routable: every export names a listed cluster, every port is 1-65535, every endpoint is a
//! unicast address with a port. Accepting is deterministic (parsing twice gives the same
//! snapshot).
#![no_main]

use libfuzzer_sys::fuzz_target;
use skybridge_api::catalog::SourceSnapshot;
use skybridge_federator::sources::static_file::{parse, parse_json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for parsed in [parse(text), parse_json(text)] {
        let Ok(snapshot) = parsed else { continue };
        check(&snapshot);
    }
    if let (Ok(a), Ok(b)) = (parse(text), parse(text)) {
        assert_eq!(a, b);
    }
});

fn check(s: &SourceSnapshot) {
    for (key, exports) in &s.services {
        for e in exports {
            assert!(s.clusters.iter().any(|c| c.id == e.cluster), "{key}: export of an unlisted cluster");
            for p in &e.ports {
                assert_ne!(p.port, 0, "{key}: port 0 accepted");
                for ep in p.endpoints.iter() {
                    let ip = ep.address.ip();
                    assert_ne!(ep.address.port(), 0, "{key}: endpoint port 0 accepted");
                    assert!(!ip.is_unspecified() && !ip.is_multicast(), "{key}: endpoint {ip} accepted");
                    assert!(!matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast()), "{key}: broadcast accepted");
                }
            }
        }
    }
}
