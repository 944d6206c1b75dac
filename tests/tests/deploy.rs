//! The deployment artefacts: Terraform modules, the plain Kubernetes YAML and the Dockerfile.
//! Terraform's providers cannot be downloaded here, so the provider-free manifests module runs
//! for real (`terraform test`, and its rendered configs go through `skybridge --check-config`),
//! while the cloud modules get a real HCL parser's static checks and checkov.
//!
//! Tools: `terraform` on PATH (not installable from the package registries: when missing these
//! tests fail saying so), and checkov + python-hcl2 in the virtualenv `scripts/test.sh` makes
//! (`$SKYBRIDGE_DEPLOY_TOOLS`, default `~/.cache/skybridge/deploy-tools`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use skybridge_tests::run;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn terraform() -> Command {
    let found = Command::new("terraform").arg("version").output().is_ok_and(|o| o.status.success());
    assert!(
        found,
        "TERRAFORM IS NOT INSTALLED: the Terraform tests cannot run. It is not in the package \
         registries; install it from releases.hashicorp.com onto PATH."
    );
    let mut c = Command::new("terraform");
    // No ~/.terraformrc is needed; an empty one silences the warning about its absence.
    let rc = std::env::temp_dir().join("skybridge-empty-terraformrc");
    std::fs::write(&rc, "").unwrap();
    c.env("TF_CLI_CONFIG_FILE", rc).env("TF_IN_AUTOMATION", "1").env("NO_COLOR", "1");
    c
}

fn tools() -> PathBuf {
    let dir = std::env::var_os("SKYBRIDGE_DEPLOY_TOOLS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/skybridge/deploy-tools")
    });
    assert!(
        dir.join("bin/checkov").exists(),
        "checkov and python-hcl2 are not installed in {}: run scripts/test.sh, which installs them",
        dir.display()
    );
    dir
}

