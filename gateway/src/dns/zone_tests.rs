use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use skybridge_api::model::{ClusterId, Protocol, ServiceKey};
use skybridge_api::routing::DefaultAction;

use super::*;
use crate::routing::catalog::{Service, ServicePort};

fn key(s: &str) -> ServiceKey {
    ServiceKey::from_host(s).unwrap()
}

fn service(name: &str, ports: &[(u16, Protocol)], clusters: &[&str], local: bool) -> Service {
    Service {
        key: key(name),
        ports: ports
            .iter()
            .map(|&(port, protocol)| ServicePort {
                port,
                protocol,
                local_endpoints: if local { vec![SocketAddr::from(([127, 0, 0, 1], port))] } else { Vec::new() },
            })
            .collect(),
        clusters: clusters.iter().map(|c| ClusterId::new(c).unwrap()).collect(),
        allow: None,
        deny: Vec::new(),
    }
}

fn catalog(services: Vec<Service>) -> Catalog {
    Catalog {
        version: "v1".into(),
        local: ClusterId::new("here").unwrap(),
        peers: BTreeMap::new(),
        services: services.into_iter().map(|s| (s.key.clone(), s)).collect(),
        policies: HashMap::new(),
        authorization_default: DefaultAction::Allow,
    }
}

fn servable() -> Servable {
    Servable { tls_port: Some(443), http_port: Some(80), tcp: HashMap::from([((key("db.prod"), 5432), 15432)]) }
}

fn zone() -> Zone {
    Zone::build(
        &catalog(vec![
            service("payments.prod", &[(443, Protocol::Tls), (8080, Protocol::Http)], &["aws"], false),
            service("web.shop", &[(80, Protocol::Http)], &["here"], true),
            service("db.prod", &[(5432, Protocol::Tcp), (5433, Protocol::Tcp)], &["gcp"], false),
            // Hosted nowhere (every export withdrawn): not a name.
            service("gone.prod", &[(80, Protocol::Http)], &[], false),
            // TCP with no port-mapped listener here: cannot route, so not a name.
            service("cache.prod", &[(6379, Protocol::Tcp)], &["gcp"], false),
        ]),
        &servable(),
    )
}

const V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 96, 0, 42));

fn ask(zone: &Zone, name: &str, qtype: RecordType, addresses: &[IpAddr], transport: Transport) -> (Message, Outcome) {
    let a = Answering { addresses, ttl: 5, transport };
    let (bytes, outcome) = respond(&query_bytes(7, name, qtype, None), zone, &a).expect("answered");
    (Message::from_vec(&bytes).unwrap(), outcome)
}

fn udp(name: &str, qtype: RecordType) -> (Message, Outcome) {
    ask(&zone(), name, qtype, &[V4, "fd00::42".parse().unwrap()], Transport::Udp)
}

#[test]
fn a_service_name_answers_the_egress_addresses_by_family() {
    let (m, o) = udp("Payments.PROD.svc.clusterset.local.", RecordType::A);
    assert_eq!(o, Outcome::Answer);
    assert_eq!(m.metadata.id, 7);
    assert!(m.metadata.authoritative);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].data, RData::A(A(std::net::Ipv4Addr::new(10, 96, 0, 42))));
    assert_eq!(m.answers[0].ttl, 5);
    // The owner is the name as asked (0x20 case randomisation survives).
    assert_eq!(m.answers[0].name.to_string(), "Payments.PROD.svc.clusterset.local.");

    let (m, _) = udp("payments.prod.svc.clusterset.local.", RecordType::AAAA);
    assert_eq!(m.answers.len(), 1);
    assert!(matches!(m.answers[0].data, RData::AAAA(_)));
}

#[test]
fn a_name_without_a_family_is_nodata_with_the_soa() {
    let (m, o) = ask(&zone(), "web.shop.svc.clusterset.local.", RecordType::AAAA, &[V4], Transport::Udp);
    assert_eq!(o, Outcome::NoData);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(matches!(m.authorities[0].data, RData::SOA(_)));
}

#[test]
fn unknown_unroutable_and_withdrawn_names_are_nxdomain_with_the_soa() {
    for name in [
        "nope.prod.svc.clusterset.local.",
        "gone.prod.svc.clusterset.local.",
        "cache.prod.svc.clusterset.local.",
        "payments.prod.clusterset.local.",
        "x.payments.prod.svc.clusterset.local.",
        "_9999._tcp.payments.prod.svc.clusterset.local.",
        "nope.svc.clusterset.local.",
    ] {
        let (m, o) = udp(name, RecordType::A);
        assert_eq!(o, Outcome::NxDomain, "{name}");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        let RData::SOA(soa) = &m.authorities[0].data else { panic!("{name}: no SOA") };
        assert_eq!(soa.minimum, 5);
        assert_eq!(m.authorities[0].name.to_string(), "clusterset.local.");
    }
}

#[test]
fn empty_non_terminals_exist_without_records() {
    for name in ["svc.clusterset.local.", "prod.svc.clusterset.local.", "_tcp.db.prod.svc.clusterset.local."] {
        let (m, o) = udp(name, RecordType::A);
        assert_eq!((o, m.metadata.response_code), (Outcome::NoData, ResponseCode::NoError), "{name}");
    }
    let (m, o) = udp("clusterset.local.", RecordType::SOA);
    assert_eq!(o, Outcome::Answer);
    assert!(matches!(m.answers[0].data, RData::SOA(_)));
}

