//! The state file: every route's record in one JSON file, owned by one replica.
//!
//! The file is `{"routes": [record, ...]}`, each record a JSON object naming its route
//! in `route`, in the order of the last save. It is written atomically (write a temporary
//! file, fsync, rename) with every save. One replica owns the file, so the revisions are
//! a counter kept in memory and nobody else's writes are ever watched. A file that cannot
//! be read is never overwritten before it is [put aside](Store::put_aside) as
//! `PATH.corrupt`.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::broadcast;

use super::seam::{
    apply, check, Aside, LoadError, Loaded, Record, Revision, SaveError, Store, Unreadable, Watch,
    Watched, Write,
};

/// The rollout state in one file on disk (`state.path`).
pub(crate) struct FileStore {
    path: PathBuf,
    held: Mutex<Held>,
    /// Never sent on: nobody else writes the file.
    changes: broadcast::Sender<Watched>,
}

/// The records as last read or written, and the last revision given out.
#[derive(Default)]
struct Held {
    records: Vec<Record>,
    last: u64,
}

impl Held {
    fn next(&mut self) -> Revision {
        self.last += 1;
        Revision(self.last)
    }
}

impl FileStore {
    /// A store on the file at `path` (read at [`Store::load`], created at the first save).
    pub(crate) fn new(path: PathBuf) -> FileStore {
        FileStore {
            path,
            held: Mutex::new(Held::default()),
            changes: broadcast::channel(1).0,
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the file: every route's record, or why the file cannot be used.
    fn read(&self) -> Loaded {
        let entries = match std::fs::read(&self.path) {
            Ok(bytes) => parse(&bytes),
            // A path through something other than a directory names no file either.
            Err(e) if e.kind() == io::ErrorKind::NotFound || !parent_is_dir(&self.path) => {
                Ok(Vec::new())
            }
            Err(e) => Err(format!("cannot be read: {e}")),
        };
        let mut held = self.held();
        held.records.clear();
        match entries {
            Ok(entries) => {
                for (route, data) in entries {
                    let revision = held.next();
                    held.records.push(Record {
                        route,
                        revision,
                        data,
                    });
                }
                Loaded {
                    records: held.records.clone(),
                    unreadable: Vec::new(),
                }
            }
            Err(why) => Loaded {
                records: Vec::new(),
                unreadable: vec![Unreadable { route: None, why }],
            },
        }
    }

    /// Applies every write whose expected revision is the record's, writes the file once,
    /// and answers each write; nothing changes when the file cannot be written.
    fn write(&self, writes: Vec<Write>) -> Vec<Result<Revision, SaveError>> {
        let mut held = self.held();
        let mut records = held.records.clone();
        let mut last = held.last;
        let mut answers = Vec::with_capacity(writes.len());
        for w in &writes {
            let checked = match &w.data {
                Some(data) => check(&w.route, data).map_err(SaveError::Failed),
                None => Ok(()),
            };
            answers.push(checked.and_then(|()| apply(&mut records, &mut last, w)));
        }
        if !answers.iter().any(Result::is_ok) {
            return answers;
        }
        // The order of this save's routes, then the others as they were.
        let order = |r: &Record| writes.iter().position(|w| w.route == r.route);
        records.sort_by_key(|r| order(r).unwrap_or(usize::MAX));
        if let Err(e) = save(&self.path, &records) {
            let e = e.to_string();
            return answers
                .into_iter()
                .map(|a| a.and(Err(SaveError::Failed(e.clone()))))
                .collect();
        }
        held.records = records;
        held.last = last;
        answers
    }

    /// Moves the file aside; the records of `routes` are forgotten once it is.
    fn keep_aside(&self, routes: &[String]) -> Aside {
        let to = aside(&self.path);
        let failed = std::fs::rename(&self.path, &to)
            .err()
            .map(|e| e.to_string());
        if failed.is_none() {
            self.held().records.retain(|r| !routes.contains(&r.route));
        }
        Aside {
            to: to.display().to_string(),
            failed,
        }
    }
}

impl Store for FileStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn load(&self) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        Box::pin(async move { Ok(self.read()) })
    }

