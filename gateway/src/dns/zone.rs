//! The `clusterset.local` zone as this gateway serves it, and the answer to one DNS message:
//! pure functions of the catalog, the answer addresses and the request bytes (no sockets, no
//! clock), so every rule is a unit test and the fuzz target drives the same code.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use skybridge_api::model::{Protocol, ServiceKey};

use crate::routing::Catalog;

/// The zone every gateway is authoritative for (the Multi-Cluster Services name space).
pub const ZONE: &str = "clusterset.local.";

/// The zone apex and the SOA's names, parsed once rather than per query.
struct Names {
    apex: Name,
    mname: Name,
    rname: Name,
}

static NAMES: std::sync::LazyLock<Names> = std::sync::LazyLock::new(|| Names {
    apex: Name::from_ascii(ZONE).expect("a valid name"),
    mname: Name::from_ascii("ns.clusterset.local.").expect("a valid name"),
    rname: Name::from_ascii("hostmaster.clusterset.local.").expect("a valid name"),
});

/// The largest UDP answer we send to an EDNS client, whatever buffer it advertises: the DNS
/// flag day 2020 size, which avoids IP fragmentation on every common path.
const EDNS_UDP_MAX: u16 = 1232;
/// The UDP answer size a client without EDNS accepts (RFC 1035).
const CLASSIC_UDP_MAX: usize = 512;

/// What this gateway's egress listeners serve: a service port is in DNS only when a listener
/// here can take a client for it, so a name that resolves is a name that routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Servable {
    /// The port clients dial for TLS services; `None`: no SNI listener.
    pub tls_port: Option<u16>,
    /// The port clients dial for HTTP services; `None`: no HTTP listener.
    pub http_port: Option<u16>,
    /// Port-mapped listeners: (service, service port) → the port clients dial.
    pub tcp: HashMap<(ServiceKey, u16), u16>,
}

/// One SRV target of a service: `_<label>._tcp.<svc>.<ns>.svc.clusterset.local`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SrvPort {
    /// The service port's number as a label (`443`), so a client that knows the port finds it.
    number: String,
    /// The protocol's name (`tls`, `http`, `tcp`): the port name Skybridge's catalog carries.
    protocol: &'static str,
    /// The port clients dial at the answer addresses.
    dial: u16,
}

/// The names this gateway answers for, built once per catalog.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    services: HashMap<(String, String), Vec<SrvPort>>,
    namespaces: HashSet<String>,
    serial: u32,
}

impl Zone {
    /// The services of `catalog` that a listener described by `servable` can route: hosted
    /// somewhere, with at least one port a listener here serves.
    pub fn build(catalog: &Catalog, servable: &Servable) -> Zone {
        let mut zone = Zone { serial: serial(&catalog.version), ..Zone::default() };
        for s in catalog.services.values() {
            let hosted = !s.clusters.is_empty() || s.ports.iter().any(|p| !p.local_endpoints.is_empty());
            if !hosted {
                continue;
            }
            let ports: Vec<SrvPort> = s
                .ports
                .iter()
                .filter_map(|p| {
                    let (protocol, dial) = match p.protocol {
                        // SNI and Host routing take the first port of their protocol.
                        Protocol::Tls if s.port_for(Protocol::Tls).map(|f| f.port) == Some(p.port) => {
                            ("tls", servable.tls_port?)
                        }
                        Protocol::Http if s.port_for(Protocol::Http).map(|f| f.port) == Some(p.port) => {
                            ("http", servable.http_port?)
                        }
                        Protocol::Tcp => ("tcp", *servable.tcp.get(&(s.key.clone(), p.port))?),
                        Protocol::Tls | Protocol::Http => return None,
                    };
                    Some(SrvPort { number: p.port.to_string(), protocol, dial })
                })
                .collect();
            if ports.is_empty() {
                continue;
            }
            zone.namespaces.insert(s.key.namespace.clone());
            zone.services.insert((s.key.namespace.clone(), s.key.name.clone()), ports);
        }
        zone
    }

    /// How many service names the zone holds.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether the zone holds no service name.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// A SOA serial from the catalog version: FNV-1a, so that every gateway on one catalog agrees.
fn serial(version: &str) -> u32 {
    version.bytes().fold(0x811c9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x01000193))
}

