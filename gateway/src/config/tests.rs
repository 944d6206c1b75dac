use super::*;

const BASE: &str = r#"
[gateway]
cluster = "aws-1"
cloud = "aws"
region = "us-east-1"
trust_domain = "example.org"

[tls]
cert = "c.pem"
key = "k.pem"
trust_bundle = "ca.pem"

[[peers]]
cluster = "gcp-1"
cloud = "gcp"
region = "europe-west1"
address = "127.0.0.1:25443"

[[services]]
namespace = "prod"
name = "payments"
clusters = ["aws-1", "gcp-1"]
[[services.ports]]
port = 443
protocol = "tls"
endpoints = ["127.0.0.1:9443"]
"#;

fn err(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn base_parses_with_defaults() {
    let c = Config::parse(BASE).unwrap();
    assert_eq!(c.listen.sni.to_string(), "0.0.0.0:15001");
    assert_eq!(c.limits.peek_timeout, Duration::from_secs(5));
    assert_eq!(c.services[0].ports[0].endpoints.len(), 1);
}

#[test]
fn unknown_key_is_named() {
    let e = err(&format!("{BASE}\n[limits]\nmax_conections = 5\n"));
    assert!(e.contains("max_conections"), "{e}");
}

#[test]
fn bad_duration_names_key_and_value() {
    let e = err(&format!("{BASE}\n[limits]\nidle_timeout = \"30 seconds\"\n"));
    assert!(e.contains("idle_timeout") && e.contains("30 seconds"), "{e}");
}

#[test]
fn unknown_cluster_in_service() {
    let e = err(&BASE.replace(r#"clusters = ["aws-1", "gcp-1"]"#, r#"clusters = ["aws-1", "azure-9"]"#));
    assert!(e.contains("services[0].clusters[1]") && e.contains("azure-9"), "{e}");
}

#[test]
fn endpoints_for_remote_only_service_rejected() {
    let e = err(&BASE.replace(r#"clusters = ["aws-1", "gcp-1"]"#, r#"clusters = ["gcp-1"]"#));
    assert!(e.contains("services[0].ports[0].endpoints"), "{e}");
}

#[test]
fn bad_listen_address() {
    // Parsed once, at deserialisation: the error shows the line (key and value) and the reason.
    let e = err(&format!("{BASE}\n[listen]\nsni = \"localhost\"\n"));
    assert!(e.contains("`listen.sni`") && e.contains("sni = \"localhost\"") && e.contains("expected ip:port"), "{e}");
    let e = err(&format!("{BASE}\n[listen]\ntunnel = \"off\"\n"));
    assert!(e.contains("tunnel = \"off\"") && e.contains("cannot be turned off"), "{e}");
    let e = err(&format!("{BASE}\n[[listen.tcp]]\naddress = \"off\"\nservice = \"payments.prod\"\nport = 443\n"));
    assert!(e.contains("address = \"off\"") && e.contains("cannot be turned off"), "{e}");
    assert!(Config::parse(&format!("{BASE}\n[listen]\nhttp = \"off\"\n")).is_ok());
}

#[test]
fn limits_ranges() {
    let e = err(&format!("{BASE}\n[limits]\nmax_client_hello = 10\n"));
    assert!(e.contains("limits.max_client_hello") && e.contains("between"), "{e}");
    let e = err(&format!("{BASE}\n[limits]\nkeep_alive = \"60s\"\nidle_timeout = \"30s\"\n"));
    assert!(e.contains("limits.keep_alive"), "{e}");
}

#[test]
fn telemetry_is_off_by_default_and_checked_when_on() {
    assert_eq!(Config::parse(BASE).unwrap().telemetry.otlp_endpoint, None);
    let on = Config::parse(&format!("{BASE}\n[telemetry]\notlp_endpoint = \"http://otel:4317\"\n")).unwrap();
    assert_eq!(on.telemetry.sample_ratio, 1.0);
    for (body, key, why) in [
        ("otlp_endpoint = \"https://otel:4317\"", "telemetry.otlp_endpoint", "TLS"),
        ("otlp_endpoint = \"otel:4317\"", "telemetry.otlp_endpoint", "http://"),
        ("sample_ratio = 1.5", "telemetry.sample_ratio", "between 0 and 1"),
        ("batch_delay = \"0s\"", "telemetry.batch_delay", "positive"),
    ] {
        let e = err(&format!("{BASE}\n[telemetry]\n{body}\n"));
        assert!(e.contains(key) && e.contains(why), "{body}: {e}");
    }
}

#[test]
fn duplicate_peer_and_bad_cluster_id() {
    let e = err(&BASE.replace(r#"cluster = "gcp-1""#, r#"cluster = "aws-1""#));
    assert!(e.contains("peers[0].cluster"), "{e}");
    let e = err(&BASE.replace(r#"cluster = "aws-1""#, r#"cluster = "AWS_1""#));
    assert!(e.contains("AWS_1"), "{e}");
}

#[test]
fn tcp_listener_service_must_parse() {
    let e = err(&format!("{BASE}\n[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"nope\"\nport = 1\n"));
    assert!(e.contains("service = \"nope\"") && e.contains("not a clusterset service name"), "{e}");
}

#[test]
fn relative_tls_paths_follow_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, BASE).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.tls.cert, dir.path().join("c.pem"));
}

const FEDERATED: &str = r#"
[gateway]
cluster = "aws-1"
cloud = "aws"
region = "us-east-1"
trust_domain = "example.org"

[tls]
cert = "c.pem"
key = "k.pem"
trust_bundle = "ca.pem"

[federator]
"#;

#[test]
fn federator_address_or_addresses() {
    let one = Config::parse(&format!("{FEDERATED}address = \"federator.skybridge.svc:15010\"\n")).unwrap();
    let f = one.federator.unwrap();
    assert_eq!(f.targets(), vec!["federator.skybridge.svc:15010"]);
    let many = Config::parse(&format!("{FEDERATED}addresses = [\"10.0.0.1:15010\", \"[fd00::2]:15010\"]\n")).unwrap();
    assert_eq!(many.federator.unwrap().targets(), vec!["10.0.0.1:15010", "[fd00::2]:15010"]);

    for (body, key, why) in [
        ("", "federator.address", "missing"),
        ("address = \"a:1\"\naddresses = [\"b:1\"]", "federator.addresses", "give one of the two"),
        ("address = \"federator\"", "federator.address", "no port"),
        ("address = \"federator:0\"", "federator.address", "1 to 65535"),
        ("address = \"federator:http\"", "federator.address", "1 to 65535"),
        ("address = \":15010\"", "federator.address", "host is empty"),
        ("address = \"fd00::2:15010\"", "federator.address", "[addr]:port"),
        ("addresses = [\"a:1\", \"b\"]", "federator.addresses[1]", "no port"),
        ("addresses = [\"a:1\", \"a:1\"]", "federator.addresses[1]", "listed twice"),
        ("address = \"a:1\"\ncatalog_cache = \"\"", "federator.catalog_cache", "\"off\""),
        ("address = \"a:1\"\nconnect_timeout = \"0s\"", "federator.connect_timeout", "positive"),
    ] {
        let e = err(&format!("{FEDERATED}{body}\n"));
        assert!(e.contains(&format!("`{key}`")) && e.contains(why), "{body:?}: {e}");
    }
}

#[test]
fn catalog_cache_defaults_next_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    let load = |extra: &str| {
        std::fs::write(&path, format!("{FEDERATED}address = \"a:1\"\n{extra}")).unwrap();
        Config::load(&path).unwrap().federator.unwrap().catalog_cache
    };
    assert_eq!(load(""), CatalogCache::Path(dir.path().join("catalog-cache.pb")));
    assert_eq!(load("catalog_cache = \"state/c.pb\"\n"), CatalogCache::Path(dir.path().join("state/c.pb")));
    assert_eq!(load("catalog_cache = \"/var/cache/c.pb\"\n"), CatalogCache::Path("/var/cache/c.pb".into()));
    assert_eq!(load("catalog_cache = \"off\"\n"), CatalogCache::Off);
    assert_eq!(CatalogCache::Off.path(), None);
    // Text parsed without a file has no folder for the default: no cache unless a path is given.
    let parsed = Config::parse(&format!("{FEDERATED}address = \"a:1\"\n")).unwrap();
    assert_eq!(parsed.federator.unwrap().catalog_cache.path(), None);
}

const HUGE: &str = "\"18446744073709551615s\"";

#[test]
fn every_duration_has_a_maximum() {
    // Each of these once passed --check-config and then panicked (Instant overflow, QUIC
    // VarIntBoundsExceeded) on the first connection or at start.
    for (section, key) in [
        ("limits", "peek_timeout"),
        ("limits", "idle_timeout"),
        ("limits", "keep_alive"),
        ("limits", "handshake_timeout"),
        ("limits", "open_timeout"),
        ("limits", "header_timeout"),
        ("limits", "connect_timeout"),
        ("limits", "connect_budget"),
        ("limits", "drain_deadline"),
        ("limits", "eject_duration"),
        ("limits", "noise_log_interval"),
        ("limits", "admin_header_timeout"),
        ("limits", "admin_idle_timeout"),
        ("routing", "probe_interval"),
        ("routing", "hold_down"),
        ("routing", "max_hold_down"),
        ("routing", "share_floor"),
        ("routing", "slow_open_min"),
        ("telemetry", "otlp_timeout"),
        ("telemetry", "batch_delay"),
    ] {
        let e = err(&format!("{BASE}\n[{section}]\n{key} = {HUGE}\n"));
        let named = format!("`{section}.{key}` = \"18446744073709551615s\"");
        assert!(e.contains(&named) && e.contains("at most"), "{section}.{key}: {e}");
    }
    for key in ["reload_interval", "expiry_warning"] {
        let e = err(&BASE.replace("trust_bundle = \"ca.pem\"", &format!("trust_bundle = \"ca.pem\"\n{key} = {HUGE}")));
        assert!(e.contains(&format!("`tls.{key}`")) && e.contains("at most"), "{key}: {e}");
    }
    for key in ["report_interval", "reconnect_max", "connect_timeout"] {
        let e = err(&format!("{FEDERATED}address = \"a:1\"\n{key} = {HUGE}\n"));
        assert!(e.contains(&format!("`federator.{key}`")) && e.contains("at most"), "{key}: {e}");
    }
    // At the maximum is fine.
    let ok = Config::parse(&format!("{BASE}\n[limits]\npeek_timeout = \"5m\"\nidle_timeout = \"1h\"\n")).unwrap();
    assert_eq!(ok.limits.idle_timeout, Duration::from_secs(3600));
}

#[test]
fn sizes_and_shares_have_bounds() {
    for (body, key) in [
        ("max_handshakes = 0", "limits.max_handshakes"),
        ("max_handshakes = 1000000", "limits.max_handshakes"),
        ("max_handshakes_per_source = 0", "limits.max_handshakes_per_source"),
        ("handshake_retry_load = 1.5", "limits.handshake_retry_load"),
        ("handshake_retry_load = nan", "limits.handshake_retry_load"),
        ("admin_max_connections = 0", "limits.admin_max_connections"),
        ("connection_window = 4294967295", "limits.connection_window"),
        ("noise_log_interval = \"10ms\"", "limits.noise_log_interval"),
    ] {
        let e = err(&format!("{BASE}\n[limits]\n{body}\n"));
        assert!(e.contains(&format!("`{key}`")), "{body}: {e}");
    }
    let e = err(&format!("{BASE}\n[telemetry]\nmax_queue = 100000000\n"));
    assert!(e.contains("telemetry.max_queue"), "{e}");
    let e = err(&format!("{FEDERATED}address = \"a:1\"\nmax_message_size = 100\n"));
    assert!(e.contains("federator.max_message_size"), "{e}");
}

#[test]
fn front_door_defaults() {
    let l = Limits::default();
    assert!((128..=1024).contains(&l.max_handshakes), "{}", l.max_handshakes);
    assert_eq!(l.max_handshakes_per_source, 16);
    let a = l.admission();
    assert_eq!(a.retry_from, l.max_handshakes.div_ceil(2));
    assert_eq!(l.admin_http().max_connections, 256);
    // A per-source cap above the total is the total.
    let c = Config::parse(&format!("{BASE}\n[limits]\nmax_handshakes = 8\n")).unwrap();
    assert_eq!(c.limits.admission().max_per_source, 8);
}

#[test]
fn deadlines_saturate() {
    let now = std::time::Instant::now();
    assert_eq!(deadline(now, Duration::from_secs(5)), now + Duration::from_secs(5));
    let far = deadline(now, Duration::MAX);
    assert!(far > now + Duration::from_secs(10 * 365 * 86_400), "saturates far in the future");
    assert_eq!(deadline(now, Duration::ZERO), now);
}

#[test]
fn listen_addresses_must_not_collide() {
    for (listen, key, other) in [
        ("sni = \"127.0.0.1:15001\"\nhttp = \"127.0.0.1:15001\"", "listen.http", "listen.sni"),
        ("sni = \"0.0.0.0:15001\"\nadmin = \"127.0.0.1:15001\"", "listen.admin", "listen.sni"),
        ("http = \"[::]:15080\"\nadmin = \"10.0.0.1:15080\"", "listen.admin", "listen.http"),
    ] {
        let e = err(&format!("{BASE}\n[listen]\n{listen}\n"));
        assert!(e.contains(&format!("`{key}`")) && e.contains(other), "{listen}: {e}");
    }
    let e =
        err(&format!("{BASE}\n[[listen.tcp]]\naddress = \"0.0.0.0:15001\"\nservice = \"payments.prod\"\nport = 443\n"));
    assert!(e.contains("listen.tcp[0].address") && e.contains("listen.sni"), "{e}");
    // Port 0 (tests) never collides; the tunnel is UDP and may share a TCP listener's number;
    // an IPv4 wildcard and an IPv6 address are different sockets.
    let fine = "tunnel = \"127.0.0.1:15001\"\nsni = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nadmin = \"0.0.0.0:15021\"";
    Config::parse(&format!("{BASE}\n[listen]\n{fine}\n")).unwrap();
    Config::parse(&format!("{BASE}\n[listen]\nsni = \"0.0.0.0:15001\"\nhttp = \"[::1]:15001\"\n")).unwrap();
}

#[test]
fn tunnel_port_zero_only_without_fixed_advertised_addresses() {
    let text = format!("{FEDERATED}address = \"a:1\"\ntunnel_addresses = [\"lb.example.com:15443\"]\n");
    let e = err(&text.replace("[federator]", "[listen]\ntunnel = \"0.0.0.0:0\"\n\n[federator]"));
    assert!(e.contains("`listen.tunnel`") && e.contains("tunnel_addresses"), "{e}");
    // Without fixed addresses the bound port is advertised: fine (tests do this).
    let ok = format!("{FEDERATED}address = \"a:1\"\n")
        .replace("[federator]", "[listen]\ntunnel = \"127.0.0.1:0\"\n\n[federator]");
    Config::parse(&ok).unwrap();
}

#[test]
fn dns_is_off_by_default_and_needs_an_address_to_answer() {
    let c = Config::parse(BASE).unwrap();
    assert_eq!(c.listen.dns, ListenAddr::Off);
    assert_eq!(c.dns.ttl, Duration::from_secs(5));
    // On, with wildcard egress listeners and no dns.answer: nothing to answer with.
    let e = err(&format!("{BASE}\n[listen]\ndns = \"0.0.0.0:15053\"\n"));
    assert!(e.contains("`dns.answer`") && e.contains("wildcard"), "{e}");
    // A concrete egress address, or an explicit answer (an IP or a host name), will do.
    Config::parse(&format!("{BASE}\n[listen]\ndns = \"0.0.0.0:15053\"\nsni = \"10.0.0.5:15001\"\n")).unwrap();
    let c = Config::parse(&format!(
        "{BASE}\n[listen]\ndns = \"0.0.0.0:15053\"\n[dns]\nanswer = [\"10.96.0.42\", \"skybridge-egress.skybridge-system.svc.cluster.local\"]\nttl = \"30s\"\ntls_port = 443\n"
    ))
    .unwrap();
    assert_eq!(c.dns.answer[0], AnswerAddress::Ip("10.96.0.42".parse().unwrap()));
    assert_eq!(c.dns.answer[1], AnswerAddress::Host("skybridge-egress.skybridge-system.svc.cluster.local".into()));
    for (dns, key, why) in [
        ("answer = [\"0.0.0.0\"]", "dns.answer[0]", "wildcard"),
        ("answer = [\"not a host\"]", "dns.answer[0]", "host name"),
        ("ttl = \"0s\"", "dns.ttl", "at least"),
        ("max_queries_per_second = 0", "dns.max_queries_per_second", "positive"),
        ("tls_port = 0", "dns.tls_port", "port"),
    ] {
        let e = err(&format!("{BASE}\n[dns]\n{dns}\n"));
        assert!(e.contains(&format!("`{key}`")) && e.contains(why), "{dns}: {e}");
    }
    // DNS takes UDP and TCP: neither the tunnel's UDP nor a TCP listener's address.
    let e = err(&format!(
        "{BASE}\n[listen]\ntunnel = \"0.0.0.0:15053\"\ndns = \"0.0.0.0:15053\"\nsni = \"10.0.0.5:15001\"\n"
    ));
    assert!(e.contains("`listen.dns`") && e.contains("listen.tunnel"), "{e}");
    let e = err(&format!("{BASE}\n[listen]\ndns = \"10.0.0.5:15001\"\nsni = \"10.0.0.5:15001\"\n"));
    assert!(e.contains("`listen.dns`") && e.contains("listen.sni"), "{e}");
}
