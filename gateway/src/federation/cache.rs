//! The catalog cache file: the last catalog this gateway verified, with the gateway list and
//! policies it routes on, so that a gateway restarting while no federator answers still routes
//! (DESIGN, static stability).
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic "SKYBCACH" (8) | format version u32 | payload length u64 | payload | CRC-32 u32
//! ```
//!
//! The payload is the protobuf `CatalogCache` of the control protocol; the CRC covers every
//! byte before it. A file is trusted only if all of it checks out, it was written for this
//! gateway's cluster and trust domain, and its catalog's digest verifies (the same checks a
//! snapshot from the federator gets); anything else is ignored, never partly used.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use skybridge_api::proto::{catalog_cache_from_bytes, catalog_cache_to_bytes, wire};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::held::HeldCatalog;
use super::status::FederationStatus;
use crate::metrics::{Metrics, ResultLabels};

/// The first bytes of every cache file.
pub const MAGIC: &[u8; 8] = b"SKYBCACH";
/// The layout version written; files of another version are ignored (rewritten after the
/// federator answers).
pub const FORMAT: u32 = 1;
/// How long start-up waits for the cache file to be read before going on without it.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

const HEADER: usize = MAGIC.len() + 4 + 8;
const TRAILER: usize = 4;

/// The largest cache file read or written. A snapshot reaches the gateway in parts that are
/// each at most `max_message_size`, so the whole catalog (what the file holds) may be larger
/// than one message; four times leaves room for that while a wrong path (a disk image, a log)
/// can never make start-up read an unbounded file into memory.
pub fn size_limit(max_message_size: usize) -> u64 {
    (max_message_size as u64).saturating_mul(4)
}

/// Whose cache it is: a file written for another cluster or trust domain is never trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub cluster: String,
    pub trust_domain: String,
}

/// A cache file that checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub held: HeldCatalog,
    pub version: u64,
    pub written_at_unix_ms: u64,
}

/// Why a cache file was not used. Each message says what is wrong with the file.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    #[error(
        "it is {size} bytes, more than the {limit} allowed (4 x federator.max_message_size); \
         is federator.catalog_cache the right file?"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("it is not a Skybridge catalog cache (wrong magic bytes)")]
    WrongMagic,
    #[error("it has format version {0}, this gateway reads version {FORMAT}")]
    UnsupportedFormat(u32),
    #[error("it is truncated or has trailing bytes: {got} bytes, the header announces {expected}")]
    Truncated { expected: u64, got: u64 },
    #[error("its checksum does not match (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt")]
    Checksum { stored: u32, computed: u32 },
    #[error("its contents do not decode: {0}")]
    Decode(String),
    #[error("it was written by a gateway of cluster {found:?}, this one is {expected:?}")]
    ForeignCluster { found: String, expected: String },
    #[error("it was written for trust domain {found:?}, this gateway's is {expected:?}")]
    ForeignTrustDomain { found: String, expected: String },
    #[error("its catalog is not valid: {0}")]
    Catalog(String),
}

/// Why a cache file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "the catalog encodes to {size} bytes, more than the {limit} a cache file may hold \
         (4 x federator.max_message_size); it would not be read back, so it is not written"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error(
        "cannot write {path}: {source} (is its folder writable? set federator.catalog_cache to a \
         writable path, or \"off\")"
    )]
    Io { path: PathBuf, source: std::io::Error },
}

/// CRC-32 (IEEE 802.3, the one zlib and PNG use), table-driven.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !bytes.iter().fold(!0u32, |c, b| TABLE[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8))
}