/// How an answer is sent, which bounds its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The answer's settings that do not come from the catalog.
#[derive(Debug, Clone, Copy)]
pub struct Answering<'a> {
    /// The A/AAAA addresses of every service name; empty while none is known (SERVFAIL).
    pub addresses: &'a [IpAddr],
    /// TTL of answers and of negative answers, seconds.
    pub ttl: u32,
    pub transport: Transport,
}

/// What happened to one request, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// An answer with records.
    Answer,
    /// The name exists with no record of the asked type.
    NoData,
    NxDomain,
    /// Not our zone, or not class IN.
    Refused,
    FormErr,
    NotImp,
    /// A name in the catalog, but no answer address is known yet.
    ServFail,
    /// Sent with TC set: the answer did not fit; the client retries over TCP.
    Truncated,
}

impl Outcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Answer => "answer",
            Outcome::NoData => "nodata",
            Outcome::NxDomain => "nxdomain",
            Outcome::Refused => "refused",
            Outcome::FormErr => "formerr",
            Outcome::NotImp => "notimp",
            Outcome::ServFail => "servfail",
            Outcome::Truncated => "truncated",
        }
    }
}

/// The response to `request`, or `None` when nothing should be sent (too short to carry an id,
/// or itself a response: answering those would let two servers bounce packets forever).
pub fn respond(request: &[u8], zone: &Zone, a: &Answering<'_>) -> Option<(Vec<u8>, Outcome)> {
    // The header's QR bit: a response is never answered.
    if request.len() < 12 || request[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([request[0], request[1]]);
    let Ok(msg) = Message::from_vec(request) else {
        return Some((header_only(id, ResponseCode::FormErr), Outcome::FormErr));
    };
    let (response, outcome) = answer(&msg, zone, a);
    let limit = match (a.transport, &msg.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => CLASSIC_UDP_MAX,
        (Transport::Udp, Some(e)) => usize::from(e.max_payload().clamp(CLASSIC_UDP_MAX as u16, EDNS_UDP_MAX)),
    };
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some((bytes, outcome));
    }
    // Too big for this transport: the question (and OPT) with TC set; the client asks again
    // over TCP. Never a partial RRset, which a client could cache as the whole answer.
    let mut truncated = response.truncate();
    truncated.metadata.id = id;
    truncated.metadata.message_type = MessageType::Response;
    Some((truncated.to_vec().ok()?, Outcome::Truncated))
}

/// A response with only a header: for requests that did not parse, whose question is unknown.
fn header_only(id: u16, code: ResponseCode) -> Vec<u8> {
    let mut m = Message::error_msg(id, OpCode::Query, code);
    m.metadata.message_type = MessageType::Response;
    m.to_vec().expect("a header encodes")
}

