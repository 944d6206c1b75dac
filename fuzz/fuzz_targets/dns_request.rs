//! `dns::zone::respond`, the gateway's DNS request path: must not panic (malformed headers,
//! compression loops, oversized names and counts), and
//! - it answers nothing only for input shorter than a header or with QR set (a response);
//! - an answer parses back, is a response carrying the request's id, and over UDP fits in the
//!   largest datagram we send (1232 bytes);
//! - the same input gives the same answer.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use skybridge_gateway::dns::zone::{Answering, Servable, Transport, Zone, respond};
use skybridge_gateway::routing::{Catalog, Service, ServicePort};
use skybridge_api::model::{ClusterId, Protocol, ServiceKey};

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let key = |h: &str| ServiceKey::from_host(h).unwrap();
        let svc = |h: &str, port: u16, protocol: Protocol| Service {
            key: key(h),
            ports: vec![ServicePort { port, protocol, local_endpoints: Vec::new() }],
            clusters: vec![ClusterId::new("gcp-1").unwrap()],
            allow: None,
            deny: Vec::new(),
        };
        let services = [
            svc("payments.prod", 443, Protocol::Tls),
            svc("web.prod", 80, Protocol::Http),
            svc("db.prod", 5432, Protocol::Tcp),
        ];
        let catalog = Catalog {
            version: "fuzz".into(),
            local: ClusterId::new("aws-1").unwrap(),
            peers: Default::default(),
            services: services.into_iter().map(|s| (s.key.clone(), s)).collect(),
            policies: Default::default(),
            authorization_default: skybridge_api::routing::DefaultAction::Allow,
        };
        let servable = Servable {
            tls_port: Some(443),
            http_port: Some(80),
            tcp: [((key("db.prod"), 5432), 15432)].into_iter().collect(),
        };
        Zone::build(&catalog, &servable)
    })
}

fuzz_target!(|data: &[u8]| {
    // Enough addresses that a full answer passes 512 bytes, so truncation is exercised.
    let addresses: Vec<IpAddr> = (1..=40u8).map(|i| IpAddr::from([10, 96, 0, i])).collect();
    for transport in [Transport::Udp, Transport::Tcp] {
        let a = Answering { addresses: &addresses, ttl: 5, transport };
        let out = respond(data, zone(), &a);
        let Some((bytes, outcome)) = &out else {
            assert!(data.len() < 12 || data[2] & 0x80 != 0, "a query went unanswered");
            continue;
        };
        let m = Message::from_vec(bytes).expect("our answer parses");
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.id, u16::from_be_bytes([data[0], data[1]]));
        if transport == Transport::Udp {
            assert!(bytes.len() <= 1232, "{} bytes over UDP ({outcome:?})", bytes.len());
        }
        assert_eq!(respond(data, zone(), &a), out, "not deterministic");
    }
});