#[track_caller]
fn ok(what: &str, out: Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn terraform_is_formatted() {
    let out =
        terraform().args(["fmt", "-check", "-recursive", "-diff", "terraform", "deploy"]).current_dir(repo()).output();
    ok("terraform fmt -check -recursive", out.unwrap());
}

#[test]
fn manifests_module_passes_terraform_test() {
    let data = tempfile::tempdir().unwrap();
    let module = repo().join("terraform/modules/gateway-manifests");
    // TF_DATA_DIR keeps .terraform/ out of the repository.
    let init = terraform().args(["init", "-input=false"]).env("TF_DATA_DIR", data.path()).current_dir(&module).output();
    ok("terraform init (gateway-manifests)", init.unwrap());
    let test = terraform().arg("test").env("TF_DATA_DIR", data.path()).current_dir(&module).output();
    let text = ok("terraform test (gateway-manifests)", test.unwrap());
    assert!(text.contains("0 failed") && !text.contains(" 0 passed"), "{text}");
}

/// Renders the module with certificate paths pointing at real files, so that `--check-config`
/// loads them, and the sources the cloud modules generate.
const ROOT: &str = r#"
module "gw" {
  source               = "MODULE"
  cluster_id           = "aws-prod-use1"
  cloud                = "aws"
  region               = "us-east-1"
  trust_domain         = "deploy.test"
  image                = "registry.example.com/skybridge:0.1.0"
  federator_address    = "federator.deploy.test:15010"
  advertised_addresses = ["203.0.113.10:15443"]
  tls_mount_path       = "DIR/gw"
  otlp_endpoint        = "http://otel-collector.observability:4317"
  extra_gateway_config = "\n[routing]\nprefer_local = false\n"
}
module "fed" {
  source            = "MODULE"
  cluster_id        = "aws-prod-use1"
  cloud             = "aws"
  region            = "us-east-1"
  trust_domain      = "deploy.test"
  image             = "registry.example.com/skybridge:0.1.0"
  federator_address = "federator.deploy.test:15010"
  tls_mount_path    = "DIR/fed"
  federator = {
    api_token_secret_name = "skybridge-api-token"
    sources_toml          = <<-TOML
      [[sources]]
      type = "aws-cloudmap"
      id = "aws-prod-use1"
      region = "us-east-1"
      namespaces = ["prod.example.local"]

      [[sources]]
      type = "static"
      id = "extra"
      path = "DIR/catalog.toml"
    TOML
  }
}
module "ha" {
  source            = "MODULE"
  cluster_id        = "aws-prod-use1"
  cloud             = "aws"
  region            = "us-east-1"
  trust_domain      = "deploy.test"
  image             = "registry.example.com/skybridge:0.1.0"
  federator_address = "federator.deploy.test:15010"
  tls_mount_path    = "DIR/fed"
  federator = {
    sources_toml = "[[sources]]\ntype = \"static\"\nid = \"extra\"\npath = \"DIR/catalog.toml\"\n"
    etcd         = { endpoints = ["http://127.0.0.1:2379"] }
  }
}
output "gateway" { value = module.gw.gateway_config }
output "federator" { value = module.fed.federator_config }
output "federator_ha" { value = module.ha.federator_config }
output "gateway_ha" { value = module.ha.gateway_config }
"#;

#[test]
fn rendered_configs_pass_the_binarys_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    ok("ca init", run(&["ca", "init", "--trust-domain", "deploy.test", "--out", &s(&d.join("ca"))]));
    let issue = |extra: &[&str], out: &str| {
        let mut args = vec!["ca", "issue", "--ca"];
        let ca = s(&d.join("ca"));
        let out = s(&d.join(out));
        args.push(&ca);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", &out]);
        ok("ca issue", run(&args));
    };
    issue(&["--cluster", "aws-prod-use1"], "gw");
    issue(&["--federator", "--dns", "federator.deploy.test"], "fed");
    std::fs::write(d.join("catalog.toml"), "").unwrap();

    let work = d.join("tf");
    std::fs::create_dir(&work).unwrap();
    let module = repo().join("terraform/modules/gateway-manifests");
    let root = ROOT.replace("MODULE", module.to_str().unwrap()).replace("DIR", d.to_str().unwrap());
    std::fs::write(work.join("main.tf"), root).unwrap();
    let tf = |args: &[&str]| terraform().args(args).current_dir(&work).output().unwrap();
    ok("terraform init", tf(&["init", "-input=false"]));
    ok("terraform apply", tf(&["apply", "-input=false", "-auto-approve"]));
    // The replicated federator (etcd) and its same-cluster gateway too: `--check-config` reads
    // no store, so no etcd is needed.
    for (role, output) in
        [("gateway", "gateway"), ("federator", "federator"), ("federator", "federator_ha"), ("gateway", "gateway_ha")]
    {
        let mut config = ok("terraform output", tf(&["output", "-raw", output]));
        if output == "gateway_ha" {
            // The module mounts one certificate path for both; this gateway is aws-prod-use1's.
            config = config.replace(&format!("{}/fed/", d.display()), &format!("{}/gw/", d.display()));
        }
        // The API token is a Secret mounted in the pod; `--check-config` reads it, so it must
        // exist here too.
        let token = d.join("api-token");
        std::fs::write(&token, "t0ken").unwrap();
        let config = config.replace("/etc/skybridge/api-token/token", &s(&token));
        let path = d.join(format!("{output}.toml"));
        std::fs::write(&path, &config).unwrap();
        let out = run(&[role, "--config", &s(&path), "--check-config"]);
        assert!(
            out.status.success(),
            "the rendered {role} config fails `skybridge {role} --check-config`:\n{}\n--- config ---\n{config}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn plain_kubernetes_yaml_matches_the_module() {
    let out = Command::new("bash").arg("scripts/render-manifests.sh").arg("--check").current_dir(repo()).output();
    ok("scripts/render-manifests.sh --check (deploy/kubernetes drifted from the module?)", out.unwrap());
}

#[test]
fn every_terraform_file_parses_and_its_references_resolve() {
    let python = tools().join("bin/python");
    let out =
        Command::new(python).args(["scripts/check-terraform.py", "terraform", "deploy"]).current_dir(repo()).output();
    let text = ok("scripts/check-terraform.py", out.unwrap());
    // The manifests module, the three cloud modules, the example and the YAML render root.
    let n: usize = text.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(n >= 6, "expected at least 6 Terraform directories: {text}");
}

#[test]
fn checkov_finds_nothing() {
    let checkov = tools().join("bin/checkov");
    for (target, framework) in
        [("terraform", "terraform"), ("deploy/kubernetes", "kubernetes"), ("Dockerfile", "dockerfile")]
    {
        let flag = if target == "Dockerfile" { "-f" } else { "-d" };
        let out = Command::new(&checkov)
            .args([flag, target, "--framework", framework, "--quiet", "--compact", "--skip-download"])
            .current_dir(repo())
            .output()
            .unwrap();
        let text = ok(&format!("checkov on {target}"), out);
        assert!(text.contains("Failed checks: 0"), "checkov on {target}:\n{text}");
    }
}

#[test]
fn the_reference_checker_reports_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let module = repo().join("terraform/modules/gateway-manifests");
    let text = format!(
        "variable \"x\" {{\n  type = string\n}}\n\
         module \"m\" {{\n  source     = \"{}\"\n  cluster_id = var.y\n  bogus      = 1\n}}\n\
         output \"o\" {{\n  value = module.m.nope\n}}\n",
        pathdiff(&root, &module)
    );
    std::fs::write(root.join("main.tf"), text).unwrap();
    let out = Command::new(tools().join("bin/python"))
        .arg(repo().join("scripts/check-terraform.py"))
        .arg(dir.path())
        .arg(repo().join("terraform/modules"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken tree passed");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "variable 'x' has no description",
        "var.y is used but not declared",
        "passes 'bogus'",
        "does not pass required input 'image'",
        "module.m.nope is not an output",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// `to` relative to `from` (module sources must be relative paths to count as local).
fn pathdiff(from: &Path, to: &Path) -> String {
    let up = from.components().count() - 1;
    format!("{}{}", "../".repeat(up), to.strip_prefix("/").unwrap().display())
}

#[test]
fn terraform_and_yaml_match_the_provider_and_kubernetes_schemas() {
    let python = tools().join("bin/python");
    let out = Command::new(python)
        .args(["scripts/check-provider-schemas.py", "terraform", "deploy"])
        .current_dir(repo())
        .output();
    let text = ok("scripts/check-provider-schemas.py (schemas: scripts/fetch-provider-schemas.sh)", out.unwrap());
    for want in ["hashicorp/aws", "hashicorp/google", "hashicorp/azurerm", "hashicorp/kubernetes", "kubernetes: "] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains(": 0 blocks checked"), "a pinned provider schema checked nothing:\n{text}");
}

#[test]
fn the_schema_checker_reports_what_is_wrong() {
    let out = Command::new(tools().join("bin/python"))
        .args(["scripts/check-provider-schemas.py", "scripts/testdata/broken-module"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken module passed");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "is outside required_providers '~> 4.60'",
        "aws_eip.typo: unknown argument 'domian'",
        "aws_elastic_ip.nope: unknown resource type 'aws_elastic_ip'",
        "google_compute_firewall.fw: missing required argument 'network'",
        "google_compute_firewall.fw: 'allow' is a block, not an argument",
        "google_compute_firewall.fw: 'source_ranges' is an argument, not a block",
        "google_compute_firewall.fw: unknown argument 'deny.port'",
        "google_compute_address.ip: argument 'address_type' expects string, got a list",
        "google_compute_address.ip: argument 'labels' expects map, got a string",
        "kubernetes_config_map_v1_data.cm: missing required block 'metadata'",
        "Kubernetes 1.25.0: spec: Additional properties are not allowed ('typ' was unexpected)",
        "Kubernetes 1.37.0: spec.ports.0.port: 'many' is not of type 'integer'",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    for wrong in
        ["aws_eip.ok", "kubernetes_manifest.free_form", "data.aws_caller_identity.current", "'count'", "'lifecycle'"]
    {
        assert!(!err.contains(wrong), "valid code reported ({wrong:?}):\n{err}");
    }
}
