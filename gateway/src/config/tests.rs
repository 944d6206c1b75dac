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
    assert_eq!(c.listen.sni, "0.0.0.0:15001");
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
    let e = err(&format!("{BASE}\n[listen]\nsni = \"localhost\"\n"));
    assert!(e.contains("listen.sni") && e.contains("localhost"), "{e}");
    let e = err(&format!("{BASE}\n[listen]\ntunnel = \"off\"\n"));
    assert!(e.contains("listen.tunnel"), "{e}");
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
    assert!(e.contains("listen.tcp[0].service"), "{e}");
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
