//! The real `switchyard` binary as a child process, for tests that measure the process
//! itself (its memory) or feed it files the in-process harness would not survive.

use std::path::Path;

/// A free port on loopback (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `switchyard run -c CONFIG` child, killed when the test ends, however it ends.
pub struct Switchyard(std::process::Child);

impl Switchyard {
    /// Starts the binary on `config` (logging errors only).
    pub fn run(config: &Path) -> Switchyard {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "error")
            .spawn()
            .unwrap();
        Switchyard(child)
    }

    /// Starts the binary on `config` in the directory `dir`, with `env` added to its
    /// environment (logging errors only).
    pub fn run_in(config: &Path, dir: &Path, env: &[(&str, &str)]) -> Switchyard {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "-c"])
            .arg(config)
            .current_dir(dir)
            .envs(env.iter().copied())
            .env("RUST_LOG", "error")
            .spawn()
            .unwrap();
        Switchyard(child)
    }

    /// Whether it has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Its resident memory now, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmRSS:")
    }

    /// Its peak resident memory so far, in MiB (Linux).
    pub fn peak_rss_mib(&self) -> f64 {
        status_kib(self.pid(), "VmHWM:") as f64 / 1024.0
    }
}

impl Drop for Switchyard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `… kB` field of `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}
