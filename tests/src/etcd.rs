//! A real etcd cluster (Debian's `etcd-server`) on loopback for the replicated-store tests:
//! members on free ports below 32768, each its own process with its own data folder, stopped,
//! paused or killed by PID.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_low_tcp, http_status};

/// One member.
pub struct Member {
    pub name: String,
    pub client: SocketAddr,
    pub peer: SocketAddr,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A cluster of members started together.
pub struct Etcd {
    pub members: Vec<Member>,
    initial: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts `n` members and waits until the cluster has a leader.
    pub fn start(n: usize) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_low_tcp(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: ports[2 * i],
                peer: ports[2 * i + 1],
                data: dir.path().join(format!("m{i}")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial = members.iter().map(|m| format!("{}=http://{}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        let mut etcd = Etcd { members, initial, _dir: dir };
        for i in 0..n {
            etcd.spawn(i);
        }
        etcd.wait_healthy(Duration::from_secs(30));
        etcd
    }

    fn spawn(&mut self, i: usize) {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir", m.data.to_str().unwrap()])
            .args(["--listen-client-urls", &format!("http://{}", m.client)])
            .args(["--advertise-client-urls", &format!("http://{}", m.client)])
            .args(["--listen-peer-urls", &format!("http://{}", m.peer)])
            .args(["--initial-advertise-peer-urls", &format!("http://{}", m.peer)])
            .args(["--initial-cluster", &self.initial, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "skybridge-test"])
            // Loopback: fast heartbeats make elections (and these tests) quick.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd not found: apt-get install etcd-server (scripts/test.sh does)");
        m.child = Some(child);
    }

    /// The client URLs, for `[store] endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://{}", m.client)).collect()
    }

    /// `endpoints` as a TOML array.
    pub fn endpoints_toml(&self) -> String {
        let quoted: Vec<String> = self.endpoints().iter().map(|e| format!("\"{e}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// Waits until every running member reports a healthy cluster (a leader, quorum).
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            while http_status(m.client, "/health") != Some(200) {
                assert!(Instant::now() < deadline, "etcd member {} not healthy:\n{}", m.name, self.log(m));
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn log(&self, m: &Member) -> String {
        std::fs::read_to_string(&m.log).unwrap_or_default()
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.members[i].child.as_ref().expect("member running").id();
        let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        self.signal(i, "-KILL");
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.wait();
        }
    }

    /// Restarts a killed member on its data folder.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i);
    }

    /// Runs `etcdctl ARGS` against the cluster; stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints().join(",")])
            .args(args)
            .output()
            .expect("etcdctl not found: apt-get install etcd-client (scripts/test.sh does)");
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