fn answer(req: &Message, zone: &Zone, a: &Answering<'_>) -> (Message, Outcome) {
    let mut res = Message::response(req.metadata.id, req.metadata.op_code);
    res.metadata.recursion_desired = req.metadata.recursion_desired;
    res.metadata.checking_disabled = req.metadata.checking_disabled;
    // A client that sent OPT gets one back (RFC 6891), with the size we send at most.
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_MAX);
        edns.set_version(0);
        res.set_edns(edns);
    }
    if req.metadata.op_code != OpCode::Query {
        res.metadata.response_code = ResponseCode::NotImp;
        return (res, Outcome::NotImp);
    }
    let [query] = req.queries.as_slice() else {
        res.metadata.response_code = ResponseCode::FormErr;
        return (res, Outcome::FormErr);
    };
    res.add_query(query.clone());
    let zone_name = &NAMES.apex;
    let name = query.name();
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) || !zone_name.zone_of(name) {
        res.metadata.response_code = ResponseCode::Refused;
        return (res, Outcome::Refused);
    }
    res.metadata.authoritative = true;
    let ttl = a.ttl;
    // Labels below the zone, nearest the zone first: svc, namespace, service, _tcp, _port.
    let labels: Vec<String> = name
        .iter()
        .rev()
        .skip(usize::from(zone_name.num_labels()))
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    let found = match labels.as_slice() {
        [] => Found::Apex,
        [svc] if svc == "svc" => Found::Node,
        [svc, ns] if svc == "svc" && zone.namespaces.contains(ns) => Found::Node,
        [svc, ns, svc_name] if svc == "svc" => match zone.services.get(&(ns.clone(), svc_name.clone())) {
            Some(_) => Found::Service,
            None => Found::Nothing,
        },
        [svc, ns, svc_name, tcp] if svc == "svc" && tcp == "_tcp" => {
            match zone.services.get(&(ns.clone(), svc_name.clone())) {
                Some(_) => Found::Node,
                None => Found::Nothing,
            }
        }
        [svc, ns, svc_name, tcp, port] if svc == "svc" && tcp == "_tcp" => {
            let label = port.strip_prefix('_').unwrap_or("");
            match zone.services.get(&(ns.clone(), svc_name.clone())) {
                Some(ports) => {
                    let matching: Vec<&SrvPort> =
                        ports.iter().filter(|p| p.number == label || p.protocol == label).collect();
                    if matching.is_empty() { Found::Nothing } else { Found::Srv(matching) }
                }
                None => Found::Nothing,
            }
        }
        _ => Found::Nothing,
    };
    let qtype = query.query_type();
    let owner = name.clone();
    let outcome = match found {
        Found::Nothing => Outcome::NxDomain,
        Found::Apex if qtype == RecordType::SOA || qtype == RecordType::ANY => {
            res.add_answer(soa(zone.serial, ttl));
            Outcome::Answer
        }
        Found::Apex | Found::Node => Outcome::NoData,
        Found::Service => {
            if a.addresses.is_empty() {
                res.metadata.response_code = ResponseCode::ServFail;
                return (res, Outcome::ServFail);
            }
            let records = address_records(&owner, a.addresses, qtype, ttl);
            if records.is_empty() {
                Outcome::NoData
            } else {
                res.add_answers(records);
                Outcome::Answer
            }
        }
        Found::Srv(ports) if qtype == RecordType::SRV || qtype == RecordType::ANY => {
            if a.addresses.is_empty() {
                res.metadata.response_code = ResponseCode::ServFail;
                return (res, Outcome::ServFail);
            }
            // The target is the service's own name, whose addresses ride along as additionals
            // so a client needs no second query.
            let target = name.base_name().base_name();
            let mut dials: Vec<u16> = ports.iter().map(|p| p.dial).collect();
            dials.sort_unstable();
            dials.dedup();
            for dial in dials {
                res.add_answer(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::SRV(SRV::new(0, 100, dial, target.clone())),
                ));
            }
            res.add_additionals(address_records(&target, a.addresses, RecordType::ANY, ttl));
            Outcome::Answer
        }
        Found::Srv(_) => Outcome::NoData,
    };
    match outcome {
        Outcome::NxDomain => {
            res.metadata.response_code = ResponseCode::NXDomain;
            res.add_authority(soa(zone.serial, ttl));
        }
        Outcome::NoData => {
            res.add_authority(soa(zone.serial, ttl));
        }
        _ => {}
    }
    (res, outcome)
}

/// Where a name landed in the zone.
enum Found<'z> {
    Apex,
    /// An empty non-terminal (`svc`, a namespace, `_tcp`): exists, holds no records.
    Node,
    Service,
    Srv(Vec<&'z SrvPort>),
    Nothing,
}

/// A and AAAA records of `addresses` for `qtype` (A, AAAA, or ANY for both).
fn address_records(owner: &Name, addresses: &[IpAddr], qtype: RecordType, ttl: u32) -> Vec<Record> {
    addresses
        .iter()
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(*v4))),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(owner.clone(), ttl, rdata))
        .collect()
}

/// The zone's SOA: its minimum (the negative-caching TTL, RFC 2308) is the answer TTL, so a
/// service that appears is seen as soon as a positive answer would have expired.
fn soa(serial: u32, ttl: u32) -> Record {
    let n = &*NAMES;
    let rdata = SOA::new(n.mname.clone(), n.rname.clone(), serial, 3600, 600, 86_400, ttl);
    Record::from_rdata(n.apex.clone(), ttl, RData::SOA(rdata))
}

/// A request for tests and the fuzz corpus: one question, optionally with EDNS.
pub fn query_bytes(id: u16, name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("a valid test name"), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().expect("a query encodes")
}

#[cfg(test)]
#[path = "zone_tests.rs"]
mod tests;
