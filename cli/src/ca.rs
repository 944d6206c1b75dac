//! `skybridge ca init|issue`: files around the pure issuance in `skybridge_api::ca`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use skybridge_api::ca::{self, DEFAULT_CA_DAYS, DEFAULT_LEAF_DAYS, PemPair};
use skybridge_api::identity::SpiffeId;
use skybridge_api::model::ClusterId;
use time::OffsetDateTime;

/// CA file names inside the CA folder.
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
/// In an intermediate's folder: the root it chains to (what peers trust).
const ROOT_CERT: &str = "root.pem";

#[derive(Subcommand)]
pub(crate) enum CaCommand {
    /// Create a root CA for a trust domain: DIR/ca.pem and DIR/ca-key.pem (mode 0600).
    Init {
        #[arg(long)]
        trust_domain: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = DEFAULT_CA_DAYS)]
        days: u32,
        /// Replace an existing CA in DIR.
        #[arg(long)]
        force: bool,
    },
    /// Issue a gateway (--cluster), federator (--federator) or operator (--admin NAME, for
    /// writes to the federator's API over TLS) certificate into DIR:
    /// cert.pem (with the intermediate, if the CA is one), key.pem (mode 0600) and ca.pem (the
    /// trust bundle: the root). Or, with --intermediate --trust-domain D, an intermediate CA
    /// for D signed by the root in --ca: DIR/ca.pem, DIR/ca-key.pem and DIR/root.pem, a folder
    /// that --ca then takes like a root's.
    Issue {
        /// The CA folder made by `ca init` (or by `ca issue --intermediate`).
        #[arg(long)]
        ca: PathBuf,
        #[arg(long, required_unless_present_any = ["federator", "intermediate", "admin"], conflicts_with_all = ["federator", "intermediate", "admin"])]
        cluster: Option<String>,
        #[arg(long, conflicts_with_all = ["intermediate", "admin"])]
        federator: bool,
        /// An operator identity spiffe://<td>/admin/NAME: a client certificate that may write
        /// to the federator's API (`[api] tls`).
        #[arg(long, value_name = "NAME", conflicts_with = "intermediate")]
        admin: Option<String>,
        /// Issue an intermediate CA delegating --trust-domain.
        #[arg(long, requires = "trust_domain")]
        intermediate: bool,
        /// The trust domain the intermediate may issue for (only with --intermediate).
        #[arg(long)]
        trust_domain: Option<String>,
        /// Extra SANs: DNS names, or IP addresses (e.g. the federator API's address).
        #[arg(long = "dns")]
        dns: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
    },
}

/// Runs a `ca` subcommand.
pub(crate) fn run(cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init { trust_domain, out, days, force } => {
            if out.join(CA_KEY).exists() && !force {
                bail!(
                    "{} already exists; pass --force to replace the CA (every certificate it issued stops being trusted)",
                    out.join(CA_KEY).display()
                );
            }
            let pair = ca::init(&trust_domain, OffsetDateTime::now_utc(), days)?;
            write_pair(&out, CA_CERT, CA_KEY, &pair)?;
            println!("created CA for trust domain {trust_domain} in {}", out.display());
        }
        CaCommand::Issue { ca: dir, cluster, federator, admin, intermediate, trust_domain, dns, out, days } => {
            let read = |name: &str| {
                let p = dir.join(name);
                fs::read_to_string(&p)
                    .with_context(|| format!("reading {} (made by `skybridge ca init`?)", p.display()))
            };
            let pair = PemPair { cert_pem: read(CA_CERT)?, key_pem: read(CA_KEY)? };
            if trust_domain.is_some() && !intermediate {
                bail!("--trust-domain names the domain of an --intermediate CA; a leaf's domain is its CA's");
            }
            // Issued by an intermediate: peers trust its root, and the leaf carries it.
            let root = dir.join(ROOT_CERT).exists().then(|| read(ROOT_CERT)).transpose()?;
            if intermediate {
                if root.is_some() {
                    bail!("{} is an intermediate CA; intermediates are issued by a root (`ca init`)", dir.display());
                }
                let td = trust_domain.expect("clap requires --trust-domain");
                let inter = ca::intermediate(&pair, &td, OffsetDateTime::now_utc(), days)?;
                write_pair(&out, CA_CERT, CA_KEY, &inter)?;
                write_file(&out.join(ROOT_CERT), pair.cert_pem.as_bytes(), 0o644)?;
                println!("issued an intermediate CA for trust domain {td} into {} (valid {days} days)", out.display());
                return Ok(());
            }
            let td = ca::trust_domain_of(&pair.cert_pem)?;
            let id = match (cluster, federator, admin) {
                (Some(c), false, None) => {
                    SpiffeId::gateway(&td, ClusterId::new(&c).with_context(|| format!("--cluster {c:?}"))?)
                }
                (None, true, None) => SpiffeId::federator(&td),
                (None, false, Some(name)) => {
                    SpiffeId::admin(&td, &name).with_context(|| format!("--admin {name:?}"))?
                }
                _ => bail!("give exactly one of --cluster ID, --federator or --admin NAME"),
            };
            let mut leaf = ca::issue(&pair, &id, &dns, OffsetDateTime::now_utc(), days)?;
            if root.is_some() {
                leaf.cert_pem.push_str(&pair.cert_pem);
            }
            write_pair(&out, "cert.pem", "key.pem", &leaf)?;
            write_file(&out.join(CA_CERT), root.as_ref().unwrap_or(&pair.cert_pem).as_bytes(), 0o644)?;
            println!("issued {id} into {} (valid {days} days)", out.display());
        }
    }
    Ok(())
}

fn write_pair(dir: &Path, cert: &str, key: &str, pair: &PemPair) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_file(&dir.join(key), pair.key_pem.as_bytes(), 0o600)?;
    write_file(&dir.join(cert), pair.cert_pem.as_bytes(), 0o644)
}

/// Writes via a temporary file and rename, so a gateway watching the file never reads half of it.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
