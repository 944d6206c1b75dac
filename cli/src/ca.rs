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

#[derive(Subcommand)]
pub enum CaCommand {
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
    /// Issue a gateway (--cluster) or federator (--federator) certificate into DIR:
    /// cert.pem, key.pem (mode 0600) and ca.pem (the trust bundle).
    Issue {
        /// The CA folder made by `ca init`.
        #[arg(long)]
        ca: PathBuf,
        #[arg(long, required_unless_present = "federator", conflicts_with = "federator")]
        cluster: Option<String>,
        #[arg(long)]
        federator: bool,
        /// Extra DNS SANs (e.g. the federator's address).
        #[arg(long = "dns")]
        dns: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
    },
}

/// Runs a `ca` subcommand.
pub fn run(cmd: CaCommand) -> anyhow::Result<()> {
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
        CaCommand::Issue { ca: dir, cluster, federator, dns, out, days } => {
            let read = |name: &str| {
                let p = dir.join(name);
                fs::read_to_string(&p)
                    .with_context(|| format!("reading {} (made by `skybridge ca init`?)", p.display()))
            };
            let pair = PemPair { cert_pem: read(CA_CERT)?, key_pem: read(CA_KEY)? };
            let td = ca::trust_domain_of(&pair.cert_pem)?;
            let id = match (cluster, federator) {
                (Some(c), false) => {
                    SpiffeId::gateway(&td, ClusterId::new(&c).with_context(|| format!("--cluster {c:?}"))?)
                }
                (None, true) => SpiffeId::federator(&td),
                _ => bail!("give exactly one of --cluster ID or --federator"),
            };
            let leaf = ca::issue(&pair, &id, &dns, OffsetDateTime::now_utc(), days)?;
            write_pair(&out, "cert.pem", "key.pem", &leaf)?;
            write_file(&out.join(CA_CERT), pair.cert_pem.as_bytes(), 0o644)?;
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