/// The file's bytes for `snapshot`, written by `owner` at `written_at_unix_ms`.
pub fn encode(owner: &Owner, written_at_unix_ms: u64, snapshot: wire::Snapshot) -> Vec<u8> {
    let payload = catalog_cache_to_bytes(&wire::CatalogCache {
        cluster: owner.cluster.clone(),
        trust_domain: owner.trust_domain.clone(),
        written_at_unix_ms,
        snapshot: Some(snapshot),
    });
    let mut out = Vec::with_capacity(HEADER + payload.len() + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks every byte of a cache file and that it is `owner`'s, then verifies its catalog.
pub fn decode(bytes: &[u8], owner: &Owner) -> Result<Cached, CacheError> {
    let got = bytes.len() as u64;
    if bytes.len() < MAGIC.len() {
        return Err(CacheError::Truncated { expected: (HEADER + TRAILER) as u64, got });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(CacheError::WrongMagic);
    }
    if bytes.len() < HEADER + TRAILER {
        return Err(CacheError::Truncated { expected: (HEADER + TRAILER) as u64, got });
    }
    let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(CacheError::UnsupportedFormat(format));
    }
    let announced = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let expected = announced.saturating_add((HEADER + TRAILER) as u64);
    if expected != got {
        return Err(CacheError::Truncated { expected, got });
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER);
    let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
    let computed = crc32(body);
    if stored != computed {
        return Err(CacheError::Checksum { stored, computed });
    }
    let file = catalog_cache_from_bytes(&body[HEADER..]).map_err(|e| CacheError::Decode(e.reason))?;
    if file.cluster != owner.cluster {
        return Err(CacheError::ForeignCluster { found: file.cluster, expected: owner.cluster.clone() });
    }
    if file.trust_domain != owner.trust_domain {
        return Err(CacheError::ForeignTrustDomain { found: file.trust_domain, expected: owner.trust_domain.clone() });
    }
    let snapshot = file.snapshot.ok_or_else(|| CacheError::Decode("no snapshot in it".into()))?;
    if snapshot.version == 0 {
        return Err(CacheError::Catalog("version 0 is no catalog".into()));
    }
    let mut held = HeldCatalog::default();
    let applied =
        held.apply(wire::federator_message::Msg::Snapshot(snapshot)).map_err(|r| CacheError::Catalog(r.reason))?;
    Ok(Cached { held, version: applied.version, written_at_unix_ms: file.written_at_unix_ms })
}

/// Reads and checks the cache file; `Ok(None)` when there is none yet (first start).
pub fn load(path: &Path, owner: &Owner, limit: u64) -> Result<Option<Cached>, CacheError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CacheError::Read(e)),
    };
    let size = file.metadata().map_err(CacheError::Read)?.len();
    if size > limit {
        return Err(CacheError::TooLarge { size, limit });
    }
    // Bounded again while reading, in case the file grew since its size was read.
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(CacheError::Read)?;
    if bytes.len() as u64 > limit {
        return Err(CacheError::TooLarge { size: bytes.len() as u64, limit });
    }
    decode(&bytes, owner).map(Some)
}

fn split(path: &Path) -> (&Path, String) {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "catalog-cache".into());
    (dir, name)
}