    fn save(&self, writes: Vec<Write>) -> BoxFuture<'_, Vec<Result<Revision, SaveError>>> {
        Box::pin(async move { self.write(writes) })
    }

    fn watch(&self) -> Watch {
        Watch::new(self.changes.subscribe())
    }

    fn put_aside(&self, routes: Vec<String>) -> BoxFuture<'_, Aside> {
        Box::pin(async move { self.keep_aside(&routes) })
    }
}

/// Whether the directory `path` would be in is one (the working directory for a bare name).
fn parent_is_dir(path: &Path) -> bool {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .is_none_or(Path::is_dir)
}

/// The records of a state file's bytes (each route's name and JSON): `{"routes": [...]}`,
/// or the one-route form written before routes (a single entry object). An entry that
/// names no route, or bytes of another shape, make the whole file unusable (why).
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let not_state = || "not a rollout state file (no `routes` list)".to_string();
    let Value::Object(mut file) = value else {
        return Err(not_state());
    };
    let items = match file.remove("routes") {
        Some(Value::Array(items)) => items,
        None if file.contains_key("route") => vec![Value::Object(file)],
        _ => return Err(not_state()),
    };
    let raw = raw_entries(bytes).filter(|raw| raw.len() == items.len());
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let Some(route) = item.get("route").and_then(Value::as_str) else {
                return Err(format!("entry {i} names no route"));
            };
            let data = match &raw {
                Some(raw) => layout(raw[i].get().as_bytes(), false),
                None => serde_json::to_vec(&item).map_err(|e| e.to_string())?,
            };
            Ok((route.to_string(), data))
        })
        .collect()
}

/// Each entry's text as the file has it (its keys in their order), when the file is as
/// this store writes it: `{"routes": [...]}`, or the one-route form.
fn raw_entries(bytes: &[u8]) -> Option<Vec<&RawValue>> {
    #[derive(Deserialize)]
    struct File<'a> {
        #[serde(borrow)]
        routes: Vec<&'a RawValue>,
    }
    match serde_json::from_slice::<File>(bytes) {
        Ok(file) => Some(file.routes),
        Err(_) => serde_json::from_slice::<&RawValue>(bytes)
            .ok()
            .map(|r| vec![r]),
    }
}

/// Where a state file at `path` that cannot be used is kept: `PATH.corrupt`.
pub(crate) fn aside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".corrupt");
    PathBuf::from(name)
}

/// Writes `records` atomically as the state file: a reader sees the old file or the new
/// one, never half of one. The error says which step failed, on which path.
fn save(path: &Path, records: &[Record]) -> io::Result<()> {
    let failed = |what: &str, on: &Path| {
        let what = format!("cannot {what} {}", on.display());
        move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed("create", dir))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let json = file_bytes(records);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&json)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed("write", &tmp)(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        failed("replace", path)(e)
    })
}

/// The state file's bytes for `records`, pretty-printed as `serde_json` would the same
/// values (each record's keys in its own order).
fn file_bytes(records: &[Record]) -> Vec<u8> {
    let mut compact = b"{\"routes\":[".to_vec();
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            compact.push(b',');
        }
        compact.extend_from_slice(&r.data);
    }
    compact.extend_from_slice(b"]}");
    layout(&compact, true)
}

/// Lays valid JSON text out as `serde_json::to_vec_pretty` writes it (two spaces, one
/// member per line, `[]` and `{}` when empty) or, not `pretty`, as `to_vec` does (no
/// space at all), keeping every key and value as written.
///
/// Only whitespace changes, so numbers keep their exact text: transcoding through
/// serde_json's reader (`serde-transcode`) would read floats without its
/// `float_roundtrip` feature and change a last digit, and that feature would slow every
/// float the request path's observers parse.
fn layout(json: &[u8], pretty: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        if pretty {
            out.push(b'\n');
            out.resize(out.len() + 2 * depth, b' ');
        }
    };
    let mut bytes = json.iter().copied().peekable();
    let mut in_string = false;
    let mut escaped = false;
    while let Some(b) = bytes.next() {
        if in_string {
            out.push(b);
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b' ' | b'\n' | b'\r' | b'\t' => {}
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                while bytes.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                match bytes.peek() {
                    Some(b'}' | b']') => out.push(bytes.next().unwrap_or(b)),
                    _ => {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' if pretty => out.extend_from_slice(b": "),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests;
