//! A real moto server (pip `moto[server]`) standing in for AWS Cloud Map in tests and benches
//! (feature `testing`): started on a free loopback port below the ephemeral range, killed by PID
//! when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `moto_server`.
#[derive(Debug)]
pub struct Moto {
    pub addr: SocketAddr,
    child: Child,
}

impl Moto {
    /// Starts `moto_server` with extra environment (e.g. `INITIAL_NO_AUTH_ACTION_COUNT=0` to
    /// enforce credentials as AWS does); waits until it accepts connections.
    pub fn start(env: &[(&str, &str)]) -> Moto {
        // Below 32768: a port in the ephemeral range can be taken by any outgoing connection
        // between this check and moto's bind.
        let addr = loop {
            let port = 20_000 + fastrand::u16(..12_000);
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                break l.local_addr().expect("bound");
            }
        };
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server not found: pip install 'moto[server]' (scripts/test.sh does)");
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto_server did not start on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { addr, child }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