/// The prefix of `path`'s temporary files; the random rest keeps two writers of one file (a
/// shared volume) from writing into each other's.
fn temp_prefix(name: &str) -> String {
    format!(".{name}.")
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the new one, never a
/// mix: a temporary file in the same folder, flushed to disk, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let io = |source| WriteError::Io { path: path.to_owned(), source };
    let (dir, name) = split(path);
    let tmp = dir.join(format!("{}{:016x}.tmp", temp_prefix(&name), fastrand::u64(..)));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    // The rename itself is durable only once the folder is synced; a failure here leaves a
    // complete file that may not survive a power cut, which is no reason to fail the write.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes temporary files a crash in the middle of a write left next to `path`: each is as
/// large as the catalog, and a small volume (an `emptyDir` with a size limit) would fill up.
/// Returns how many were removed.
pub fn remove_stale_temps(path: &Path) -> usize {
    let (dir, name) = split(path);
    let prefix = temp_prefix(&name);
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".tmp")))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// What the client hands the writer: the latest accepted state (`None` before the first).
pub type Latest = Option<Arc<HeldCatalog>>;

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Writes the latest state handed over through `latest` until cancelled. The control stream
/// only replaces the value in the watch, so it never waits for the disk, and a burst of
/// updates while a write is under way becomes one more write.
pub async fn writer(
    path: PathBuf,
    owner: Owner,
    limit: u64,
    mut latest: watch::Receiver<Latest>,
    metrics: Metrics,
    status: Arc<Mutex<FederationStatus>>,
    cancel: CancellationToken,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = latest.changed() => if changed.is_err() { return },
        }
        let Some(held) = latest.borrow_and_update().clone() else { continue };
        let Some(version) = held.catalog().map(|c| c.version) else { continue };
        let now = unix_ms(SystemTime::now());
        let (p, o) = (path.clone(), owner.clone());
        // Encoding a large catalog and fsync are blocking work: off the runtime's threads.
        let job = tokio::task::spawn_blocking(move || {
            let snapshot = held.to_wire().expect("a held catalog encodes");
            let bytes = encode(&o, now, snapshot);
            if bytes.len() as u64 > limit {
                return Err(WriteError::TooLarge { size: bytes.len() as u64, limit });
            }
            write_atomic(&p, &bytes)
        });
        let result = tokio::select! {
            // A write under way finishes on its own (the rename keeps the file whole).
            _ = cancel.cancelled() => return,
            r = job => r.unwrap_or_else(|e| Err(WriteError::Io { path: path.clone(), source: std::io::Error::other(e) })),
        };
        let label = if result.is_ok() { "ok" } else { "error" };
        metrics.catalog_cache_writes.get_or_create(&ResultLabels { result: label }).inc();
        let mut st = status.lock().expect("federation status lock");
        let cache = st.cache.get_or_insert_with(Default::default);
        match result {
            Ok(()) => {
                if failing {
                    tracing::info!(file = %path.display(), version, "writing the catalog cache works again");
                }
                failing = false;
                cache.version = Some(version);
                cache.written_at_unix_ms = Some(now);
                cache.write_error = None;
                tracing::debug!(file = %path.display(), version, "catalog cache written");
            }
            Err(e) => {
                // Logged when it starts failing, not on every update; the metric counts each.
                if !failing {
                    tracing::warn!(error = %e, "cannot write the catalog cache; a restart without a federator will not route");
                }
                failing = true;
                cache.write_error = Some(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::held::tests::{catalog, gateway};
    use super::*;
    use skybridge_api::proto::snapshot_to_wire;

    fn owner() -> Owner {
        Owner { cluster: "aws-1".into(), trust_domain: "example.org".into() }
    }

    fn file(version: u64) -> Vec<u8> {
        let c = catalog(version, &["web", "api"]);
        encode(&owner(), 1_234, snapshot_to_wire(&c, vec![gateway("gcp-1", "127.0.0.1:1")], vec![]))
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn round_trip() {
        let bytes = file(7);
        assert_eq!(&bytes[..8], MAGIC);
        let got = decode(&bytes, &owner()).unwrap();
        assert_eq!((got.version, got.written_at_unix_ms), (7, 1_234));
        assert_eq!(got.held.catalog(), Some(&catalog(7, &["web", "api"])));
        assert_eq!(got.held.have(), (7, catalog(7, &["web", "api"]).digest));
    }

    #[test]
    fn every_kind_of_bad_file_is_refused_with_its_reason() {
        let good = file(7);
        let mut flipped = good.clone();
        flipped[HEADER + 5] ^= 0x40;
        let mut magic = good.clone();
        magic[0] = b'X';
        let mut format = good.clone();
        format[8] = 9;
        let foreign_cluster = {
            let o = Owner { cluster: "gcp-1".into(), ..owner() };
            encode(&o, 1, snapshot_to_wire(&catalog(7, &["web"]), vec![], vec![]))
        };
        let foreign_domain = {
            let o = Owner { trust_domain: "other.org".into(), ..owner() };
            encode(&o, 1, snapshot_to_wire(&catalog(7, &["web"]), vec![], vec![]))
        };
        let digest_mismatch = {
            let mut s = snapshot_to_wire(&catalog(7, &["web"]), vec![], vec![]);
            s.digest ^= 1;
            encode(&owner(), 1, s)
        };
        let garbage_payload = {
            // A valid frame around bytes that are no CatalogCache.
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&FORMAT.to_le_bytes());
            b.extend_from_slice(&3u64.to_le_bytes());
            b.extend_from_slice(&[0xff, 0xff, 0xff]);
            let crc = crc32(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            b
        };
        let empty = encode(&owner(), 1, snapshot_to_wire(&Default::default(), vec![], vec![]));
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("flipped bit", flipped, "checksum does not match"),
            ("truncated", good[..good.len() - 10].to_vec(), "truncated"),
            ("trailing bytes", [good.as_slice(), b"x"].concat(), "trailing"),
            ("header only", good[..HEADER].to_vec(), "truncated"),
            ("empty file", Vec::new(), "truncated"),
            ("wrong magic", magic, "wrong magic"),
            ("other format", format, "format version 9"),
            ("foreign cluster", foreign_cluster, "cluster \"gcp-1\""),
            ("foreign trust domain", foreign_domain, "trust domain \"other.org\""),
            ("digest mismatch", digest_mismatch, "digest"),
            ("garbage payload", garbage_payload, "do not decode"),
            ("version 0", empty, "version 0"),
        ];
        for (what, bytes, why) in cases {
            let e = decode(&bytes, &owner()).map(|c| c.version).unwrap_err().to_string();
            assert!(e.contains(why), "{what}: {e}");
        }
    }

    #[test]
    fn load_reads_what_write_atomic_wrote_and_bounds_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog-cache.pb");
        assert!(load(&path, &owner(), 1 << 20).unwrap().is_none(), "no file yet is no error");
        write_atomic(&path, &file(3)).unwrap();
        write_atomic(&path, &file(4)).unwrap();
        assert_eq!(load(&path, &owner(), 1 << 20).unwrap().unwrap().version, 4);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        for leftover in [".catalog-cache.pb.00000000000000aa.tmp", ".catalog-cache.pb.01.tmp"] {
            std::fs::write(dir.path().join(leftover), b"half").unwrap();
        }
        std::fs::write(dir.path().join("other.tmp"), b"not ours").unwrap();
        assert_eq!(remove_stale_temps(&path), 2);
        assert!(dir.path().join("other.tmp").exists() && path.exists());
        let e = load(&path, &owner(), 16).unwrap_err();
        assert!(matches!(e, CacheError::TooLarge { limit: 16, .. }), "{e}");
        assert_eq!(size_limit(256), 1024);
        let e = write_atomic(&dir.path().join("missing/dir/c.pb"), b"x").unwrap_err().to_string();
        assert!(e.contains("missing/dir/c.pb") && e.contains("\"off\""), "{e}");
    }
}
