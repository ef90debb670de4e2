//! A real etcd for the tests: Debian's `etcd` binary (package `etcd-server`, which
//! `.ci/run` installs) on free loopback ports with a temporary data directory, stopped
//! and started again at will, killed when the test ends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::free_port;

/// One etcd member running as a child process.
pub struct Etcd {
    child: Option<Child>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts etcd and waits until it answers; panics saying what to install when the
    /// binary is not on `PATH`.
    pub fn start() -> Etcd {
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.resume();
        etcd
    }

    /// The client URL, as `state.etcd.endpoints` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills the member (its data stays): every call to it fails until [`Etcd::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the member again on the same ports and data, and waits until it answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "etcd is running already");
        let child = spawn(self.dir.path(), self.client_port, self.peer_port);
        self.child = Some(child);
        self.wait_ready();
    }

    /// A client of this member, for what a test does to etcd behind switchyard's back.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None)
            .await
            .expect("an etcd client")
    }

    /// Waits until etcd says it is healthy (it has a leader and serves reads).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !healthy(self.client_port) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("etcd exited at start ({status}); see its log above");
            }
            assert!(Instant::now() < deadline, "etcd was not healthy within 20s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether etcd on `port` answers its `/health` with `"health":"true"`.
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = String::new();
    stream.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.contains("\"health\":\"true\"")
}

/// Where an etcd's log goes: `etcd.log` in its directory (nowhere if it cannot be made).
fn log(dir: &Path) -> Stdio {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("etcd.log"));
    file.map_or_else(|_| Stdio::null(), Stdio::from)
}

/// Runs `etcd` as a one-member cluster on loopback, its data in `dir`.
fn spawn(dir: &Path, client: u16, peer: u16) -> Child {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let spawned = Command::new("etcd")
        .arg("--name=test")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=test={peer_url}"))
        .arg("--logger=zap")
        .arg("--log-level=error")
        .stdout(Stdio::null())
        // Its log stays beside its data (the temp directory) instead of in the tests'.
        .stderr(log(dir))
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "these tests need a real etcd: `etcd` is not on PATH. Install it (Debian: \
             `apt-get install -y --no-install-recommends etcd-server`), as .ci/run does"
        ),
        Err(e) => panic!("cannot start etcd: {e}"),
    }
}
