use super::*;

fn cfg() -> CloudMapConfig {
    toml::from_str("id = \"aws\"\nregion = \"us-east-1\"\n").unwrap()
}

fn inst(id: &str, attrs: &[(&str, &str)], health: Option<Health>) -> Instance {
    Instance { id: id.into(), attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), health }
}

fn ns(name: &str, services: Vec<Service>) -> Namespace {
    Namespace { name: name.into(), services }
}

fn svc(name: &str, created_at: u64, instances: Vec<Instance>) -> Service {
    Service { name: name.into(), created_at, instances }
}

fn key(s: &str) -> ServiceKey {
    s.parse().unwrap()
}

#[test]
fn instances_become_endpoints_grouped_by_cluster_and_port() {
    let mut c = cfg();
    c.default_protocol = Protocol::Http;
    let m = map(
        &c,
        &[ns(
            "prod.example.local",
            vec![svc(
                "payments",
                1_000,
                vec![
                    inst(
                        "a",
                        &[
                            (IPV4, "10.0.0.1"),
                            (PORT, "8080"),
                            ("cluster", "eks-east"),
                            ("AVAILABILITY_ZONE", "use1-az1"),
                        ],
                        Some(Health::Healthy),
                    ),
                    inst("b", &[(IPV4, "10.0.0.2"), (PORT, "8080"), ("cluster", "eks-east")], Some(Health::Unhealthy)),
                    inst(
                        "c",
                        &[
                            (IPV6, "fd00::3"),
                            (PORT, "8443"),
                            ("cluster", "ecs-west"),
                            ("skybridge.port", "443"),
                            ("skybridge.protocol", "tls"),
                        ],
                        Some(Health::Unknown),
                    ),
                ],
            )],
        )],
    );
    assert_eq!(m.skipped_count, 0, "{:?}", m.skipped);
    let exports = &m.snapshot.services[&key("prod/payments")];
    assert_eq!(exports.len(), 2);
    let east = exports.iter().find(|e| e.cluster.as_str() == "eks-east").unwrap();
    assert_eq!((east.exported_at, east.ports.len()), (1_000, 1));
    assert_eq!((east.ports[0].port, east.ports[0].protocol), (8080, Protocol::Http));
    let eps = &east.ports[0].endpoints;
    assert_eq!(eps[0].zone.as_deref(), Some("use1-az1"));
    assert!(eps[0].ready && !eps[1].ready, "unhealthy instances are not ready");
    let west = exports.iter().find(|e| e.cluster.as_str() == "ecs-west").unwrap();
    assert_eq!((west.ports[0].port, west.ports[0].protocol), (443, Protocol::Tls));
    assert_eq!(west.ports[0].endpoints[0].address, "[fd00::3]:8443".parse().unwrap());
    assert!(west.ports[0].endpoints[0].ready, "unknown health counts as ready");
    let clusters: Vec<_> = m.snapshot.clusters.iter().map(|c| (c.id.as_str(), c.cloud, c.region.as_str())).collect();
    assert_eq!(clusters, [("ecs-west", Cloud::Aws, "us-east-1"), ("eks-east", Cloud::Aws, "us-east-1")]);
}

#[test]
fn namespaces_map_by_table_or_first_label() {
    let mut c = cfg();
    c.default_cluster = Some(ClusterId::new("eks-1").unwrap());
    c.namespace_map.insert("payments-ns.internal".into(), "pay".into());
    let one = |n: &str| ns(n, vec![svc("api", 5, vec![inst("a", &[(IPV4, "10.0.0.1"), (PORT, "80")], None)])]);
    let m = map(&c, &[one("prod.example.local"), one("payments-ns.internal")]);
    let keys: Vec<String> = m.snapshot.services.keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["pay/api", "prod/api"]);
    assert!(m.snapshot.services[&key("prod/api")][0].ports[0].endpoints[0].ready, "no health check: ready");
}

#[test]
fn unroutable_instances_and_bad_names_are_skipped_with_reasons() {
    let m = map(
        &cfg(),
        &[ns(
            "prod.local",
            vec![
                svc(
                    "web",
                    1,
                    vec![
                        inst("no-ip", &[(PORT, "80"), ("cluster", "eks-1")], None),
                        inst("no-port", &[(IPV4, "10.0.0.1"), ("cluster", "eks-1")], None),
                        inst("no-cluster", &[(IPV4, "10.0.0.1"), (PORT, "80")], None),
                        inst(
                            "bad-proto",
                            &[(IPV4, "10.0.0.1"), (PORT, "80"), ("cluster", "eks-1"), ("skybridge.protocol", "udp")],
                            None,
                        ),
                        inst("bad-ip", &[(IPV4, "10.0.0"), (PORT, "80"), ("cluster", "eks-1")], None),
                    ],
                ),
                svc("Bad_Name", 1, vec![inst("x", &[(IPV4, "10.0.0.1"), (PORT, "80"), ("cluster", "eks-1")], None)]),
            ],
        )],
    );
    assert!(m.snapshot.services.is_empty(), "a service with no routable instance is not exported");
    assert_eq!(m.skipped_count, 6);
    let all = m.skipped.join("\n");
    for needle in ["AWS_INSTANCE_IPV4 or", "no AWS_INSTANCE_PORT", "default_cluster", "udp", "10.0.0", "Bad_Name"] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
}

#[test]
fn two_namespaces_onto_one_keep_one_export_per_cluster_and_the_oldest_date() {
    let mut c = cfg();
    c.namespace_map.insert("a.local".into(), "prod".into());
    c.namespace_map.insert("b.local".into(), "prod".into());
    let one = |n: &str, at, port| {
        ns(n, vec![svc("api", at, vec![inst("i", &[(IPV4, "10.0.0.1"), (PORT, port), ("cluster", "eks-1")], None)])])
    };
    let m = map(&c, &[one("a.local", 50, "80"), one("b.local", 10, "81")]);
    let exports = &m.snapshot.services[&key("prod/api")];
    assert_eq!(exports.len(), 1);
    assert_eq!((exports[0].exported_at, exports[0].ports.len()), (10, 2));
}
