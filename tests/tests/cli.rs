//! The client commands (`status`, `clusters`, `services`, `routes`, `whatif`, `check`,
//! `policy`) of the
//! real binary against a real fleet: a federator and three gateway processes whose tunnels run
//! through the WAN relay (see `skybridge_tests::fleet`).

use std::process::{Command, Output};
use std::time::Duration;

use skybridge_tests::fleet::{Fleet, Layout, until};
use skybridge_tests::skybridge_bin;

const LAYOUT: Layout = Layout { aws_gcp: 20, aws_azure: 30, gcp_azure: 40 };

/// `skybridge ARGS` on a blocking thread (the fleet's backends run on the test's runtime); the
/// command and its output go to the test's (captured) stderr.
async fn sky(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let out = tokio::task::spawn_blocking({
        let args = args.clone();
        move || Command::new(skybridge_bin()).args(&args).output().expect("running skybridge")
    })
    .await
    .unwrap();
    eprintln!("$ skybridge {} ({})\n{}", args.join(" "), out.status, text(&out));
    out
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("-o json is not JSON ({e}): {}", text(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_against_a_running_fleet() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut f = Fleet::start(LAYOUT).await;
    let api = format!("http://{}", f.api);
    let api = api.as_str();

    // Healthy once every gateway has measured its peers.
    until("skybridge check passes", Duration::from_secs(60), async || {
        sky(&["check", "--api", api]).await.status.success()
    })
    .await;
    let out = sky(&["check", "--api", api]).await;
    let report = text(&out);
    for want in ["ok    federator", "aws-1 → gcp-1 healthy, RTT", "gcp-1 → azure-1 healthy", "checks passed"] {
        assert!(report.contains(want), "{want:?} in\n{report}");
    }
    assert!(!report.contains("FAIL"), "{report}");

    // status: one screen; also from SKYBRIDGE_API instead of --api.
    let out = tokio::task::spawn_blocking({
        let api = api.to_owned();
        move || Command::new(skybridge_bin()).arg("status").env("SKYBRIDGE_API", api).output().unwrap()
    })
    .await
    .unwrap();
    let s = text(&out);
    eprintln!("$ SKYBRIDGE_API={api} skybridge status ({})\n{s}", out.status);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("GATEWAYS          3/3 connected") && s.contains("CLUSTERS          3"), "{s}");
    assert!(s.contains("SOURCE") && s.contains("ok"), "{s}");
    let v = json(&sky(&["status", "--api", api, "-o", "json"]).await);
    assert_eq!(v["gateways"]["gateways"].as_array().map(Vec::len), Some(3), "{v}");

    // clusters
    let out = sky(&["clusters", "--api", api]).await;
    let s = text(&out);
    assert!(out.status.success() && s.starts_with("CLUSTER   CLOUD   REGION   GATEWAYS   SERVICES\n"), "{s}");
    for row in ["aws-1     aws     r        1/1        1", "azure-1   azure   r        1/1        1", "gcp-1     gcp"] {
        assert!(s.contains(row), "{row:?} in\n{s}");
    }
    let v = json(&sky(&["clusters", "--api", api, "-o", "json"]).await);
    assert_eq!(v["clusters"].as_array().map(Vec::len), Some(3), "{v}");

    // services, and one in detail
    let out = sky(&["services", "--api", api]).await;
    let s = text(&out);
    assert!(out.status.success() && s.contains("NAMESPACE   NAME   PORTS"), "{s}");
    assert!(s.contains("prod        web    80/http   aws-1:1/1,azure-1:1/1,gcp-1:1/1   no          no"), "{s}");
    let out = sky(&["services", "prod/web", "--api", api]).await;
    let s = text(&out);
    assert!(out.status.success() && s.contains("web.prod.svc.clusterset.local") && s.contains("ENDPOINT"), "{s}");
    let v = json(&sky(&["services", "prod/web", "--api", api, "-o", "json"]).await);
    assert_eq!(v["clusters"].as_array().map(Vec::len), Some(3), "{v}");
    let out = sky(&["services", "prod/nope", "--api", api]).await;
    assert!(!out.status.success() && text(&out).contains("404"), "{}", text(&out));

    // routes: the local copy first, from each cluster
    let out = sky(&["routes", "--api", api]).await;
    let s = text(&out);
    assert!(out.status.success() && s.starts_with("SERVICE    FROM      PREFERRED   SHARES"), "{s}");
    let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(s.lines().any(|l| words(l) == "prod/web aws-1 aws-1 aws-1 100% 0.0 ms"), "{s}");
    let out = sky(&["routes", "--api", api, "--from", "gcp-1", "--service", "prod/web"]).await;
    let s = text(&out);
    assert_eq!(s.lines().count(), 2, "{s}");
    let v = json(&sky(&["routes", "--api", api, "-o", "json"]).await);
    assert_eq!(v["routes"].as_array().map(Vec::len), Some(3), "{v}");

    // whatif through the shared client
    let v = json(&sky(&["whatif", "--api", api, "--down", "gcp-1", "-o", "json"]).await);
    assert_eq!(v["down"][0], "gcp-1", "{v}");
    let out = sky(&["whatif", "--api", api, "--down", "nope-1"]).await;
    assert!(!out.status.success() && text(&out).contains("unknown cluster nope-1"), "{}", text(&out));

    // Certificates through the gateways' admin ports and the federator's replica record: the
    // test CA issues 30-day certificates (outside the default 7-day tls.expiry_warning).
    let admins: Vec<String> = f.admin.values().map(ToString::to_string).collect();
    let mut args = vec!["check", "--api", api];
    for a in &admins {
        args.extend(["--gateway-admin", a.as_str()]);
    }
    let out = sky(&args).await;
    let s = text(&out);
    assert!(out.status.success() && s.contains("certificate valid for") && s.contains("tunnel"), "{s}");
    assert!(s.contains("ok    cert       federator ") && s.contains("gateway aws-1"), "{s}");
    let out = sky(&[&args[..], &["--cert-warn", "60d"]].concat()).await;
    let s = text(&out);
    assert!(!out.status.success(), "{s}");
    assert!(
        s.contains("FAIL  cert") && s.contains("certificate expires in") && s.contains("within --cert-warn 60d"),
        "{s}"
    );

    // policy set / get / delete, the token from a file; without one a write is refused.
    let token = f.token_file();
    let tf = token.to_str().unwrap();
    let set =
        ["policy", "set", "prod/web", "--api", api, "--token-file", tf, "--avoid", "azure-1", "--allow", "aws-*,gcp-*"];
    let s = text(&sky(&set).await);
    assert!(s.contains("prod/web   api      -         -          azure-1   aws-*,gcp-*"), "{s}");
    let s = text(&sky(&["policy", "get", "--api", api]).await);
    assert!(s.starts_with("Authorization default: allow\n") && s.contains("prod/web"), "{s}");
    let one = json(&sky(&["policy", "get", "prod/web", "--api", api, "-o", "json"]).await);
    assert_eq!(
        (one["source"].clone(), one["policy"]["avoid"].clone()),
        (serde_json::json!("api"), serde_json::json!(["azure-1"]))
    );
    let out = sky(&["policy", "set", "prod/web", "--api", api, "--avoid", "gcp-1"]).await;
    assert!(!out.status.success() && text(&out).contains("--token-file"), "{}", text(&out));
    let out = sky(&["policy", "set", "prod/web", "--api", api, "--token-file", tf, "--weights", "aws-1=60"]).await;
    assert!(!out.status.success() && text(&out).contains("400") && text(&out).contains("sum to 60"), "{}", text(&out));
    assert!(text(&sky(&["policy", "delete", "prod/web", "--api", api, "--token-file", tf]).await).contains("deleted"));
    let out = sky(&["policy", "get", "prod/web", "--api", api]).await;
    assert!(!out.status.success() && text(&out).contains("404"), "{}", text(&out));

    // An unreachable federator is named.
    let out = sky(&["check", "--api", "http://127.0.0.1:1"]).await;
    let s = text(&out);
    assert!(!out.status.success() && s.contains("FAIL  federator  http://127.0.0.1:1 cannot be reached"), "{s}");

    // A cut link: check fails naming the path.
    f.cut("aws-1", "gcp-1", true);
    until("check names the cut path", Duration::from_secs(30), async || {
        let out = sky(&["check", "--api", api]).await;
        let s = text(&out);
        !out.status.success() && s.lines().any(|l| l.starts_with("FAIL  path") && l.contains("aws-1 → gcp-1"))
    })
    .await;
    f.cut("aws-1", "gcp-1", false);

    // A stopped gateway: check fails naming it.
    f.kill_gateway("gcp-1");
    until("check names the stopped gateway", Duration::from_secs(30), async || {
        let out = sky(&["check", "--api", api]).await;
        let s = text(&out);
        !out.status.success()
            && s.lines().any(|l| l.starts_with("FAIL  gateway    gcp-1/") && l.contains("is not connected"))
    })
    .await;
    let out = sky(&["check", "--api", api]).await;
    assert!(text(&out).contains("checks failed"), "{}", text(&out));
}
