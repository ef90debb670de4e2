//! The log's directory: the file being written, rotation by size, deletion by count.
//!
//! Files are named `capture-YYYYMMDDTHHMMSSZ-NNNNNN.jsonl`: the UTC second the file was
//! begun, then a sequence number, so that sorting the names sorts the files by age.
//! A name is claimed with `create_new`, so two writers on one directory (the old and
//! the new log across a reload) never share a file. Only names of that form are ever
//! deleted.
//!
//! The files hold production requests and answers: on Unix each is created readable and
//! writable by its owner only (0600), and a directory switchyard creates for them is
//! its owner's only (0700). A directory that exists already keeps its mode.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The log's files in one directory.
pub(super) struct Files {
    dir: PathBuf,
    max_file: u64,
    keep: usize,
    current: Option<Current>,
    /// Files this writer began, numbering their names.
    seq: u64,
    /// Problems that cost no record (an old file that could not be deleted), for the log.
    pub(super) warnings: Vec<Failure>,
}

/// The file being written.
struct Current {
    file: File,
    path: PathBuf,
    /// Bytes in it: what was there when it was begun (nothing) plus every line written.
    len: u64,
}

/// A file operation that failed: what, on which path, and why.
#[derive(Debug)]
pub(super) struct Failure {
    what: &'static str,
    path: PathBuf,
    error: io::Error,
}

impl Failure {
    fn new(what: &'static str, path: &Path, error: io::Error) -> Failure {
        Failure {
            what,
            path: path.to_owned(),
            error,
        }
    }

    /// What failed and why, without the path: errors of one kind are logged once, not
    /// once per file name.
    pub(super) fn kind(&self) -> String {
        format!("{}: {}", self.what, self.error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.what, self.path.display(), self.error)
    }
}

/// How many names a writer tries when each it picks is taken already.
const NAME_ATTEMPTS: usize = 1000;

impl Files {
    /// The files in `dir` (created when the first record comes), each up to `max_file`
    /// bytes, at most `keep` of them.
    pub(super) fn new(dir: &Path, max_file: u64, keep: usize) -> Files {
        Files {
            dir: dir.to_owned(),
            max_file,
            keep: keep.max(1),
            current: None,
            seq: 0,
            warnings: Vec::new(),
        }
    }

    /// Appends one line to the current file, first beginning a new one when there is
    /// none or when the line would take it past `max_file`.
    ///
    /// A write that fails is undone (the file cut back to its last whole line), so a
    /// full disk leaves no half record behind.
    pub(super) fn append(&mut self, line: &[u8]) -> Result<(), Failure> {
        let len = line.len() as u64;
        let cur = match self.current.take() {
            Some(c) if c.len == 0 || c.len.saturating_add(len) <= self.max_file => c,
            _ => self.begin()?,
        };
        let cur = self.current.insert(cur);
        if let Err(e) = cur.file.write_all(line) {
            let _ = cur.file.set_len(cur.len);
            return Err(Failure::new("writing", &cur.path, e));
        }
        cur.len += len;
        Ok(())
    }

    /// Begins the next file (creating the directory if needed), then deletes the oldest
    /// beyond `keep`.
    fn begin(&mut self) -> Result<Current, Failure> {
        create_private_dir(&self.dir).map_err(|e| Failure::new("creating", &self.dir, e))?;
        let stamp = stamp(SystemTime::now());
        for _ in 0..NAME_ATTEMPTS {
            self.seq += 1;
            let path = self
                .dir
                .join(format!("capture-{stamp}-{:06}.jsonl", self.seq));
            match private_file().append(true).create_new(true).open(&path) {
                Ok(file) => {
                    self.prune(&path);
                    return Ok(Current { file, path, len: 0 });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Failure::new("creating", &path, e)),
            }
        }
        let taken = io::Error::other("every file name tried is taken");
        Err(Failure::new("creating a file in", &self.dir, taken))
    }

    /// Deletes the oldest log files until `keep` are left, never `current`.
    fn prune(&mut self, current: &Path) {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => return self.warnings.push(Failure::new("listing", &self.dir, e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| is_log_file(name))
            .collect();
        names.sort_unstable();
        let excess = names.len().saturating_sub(self.keep);
        for name in names.iter().take(excess) {
            let path = self.dir.join(name);
            if path == current {
                continue;
            }
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    self.warnings.push(Failure::new("deleting", &path, e));
                }
            }
        }
    }
}

/// Creates `dir` and its missing parents, owner-only (0700) on Unix.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Options that create a file owner-only (0600) on Unix.
fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// `t` as a compact UTC timestamp for file names: `20261130T041500Z`.
pub(super) fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect()
}

/// Tells whether `name` is one of the log's files (`capture-<stamp>-<digits>.jsonl`):
/// only those are ever deleted.
pub(super) fn is_log_file(name: &str) -> bool {
    let Some(middle) = name
        .strip_prefix("capture-")
        .and_then(|n| n.strip_suffix(".jsonl"))
    else {
        return false;
    };
    let Some((stamp, seq)) = middle.split_once('-') else {
        return false;
    };
    let b = stamp.as_bytes();
    let stamp_ok = b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    stamp_ok && !seq.is_empty() && seq.bytes().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn files_are_the_owners_only_and_so_is_a_directory_made_for_them() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("made/for/captures");
        let mut files = Files::new(&dir, 1 << 20, 2);
        files.append(b"{}\n").unwrap();
        let path = files.current.as_ref().unwrap().path.clone();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("made")), 0o700);

        // A directory the operator made keeps the mode they gave it.
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o750)).unwrap();
        let mut files = Files::new(&shared, 1 << 20, 2);
        files.append(b"{}\n").unwrap();
        assert_eq!(mode(&shared), 0o750);
        assert_eq!(mode(&files.current.as_ref().unwrap().path), 0o600);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_is_an_error_not_a_panic() {
        // /dev/full answers every write with ENOSPC, as a full disk does.
        let file = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let mut files = Files::new(Path::new("/nonexistent"), 1 << 20, 1);
        files.current = Some(Current {
            file,
            path: PathBuf::from("/dev/full"),
            len: 0,
        });
        let failure = files.append(b"{}\n").unwrap_err();
        assert!(failure.kind().starts_with("writing: "), "{failure}");
        assert_eq!(failure.error.raw_os_error(), Some(28), "ENOSPC: {failure}");
    }
}