#[test]
fn srv_by_port_number_or_protocol_gives_the_dialled_port_and_the_addresses() {
    let (m, o) = udp("_443._tcp.payments.prod.svc.clusterset.local.", RecordType::SRV);
    assert_eq!(o, Outcome::Answer);
    let RData::SRV(srv) = &m.answers[0].data else { panic!("not SRV") };
    assert_eq!(srv.port, 443);
    assert_eq!(srv.target.to_string(), "payments.prod.svc.clusterset.local.");
    assert_eq!(m.additionals.len(), 2, "A and AAAA of the target");

    let (m, _) = udp("_http._tcp.payments.prod.svc.clusterset.local.", RecordType::SRV);
    let RData::SRV(srv) = &m.answers[0].data else { panic!("not SRV") };
    assert_eq!(srv.port, 80, "the HTTP listener's port, not the service's 8080");

    // Port-mapped: only the port with a listener here.
    let (m, _) = udp("_tcp._tcp.db.prod.svc.clusterset.local.", RecordType::SRV);
    let ports: Vec<u16> = m.answers.iter().map(|r| if let RData::SRV(s) = &r.data { s.port } else { 0 }).collect();
    assert_eq!(ports, vec![15432]);
    let (_, o) = udp("_5433._tcp.db.prod.svc.clusterset.local.", RecordType::SRV);
    assert_eq!(o, Outcome::NxDomain, "no listener serves 5433");
    let (_, o) = udp("_5432._tcp.db.prod.svc.clusterset.local.", RecordType::A);
    assert_eq!(o, Outcome::NoData);
}

#[test]
fn other_zones_and_classes_are_refused_not_authoritative() {
    for name in ["example.com.", "local.", "cluster.local."] {
        let (m, o) = udp(name, RecordType::A);
        assert_eq!((o, m.metadata.response_code), (Outcome::Refused, ResponseCode::Refused), "{name}");
        assert!(!m.metadata.authoritative);
    }
}

#[test]
fn no_known_address_is_servfail_not_a_lie() {
    let (m, o) = ask(&zone(), "payments.prod.svc.clusterset.local.", RecordType::A, &[], Transport::Udp);
    assert_eq!((o, m.metadata.response_code), (Outcome::ServFail, ResponseCode::ServFail));
    // Unknown names are still NXDOMAIN: the catalog, not the addresses, decides existence.
    let (_, o) = ask(&zone(), "nope.prod.svc.clusterset.local.", RecordType::A, &[], Transport::Udp);
    assert_eq!(o, Outcome::NxDomain);
}

#[test]
fn a_large_answer_is_truncated_on_udp_and_whole_on_tcp() {
    let many: Vec<IpAddr> = (1..=60).map(|i| IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, i))).collect();
    let (m, o) = ask(&zone(), "payments.prod.svc.clusterset.local.", RecordType::A, &many, Transport::Udp);
    assert_eq!(o, Outcome::Truncated);
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty(), "never a partial RRset");
    assert_eq!(m.queries.len(), 1);
    let (m, o) = ask(&zone(), "payments.prod.svc.clusterset.local.", RecordType::A, &many, Transport::Tcp);
    assert_eq!((o, m.answers.len()), (Outcome::Answer, 60));
    // EDNS raises the UDP limit to what the client offers, at most 1232.
    let a = Answering { addresses: &many, ttl: 5, transport: Transport::Udp };
    let q = query_bytes(9, "payments.prod.svc.clusterset.local.", RecordType::A, Some(4096));
    let (bytes, o) = respond(&q, &zone(), &a).unwrap();
    assert_eq!(o, Outcome::Answer);
    assert!(bytes.len() <= 1232);
    assert!(Message::from_vec(&bytes).unwrap().edns.is_some(), "OPT answered with OPT");
}

#[test]
fn garbage_is_formerr_or_silence_never_a_panic() {
    let a = Answering { addresses: &[V4], ttl: 5, transport: Transport::Udp };
    let z = zone();
    assert!(respond(&[], &z, &a).is_none());
    assert!(respond(&[0; 11], &z, &a).is_none());
    // A response (QR set) is not answered.
    let mut q = query_bytes(1, "payments.prod.svc.clusterset.local.", RecordType::A, None);
    q[2] |= 0x80;
    assert!(respond(&q, &z, &a).is_none());
    // A compression pointer to itself.
    let mut looped = query_bytes(2, "payments.prod.svc.clusterset.local.", RecordType::A, None);
    looped.truncate(12);
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let (bytes, o) = respond(&looped, &z, &a).unwrap();
    assert_eq!(o, Outcome::FormErr);
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!((m.metadata.id, m.metadata.response_code), (2, ResponseCode::FormErr));
    // Two questions.
    let mut two = Message::from_vec(&query_bytes(3, "a.b.svc.clusterset.local.", RecordType::A, None)).unwrap();
    two.add_query(two.queries[0].clone());
    let (_, o) = respond(&two.to_vec().unwrap(), &z, &a).unwrap();
    assert_eq!(o, Outcome::FormErr);
    // Not a query: NOTIMP.
    let mut update = Message::from_vec(&query_bytes(4, "a.b.svc.clusterset.local.", RecordType::A, None)).unwrap();
    update.metadata.op_code = hickory_proto::op::OpCode::Update;
    let (_, o) = respond(&update.to_vec().unwrap(), &z, &a).unwrap();
    assert_eq!(o, Outcome::NotImp);
}

#[test]
fn without_listeners_nothing_is_a_name() {
    let z = Zone::build(
        &catalog(vec![service("payments.prod", &[(443, Protocol::Tls)], &["aws"], false)]),
        &Servable::default(),
    );
    assert!(z.is_empty());
    let z = Zone::build(
        &catalog(vec![service("payments.prod", &[(443, Protocol::Tls)], &["aws"], false)]),
        &Servable { tls_port: Some(443), ..Servable::default() },
    );
    assert_eq!(z.len(), 1);
}
