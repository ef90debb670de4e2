//! A drift reference from a file, for `switchyard baseline`: a capture log or a CSV table.
//!
//! - A capture file (JSON Lines, as [`crate::capture`] writes it): each
//!   record's `request` is read as the monitor reads a live request
//!   ([`Payload::parse`] with `protocol: auto`, then the route's default
//!   [`Schema`]: V2 tensor columns, V1 instance keys or columns, OpenAI prompt
//!   lengths), and its `response` gives the label and score bins. Records of
//!   another route than the one asked for, records whose request the
//!   capture redacted whole or did not record, and lines that are not a
//!   record are left out and counted; the `shadow` member is not read.
//! - A CSV table with a header row: each column is a feature named by its
//!   header. A cell that reads as a number is a number, any other a
//!   category, an empty one missing; a column takes the kind of its first
//!   non-empty cell, as a monitored feature does, and cells of the other kind
//!   are counted, not kept. A table gives no output bins.
//!
//! Every record or row goes into the reference (there is no `requests`
//! limit), through the same [`Builder`] as a reference built live, so its
//! memory bounds hold: at most [`RESERVOIR`](super::drift::RESERVOIR) numbers
//! per numeric feature (a uniform sample of the file's values) and 32
//! counters per categorical one, for at most `max_features` (256) features.
//! A file is read one line (or row) at a time, and a line (or row) longer than
//! [`MAX_LINE`] is skipped unread and counted, so what one line costs is
//! bounded too: a capture record parsed into JSON takes up to about 40 times
//! its length (a number of two bytes becomes a 32-byte value), so about
//! 160 MiB at most, whatever the file holds; records the capture wrote (at most
//! three bodies of [`MAX_BODY`] each) are never that long.
//!
//! # Example
//!
//! ```
//! use switchyard::monitor::baseline;
//!
//! let table = "petal_length,species\n1.4,setosa\n4.7,versicolor\n5.9,virginica\n";
//! let (reference, summary) = baseline::from_csv(table.as_bytes()).unwrap();
//! assert_eq!(summary.requests, 3);
//! assert_eq!(reference.features.len(), 2);
//! ```

use super::drift::{Builder, Reference};
use super::features::{Cell, Sample, Schema};
use super::stats::{self, Read};
use crate::config::FeatureKind as Kind;
use crate::config::MonitorConfig as Settings;
use crate::wire::MAX_BODY;
use crate::wire::{Exchange, Payload, Protocol};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// What a capture record holds in place of a value the capture's `redact` hid.
pub const REDACTED: &str = "[redacted]";
/// Malformed lines or rows a [`Summary`] keeps the position and reason of (the rest are
/// only counted).
const MAX_PROBLEMS: usize = 5;
/// The longest line of a capture file, or row of a CSV table, that is read: 4 MiB (four
/// times the largest body the observers read, [`MAX_BODY`], so every record the capture
/// writes fits). A longer one is skipped unread and counted ([`Summary::too_long`]).
const MAX_LINE: usize = 4 * MAX_BODY;
/// The backend name a builder is given: it takes every request handed to it.
const ANY_BACKEND: &str = "baseline";

/// What went into a reference built from a file, and what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Capture records or CSV rows that went into the reference.
    pub requests: u64,
    /// Capture records of another route than the one asked for.
    pub other_route: u64,
    /// Capture records whose whole request was redacted.
    pub redacted: u64,
    /// Capture records without a JSON request (empty, or not recorded by the capture).
    pub unparseable: u64,
    /// Lines that are not a capture record, or CSV rows that cannot be read.
    pub malformed: u64,
    /// Lines (or CSV rows) longer than [`MAX_LINE`], skipped unread.
    pub too_long: u64,
    /// The first [`MAX_PROBLEMS`] malformed lines or rows: line number and reason.
    pub problems: Vec<(u64, String)>,
    /// Values inside a request that the capture redacted (left out).
    redacted_values: u64,
    /// Missing values: `null`, NaN, an empty cell.
    pub missing: u64,
    /// Values of the other kind than their feature's (left out).
    pub invalid: u64,
    /// Values of features beyond `max_features`, or beyond a request's
    /// [`MAX_CELLS`](super::features::MAX_CELLS) (left out).
    pub untracked: u64,
}

impl Summary {
    /// The one line `switchyard baseline` prints once the reference is written to `out`.
    pub fn line(&self, out: &Path, reference: &Reference) -> String {
        let numeric = reference
            .features
            .values()
            .filter(|b| b.kind() == Kind::Numeric)
            .count();
        let categorical = reference.features.len() - numeric;
        let o = &reference.outputs;
        let outputs = match (o.label.is_some(), o.score.is_some()) {
            (true, true) => "label, score",
            (true, false) => "label",
            (false, true) => "score",
            (false, false) => "none",
        };
        let mut line = format!(
            "wrote {}: {} requests, {} features ({numeric} numeric, {categorical} categorical), outputs: {outputs}",
            out.display(),
            reference.requests,
            reference.features.len(),
        );
        let skipped = self.skipped();
        if !skipped.is_empty() {
            let _ = write!(line, "; skipped {skipped}");
        }
        let values = self.left_out();
        if !values.is_empty() {
            let _ = write!(line, "; values {values}");
        }
        line
    }

    /// The records or rows left out, by reason (empty when none was).
    pub fn skipped(&self) -> String {
        let parts = [
            (self.malformed, "malformed"),
            (self.too_long, "too long"),
            (self.other_route, "of other routes"),
            (self.redacted, "redacted"),
            (self.unparseable, "without a JSON request"),
        ];
        join(&parts)
    }

    /// The values not kept, by reason (empty when every value was kept).
    fn left_out(&self) -> String {
        let parts = [
            (self.missing, "missing"),
            (self.invalid, "of the wrong kind"),
            (self.redacted_values, "redacted"),
            (
                self.untracked,
                "untracked (beyond max_features, or a request's cap)",
            ),
        ];
        join(&parts)
    }

    /// Counts a malformed line or row, keeping its position and reason while there is room.
    fn malformed(&mut self, line: u64, why: String) {
        self.malformed += 1;
        self.problem(line, why);
    }

    /// Counts a line or row skipped for being longer than `max` bytes, keeping its
    /// position while there is room.
    fn too_long(&mut self, line: u64, max: usize) {
        self.too_long += 1;
        self.problem(line, format!("longer than {max} bytes, not read"));
    }

    /// Keeps a problem's position and reason while there is room.
    fn problem(&mut self, line: u64, why: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push((line, why));
        }
    }

    /// Why nothing usable was found: the reasons records were left out, and where.
    fn nothing_usable(&self, what: &str) -> String {
        let mut msg = format!("no usable {what}");
        let skipped = self.skipped();
        if !skipped.is_empty() {
            let _ = write!(msg, " ({skipped})");
        }
        for (line, why) in &self.problems {
            let _ = write!(msg, "; line {line}: {why}");
        }
        msg
    }
}

/// `"3 malformed, 2 redacted"` from the non-zero counts.
fn join(parts: &[(u64, &str)]) -> String {
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// === reading a file ===

/// How a file's contents are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON Lines as the capture writes them.
    Capture,
    /// A CSV table with a header row.
    Csv,
}

impl Format {
    /// The format of a file: by its extension (`.jsonl`, `.json`, `.csv`), else a capture
    /// when its first non-blank byte is `{`; `Ok(None)` for a file with nothing but blanks.
    pub fn of(path: &Path) -> std::io::Result<Option<Format>> {
        let first = first_byte(path)?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        Ok(first.map(|b| match ext.to_ascii_lowercase().as_str() {
            "jsonl" | "json" => Format::Capture,
            "csv" => Format::Csv,
            _ if b == b'{' => Format::Capture,
            _ => Format::Csv,
        }))
    }
}

/// The first byte of a file that is not ASCII whitespace.
fn first_byte(path: &Path) -> std::io::Result<Option<u8>> {
    let file = std::fs::File::open(path)?;
    for b in std::io::Read::bytes(BufReader::new(file)) {
        let b = b?;
        if !b.is_ascii_whitespace() {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// Builds a reference from a capture file or a CSV table (see [`Format::of`]); every error
/// names the file. `route` keeps only a capture's records of that route.
pub fn from_file(path: &Path, route: Option<&str>) -> Result<(Reference, Summary), String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let format = Format::of(path)
        .map_err(|e| at(e.to_string()))?
        .ok_or_else(|| at("the file is empty".into()))?;
    let file = std::fs::File::open(path).map_err(|e| at(e.to_string()))?;
    match format {
        Format::Capture => from_capture(BufReader::new(file), route),
        Format::Csv if route.is_some() => Err(
            "--route selects records of a capture file (JSON Lines); this file reads as a CSV table"
                .into(),
        ),
        Format::Csv => from_csv(file),
    }
    .map_err(at)
}

/// Writes a reference as the file `monitor.reference.file` reads ([`Reference::load`]).
pub fn write(reference: &Reference, out: &Path) -> Result<(), String> {
    let mut json = reference.to_json();
    json.push('\n');
    std::fs::write(out, json).map_err(|e| format!("{}: {e}", out.display()))
}

// === capture files ===

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line is in the buffer (without its end).
    Whole,
    /// A line longer than the cap was skipped unread; the buffer is empty.
    TooLong,
    /// The end of the file.
    End,
}

/// Reads the next line into `buf` (which it empties first), keeping at most `max` bytes:
/// a longer line is read past, not kept. The buffer never grows past `max` bytes (plus
/// what one read from `reader` adds before the check).
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    buf.clear();
    let mut any = false;
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => Line::End,
                (true, true) => Line::TooLong,
                (true, false) => Line::Whole,
            });
        }
        any = true;
        let (take, ends) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (available.len(), false),
        };
        if !too_long {
            if buf.len().saturating_add(take) > max {
                too_long = true;
                buf.clear();
                buf.shrink_to(max);
            } else {
                buf.extend_from_slice(&available[..take]);
            }
        }
        reader.consume(take + usize::from(ends));
        if ends {
            return Ok(if too_long { Line::TooLong } else { Line::Whole });
        }
    }
}

/// The members of a capture line a reference reads; the others are skipped unbuilt.
#[derive(Deserialize)]
struct Record<'a> {
    route: Option<String>,
    status: Option<u16>,
    #[serde(borrow)]
    request: Option<&'a RawValue>,
    #[serde(borrow)]
    response: Option<&'a RawValue>,
}

/// Builds a reference from a capture file's records (of `route` only, when given); lines
/// that are not records are skipped and counted, and so are records without a usable
/// request. Fails on a read error, or when no record was usable.
pub fn from_capture(
    reader: impl BufRead,
    route: Option<&str>,
) -> Result<(Reference, Summary), String> {
    from_capture_limited(reader, route, MAX_LINE)
}

/// As [`from_capture`], skipping the lines longer than `max_line` bytes instead of
/// [`MAX_LINE`].
pub fn from_capture_limited(
    mut reader: impl BufRead,
    route: Option<&str>,
    max_line: usize,
) -> Result<(Reference, Summary), String> {
    let mut collector = Collector::new()?;
    let mut summary = Summary::default();
    let mut buf = Vec::new();
    let mut number = 0u64;
    loop {
        let line = read_line(&mut reader, &mut buf, max_line)
            .map_err(|e| format!("line {}: {e}", number + 1))?;
        number += 1;
        match line {
            Line::End => break,
            Line::TooLong => {
                summary.too_long(number, max_line);
                continue;
            }
            Line::Whole => {}
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record<'_>>(line) {
            Ok(record) => collector.record(&record, route, &mut summary),
            Err(e) => summary.malformed(number, format!("not a capture record: {e}")),
        }
    }
    let what = match route {
        Some(r) => format!("records of route {r}"),
        None => "records".to_owned(),
    };
    collector.finish(summary, &what)
}

/// The monitor's reading of requests (its default schema) feeding a reference's builder.
struct Collector {
    schema: Schema,
    builder: Builder,
}

impl Collector {
    /// A collector with the monitor's default settings: every feature discovered, at most
    /// `max_features` of them.
    fn new() -> Result<Collector, String> {
        Ok(Collector {
            schema: Schema::new(&[], Settings::default().max_features)?.shared(Protocol::Auto),
            builder: Builder::new(ANY_BACKEND, u64::MAX),
        })
    }

    /// Takes one capture record, or counts why it is left out.
    fn record(&mut self, record: &Record<'_>, route: Option<&str>, summary: &mut Summary) {
        if route.is_some() && record.route.as_deref() != route {
            summary.other_route += 1;
            return;
        }
        let Some(request) = record.request else {
            summary.unparseable += 1;
            return;
        };
        let exchange = Exchange {
            route: "",
            backend: ANY_BACKEND,
            path: "",
            status: record.status.unwrap_or(200),
            request: request.get().as_bytes(),
            request_truncated: false,
            answer: record.response.map_or(&b""[..], |r| r.get().as_bytes()),
            answer_truncated: false,
        };
        let payload = Payload::parse(&exchange, Protocol::Auto);
        let body = match &payload.request {
            Some(Value::String(s)) if s == REDACTED => {
                summary.redacted += 1;
                return;
            }
            Some(v @ (Value::Object(_) | Value::Array(_))) => v,
            _ => {
                summary.unparseable += 1;
                return;
            }
        };
        let sample = self.schema.extract(payload.protocol, body);
        self.sample(&sample, summary);
        for p in &payload.predictions {
            self.builder.prediction(p);
        }
        self.builder.requests += 1;
    }

    /// Keeps one request's feature values, leaving redacted ones out.
    fn sample(&mut self, sample: &Sample<'_>, summary: &mut Summary) {
        for (ix, cell) in &sample.cells {
            let read = stats::read(cell);
            if matches!(&read, Read::Text(t) if t.as_ref() == REDACTED) {
                summary.redacted_values += 1;
                continue;
            }
            let Some(feature) = self.schema.features.get_mut(*ix as usize) else {
                continue;
            };
            keep(&mut self.builder, *ix, &mut feature.kind, &read, summary);
        }
    }

    /// The reference, or why there is none: no record usable (`what` says which were
    /// looked for), or neither a feature value nor a prediction in those that were.
    fn finish(self, mut summary: Summary, what: &str) -> Result<(Reference, Summary), String> {
        if self.builder.requests == 0 {
            return Err(summary.nothing_usable(what));
        }
        summary.requests = self.builder.requests;
        summary.untracked = self.schema.untracked;
        let features = &self.schema.features;
        let reference = self.builder.finish(|ix| &features[ix].name);
        usable(reference, summary)
    }
}

/// Keeps one value of feature `ix` for the reference, the feature's kind fixed by its
/// first usable value as a monitored feature's is; counts a missing or unusable value.
fn keep(
    builder: &mut Builder,
    ix: u32,
    kind: &mut Option<Kind>,
    read: &Read<'_>,
    summary: &mut Summary,
) {
    if matches!(read, Read::Null | Read::NaN | Read::Absent) {
        summary.missing += 1;
        return;
    }
    if kind.is_none() {
        *kind = stats::infer(read);
    }
    let fits = match (*kind, read) {
        (Some(Kind::Numeric), Read::Number(f)) => f.is_finite(),
        (Some(Kind::Categorical), r) => stats::category(r).is_some(),
        _ => false,
    };
    if fits {
        builder.feature(ix, *kind, read);
    } else {
        summary.invalid += 1;
    }
}

/// The reference when it holds a feature to measure drift against: one of outputs only
/// would measure no data drift at all, which no one builds a reference for.
fn usable(reference: Reference, summary: Summary) -> Result<(Reference, Summary), String> {
    if !reference.features.is_empty() {
        return Ok((reference, summary));
    }
    let o = &reference.outputs;
    let mut msg = if o.label.is_none() && o.score.is_none() {
        format!(
            "no feature value and no prediction in {} requests",
            summary.requests
        )
    } else {
        format!(
            "no feature value in {} requests: a reference without input features measures \
             no data drift",
            summary.requests
        )
    };
    let redacted = summary.redacted_values;
    if redacted > 0 {
        let _ = write!(
            msg,
            "; {redacted} values were redacted by the capture (its `redact` pointers: \
             `/inputs/*/data` hides every V2 tensor): capture the inputs unredacted (a \
             `capture.redact` without them) or build the reference from a CSV table of them"
        );
    }
    Err(msg)
}

// === CSV tables ===

/// Builds a reference from a CSV table with a header row (see the module docs); rows that
/// cannot be read (a different number of cells than the header) are skipped and counted.
/// Fails on a bad header, a read error, or when no row was read.
pub fn from_csv(reader: impl std::io::Read) -> Result<(Reference, Summary), String> {
    from_csv_limited(reader, MAX_LINE)
}

/// As [`from_csv`], skipping the rows longer than `max_row` bytes instead of [`MAX_LINE`].
pub fn from_csv_limited(
    reader: impl std::io::Read,
    max_row: usize,
) -> Result<(Reference, Summary), String> {
    let mut table = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(Rows::new(BufReader::new(reader), max_row));
    let headers = table
        .headers()
        .map_err(|e| format!("the header row: {e}"))?;
    let names = column_names(headers)?;
    let mut kinds: Vec<Option<Kind>> = vec![None; names.len()];
    let mut builder = Builder::new(ANY_BACKEND, u64::MAX);
    let mut summary = Summary::default();
    let mut row = csv::StringRecord::new();
    loop {
        match table.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                match e.kind() {
                    csv::ErrorKind::Io(_) => return Err(format!("line {line}: {e}")),
                    _ => summary.malformed(line, e.to_string()),
                }
                continue;
            }
        }
        for (col, cell) in row.iter().enumerate() {
            let Some(kind) = kinds.get_mut(col) else {
                summary.untracked += u64::from(!cell.is_empty());
                continue;
            };
            keep_cell(&mut builder, col as u32, kind, cell, &mut summary);
        }
        builder.requests += 1;
    }
    for &line in &table.get_ref().skipped {
        summary.too_long(line, max_row);
    }
    summary.too_long = table.get_ref().too_long;
    if builder.requests == 0 {
        return Err(summary.nothing_usable("rows"));
    }
    summary.requests = builder.requests;
    usable(builder.finish(|ix| &names[ix]), summary)
}

/// A CSV table's bytes, a row at a time, without the rows longer than `max` bytes: each
/// of those is read past and handed on as blank lines, one per line it spanned (which
/// the table skips, counting their lines). A row ends at a line end outside quotes.
/// A header row that long is an error: the table has no names to read.
struct Rows<R> {
    reader: R,
    max: usize,
    /// The row being handed on, and how much of it was.
    row: Vec<u8>,
    at: usize,
    /// Lines read so far.
    line: u64,
    /// Rows skipped for their length.
    too_long: u64,
    /// The line of the first [`MAX_PROBLEMS`] rows skipped.
    skipped: Vec<u64>,
}

impl<R: BufRead> Rows<R> {
    fn new(reader: R, max: usize) -> Rows<R> {
        Rows {
            reader,
            max,
            row: Vec::new(),
            at: 0,
            line: 0,
            too_long: 0,
            skipped: Vec::new(),
        }
    }

    /// Reads the next row into `self.row`: its bytes and line end, or an empty line in
    /// place of one too long; nothing at the end of the table.
    fn next_row(&mut self) -> std::io::Result<()> {
        self.row.clear();
        self.at = 0;
        let first = self.line + 1;
        let mut quoted = false;
        let mut too_long = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            let mut end = None;
            for (i, &b) in available.iter().enumerate() {
                match b {
                    b'"' => quoted = !quoted,
                    b'\n' => {
                        self.line += 1;
                        if !quoted {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let take = end.unwrap_or(available.len());
            // The row's length without its line end, as a capture line's is counted.
            let content = take - usize::from(end.is_some());
            if !too_long {
                if self.row.len().saturating_add(content) > self.max {
                    too_long = true;
                    self.row.clear();
                } else {
                    self.row.extend_from_slice(&available[..take]);
                }
            }
            self.reader.consume(take);
            if end.is_some() {
                break;
            }
        }
        if too_long {
            if first == 1 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the header row is longer than {} bytes", self.max),
                ));
            }
            self.too_long += 1;
            if self.skipped.len() < MAX_PROBLEMS {
                self.skipped.push(first);
            }
            // One empty line per line skipped, so later rows keep their line numbers.
            let lines = (self.line + 1).saturating_sub(first).max(1);
            self.row
                .resize(usize::try_from(lines).unwrap_or(1).min(self.max), b'\n');
        }
        Ok(())
    }
}

impl<R: BufRead> std::io::Read for Rows<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.row.len() {
            self.next_row()?;
        }
        let n = out.len().min(self.row.len() - self.at);
        out[..n].copy_from_slice(&self.row[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The features' names: the header's first `max_features` cells, each present and given once.
fn column_names(headers: &csv::StringRecord) -> Result<Vec<String>, String> {
    if headers.iter().all(str::is_empty) {
        return Err("no header row (the first line names the columns)".into());
    }
    let max = Settings::default().max_features;
    let mut names: Vec<String> = Vec::new();
    for (i, name) in headers.iter().take(max).enumerate() {
        if name.is_empty() {
            return Err(format!("the header row: column {} has no name", i + 1));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!("the header row: column {name} is named twice"));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// Keeps one CSV cell of column `col`: a finite number, else text (read as the monitor
/// reads a JSON string, so `NaN` is missing and `inf` a number of no use), an empty cell
/// missing.
fn keep_cell(
    builder: &mut Builder,
    col: u32,
    kind: &mut Option<Kind>,
    cell: &str,
    summary: &mut Summary,
) {
    let text;
    let read = match cell.parse::<f64>() {
        _ if cell.is_empty() => Read::Absent,
        Ok(f) if f.is_finite() => Read::Number(f),
        _ => {
            text = Value::String(cell.to_owned());
            stats::read(&Cell::Value(&text))
        }
    };
    keep(builder, col, kind, &read, summary);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::Bins;
    use std::collections::BTreeMap;

    /// A capture line as the capture writes it.
    fn line(route: &str, request: &str, response: &str) -> String {
        format!(
            r#"{{"at":"2025-01-01T00:00:00.000Z","route":"{route}","request_id":"r","backend":"blue","status":200,"latency_ms":1.5,"request":{request},"response":{response}}}"#
        )
    }

    /// A V2 request of one iris row, and an answer with its class.
    fn iris(row: [f64; 4], class: u32) -> (String, String) {
        let data = serde_json::to_string(&row).unwrap();
        (
            format!(
                r#"{{"inputs":[{{"name":"input-0","shape":[1,4],"datatype":"FP64","data":{data}}}]}}"#
            ),
            format!(
                r#"{{"model_name":"iris","outputs":[{{"name":"predict","shape":[1,1],"datatype":"INT64","data":[{class}]}}]}}"#
            ),
        )
    }

    fn capture(lines: &[String]) -> Result<(Reference, Summary), String> {
        from_capture(lines.join("\n").as_bytes(), Some("iris"))
    }

    fn label_shares(r: &Reference) -> BTreeMap<String, f64> {
        match &r.outputs.label {
            Some(Bins::Categorical { shares, .. }) => shares.clone(),
            other => panic!("no label bins: {other:?}"),
        }
    }

    #[test]
    fn capture_records_give_the_monitors_features_and_label_bins() {
        let lines: Vec<String> = (0..30)
            .map(|i| {
                let (req, resp) = iris([5.0 + i as f64 / 10.0, 3.0, 1.4, 0.2], i % 3);
                line("iris", &req, &resp)
            })
            .collect();
        let (r, s) = capture(&lines).unwrap();
        assert_eq!(s.requests, 30);
        assert_eq!(r.requests, 30);
        let names: Vec<&str> = r.features.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["input-0[0]", "input-0[1]", "input-0[2]", "input-0[3]"]
        );
        assert!(r.features.values().all(|b| b.kind() == Kind::Numeric));
        let labels = label_shares(&r);
        assert_eq!(labels.len(), 3);
        assert!(labels.values().all(|s| (s - 1.0 / 3.0).abs() < 1e-9));
        assert!(r.outputs.score.is_none());
    }

    #[test]
    fn records_left_out_are_counted_by_reason() {
        let (req, resp) = iris([5.1, 3.5, 1.4, 0.2], 0);
        let lines = vec![
            line("iris", &req, &resp),
            line("other", &req, &resp),
            String::new(),
            "{not json".to_owned(),
            line("iris", r#""[redacted]""#, &resp),
            line("iris", "null", &resp),
            line("iris", r#""(12 bytes, not JSON: not recorded)""#, &resp),
            "[1, 2]".to_owned(),
            line("iris", &req, r#""[redacted]""#),
        ];
        let (r, s) = capture(&lines).unwrap();
        assert_eq!(s.requests, 2);
        assert_eq!(s.other_route, 1);
        assert_eq!(s.redacted, 1);
        assert_eq!(s.unparseable, 2);
        assert_eq!(s.malformed, 2);
        assert_eq!(s.problems.len(), 2);
        assert_eq!(s.problems[0].0, 4, "{:?}", s.problems);
        assert_eq!(s.problems[1].0, 8, "{:?}", s.problems);
        assert_eq!(r.features.len(), 4);
        // The redacted answer predicts nothing: one label, from the first record.
        assert_eq!(label_shares(&r).len(), 1);
    }

    #[test]
    fn values_redacted_inside_a_request_are_left_out() {
        let lines: Vec<String> = (0..5)
            .map(|i| {
                let req = format!(r#"{{"instances":[{{"x":{i},"email":"[redacted]"}}]}}"#);
                line("iris", &req, r#"{"predictions":[1]}"#)
            })
            .collect();
        let (r, s) = capture(&lines).unwrap();
        assert_eq!(r.features.keys().collect::<Vec<_>>(), ["x"]);
        assert_eq!(s.redacted_values, 5);
        assert!(s.line(Path::new("r.json"), &r).contains("5 redacted"));
    }

    #[test]
    fn nothing_usable_says_why_and_where() {
        let (req, resp) = iris([5.1, 3.5, 1.4, 0.2], 0);
        let e = capture(&[line("other", &req, &resp)]).unwrap_err();
        assert!(
            e.contains("records of route iris") && e.contains("1 of other routes"),
            "{e}"
        );
        let e = capture(&["{".to_owned(), "oops".to_owned()]).unwrap_err();
        assert!(e.contains("2 malformed") && e.contains("line 2:"), "{e}");
        let e = capture(&[line("iris", r#"{"hello":1}"#, "null")]).unwrap_err();
        assert!(e.contains("no feature value and no prediction"), "{e}");
        let e = capture(&[]).unwrap_err();
        assert!(e.contains("no usable records"), "{e}");
    }

    #[test]
    fn only_the_first_problems_are_kept() {
        let lines = vec!["x".to_owned(); MAX_PROBLEMS + 3];
        let e = capture(&lines).unwrap_err();
        assert!(
            e.contains(&format!("{} malformed", MAX_PROBLEMS + 3)),
            "{e}"
        );
        assert_eq!(e.matches("; line ").count(), MAX_PROBLEMS, "{e}");
    }

    #[test]
    fn csv_columns_take_the_kind_of_their_first_value() {
        let table = "n, c ,m\n1,a,\n2,b,NaN\nx,1,3\n4,a,inf\n";
        let (r, s) = from_csv(table.as_bytes()).unwrap();
        assert_eq!(s.requests, 4);
        assert_eq!(s.missing, 2, "an empty cell and NaN");
        assert_eq!(s.invalid, 2, "text in a numeric column, an infinity");
        assert_eq!(r.features["n"].kind(), Kind::Numeric);
        assert_eq!(r.features["m"].kind(), Kind::Numeric);
        // A number in a categorical column is a category, as the monitor counts it.
        match &r.features["c"] {
            Bins::Categorical { shares, other } => {
                assert_eq!(shares.keys().collect::<Vec<_>>(), ["1", "a", "b"]);
                assert!((shares["a"] - 0.5).abs() < 1e-9 && *other == 0.0);
            }
            b => panic!("{b:?}"),
        }
        assert!(r.outputs.label.is_none() && r.outputs.score.is_none());
    }

    #[test]
    fn csv_header_problems_are_refused() {
        let e = from_csv("a,b,a\n1,2,3\n".as_bytes()).unwrap_err();
        assert!(e.contains("column a is named twice"), "{e}");
        let e = from_csv("a,,c\n1,2,3\n".as_bytes()).unwrap_err();
        assert!(e.contains("column 2 has no name"), "{e}");
        let e = from_csv("a,b\n".as_bytes()).unwrap_err();
        assert!(e.contains("no usable rows"), "{e}");
        let e = from_csv("".as_bytes()).unwrap_err();
        assert!(e.contains("no header row"), "{e}");
    }

    #[test]
    fn csv_ragged_rows_are_skipped_with_their_line() {
        let (r, s) = from_csv("a,b\n1,x\n2\n3,y,9\n4,z\n".as_bytes()).unwrap();
        assert_eq!(s.requests, 2);
        assert_eq!(s.malformed, 2);
        let lines: Vec<u64> = s.problems.iter().map(|p| p.0).collect();
        assert_eq!(lines, [3, 4]);
        assert_eq!(r.features.len(), 2);
    }

    #[test]
    fn csv_byte_order_mark_is_not_part_of_a_name() {
        let (r, _) = from_csv("\u{feff}a,b\n1,x\n".as_bytes()).unwrap();
        assert_eq!(r.features.keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn features_beyond_max_features_are_counted_not_kept() {
        let max = Settings::default().max_features;
        let header: Vec<String> = (0..max + 4).map(|i| format!("f{i:03}")).collect();
        let row = vec!["1"; max + 4];
        let table = format!("{}\n{}\n", header.join(","), row.join(","));
        let (r, s) = from_csv(table.as_bytes()).unwrap();
        assert_eq!(r.features.len(), max);
        assert_eq!(s.untracked, 4);

        let data = vec![1.0; max + 4];
        let req = format!(
            r#"{{"inputs":[{{"name":"x","shape":[1,{}],"datatype":"FP64","data":{}}}]}}"#,
            max + 4,
            serde_json::to_string(&data).unwrap()
        );
        // A capture mixes protocols as `auto` does: V2 columns take their share.
        let share = Schema::share(max);
        let (r, s) = capture(&[line("iris", &req, "null")]).unwrap();
        assert_eq!(r.features.len(), share);
        assert_eq!(s.untracked, (max + 4 - share) as u64);
    }

    #[test]
    fn a_written_reference_loads_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ref.json");
        let table: String = std::iter::once("x,c\n".to_owned())
            .chain((0..500).map(|i| format!("{},{}\n", (i * 37) % 101, ["a", "b"][i % 2])))
            .collect();
        let (r, s) = from_csv(table.as_bytes()).unwrap();
        write(&r, &out).unwrap();
        let loaded = Reference::load(&out).unwrap();
        assert_eq!(loaded.features.keys().collect::<Vec<_>>(), ["c", "x"]);
        assert_eq!(loaded.requests, 500);
        match (&loaded.features["x"], &r.features["x"]) {
            (Bins::Numeric { edges: a, .. }, Bins::Numeric { edges: b, .. }) => assert_eq!(a, b),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.line(&out, &loaded),
            format!(
                "wrote {}: 500 requests, 2 features (1 numeric, 1 categorical), outputs: none",
                out.display()
            )
        );
        let e = write(&r, &dir.path().join("no/such/dir.json")).unwrap_err();
        assert!(e.contains("no/such/dir.json"), "{e}");
    }

    #[test]
    fn the_format_comes_from_the_extension_or_the_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            Format::of(&p).unwrap()
        };
        assert_eq!(file("a.jsonl", "x"), Some(Format::Capture));
        assert_eq!(file("a.JSON", "x"), Some(Format::Capture));
        assert_eq!(file("a.csv", "{"), Some(Format::Csv));
        assert_eq!(file("capture", "\n \n{\"route\":1}"), Some(Format::Capture));
        assert_eq!(file("table", "a,b\n1,2\n"), Some(Format::Csv));
        assert_eq!(file("blank.csv", " \n\n"), None);
        let e = from_file(&dir.path().join("table"), Some("iris")).unwrap_err();
        assert!(e.contains("table: --route"), "{e}");
        let e = from_file(&dir.path().join("missing.csv"), None).unwrap_err();
        assert!(e.contains("missing.csv"), "{e}");
    }

    #[test]
    fn a_record_with_an_overflowing_shape_is_read_by_its_nesting() {
        let poisonous = r#"{"inputs":[{"name":"x","shape":[12297829382473034411,3],"datatype":"FP32","data":[1.5]}]}"#;
        let (r, s) = capture(&[line("iris", poisonous, "null")]).unwrap();
        assert_eq!(s.requests, 1);
        assert_eq!(r.features.keys().collect::<Vec<_>>(), ["x[0]"]);
    }

    #[test]
    fn a_line_longer_than_max_line_is_skipped_unread_and_counted() {
        let (req, resp) = iris([5.1, 3.5, 1.4, 0.2], 0);
        let long = format!(
            r#"{{"route":"iris","request":{{"instances":[{}1]}}}}"#,
            "1,".repeat(MAX_LINE / 2)
        );
        assert!(long.len() > MAX_LINE);
        let lines = vec![line("iris", &req, &resp), long, line("iris", &req, &resp)];
        let (r, s) = capture(&lines).unwrap();
        assert_eq!(s.requests, 2, "the lines around it are read");
        assert_eq!(s.too_long, 1);
        assert_eq!(s.malformed, 0);
        assert_eq!(s.problems[0].0, 2, "{:?}", s.problems);
        assert!(s
            .line(Path::new("r.json"), &r)
            .contains("skipped 1 too long"));
    }

    #[test]
    fn read_line_keeps_at_most_its_cap() {
        let text = b"short\n0123456789abcdef\nlast";
        // A reader that hands out 3 bytes at a time, as a pipe may.
        let mut reader = BufReader::with_capacity(3, &text[..]);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        loop {
            match read_line(&mut reader, &mut buf, 8).unwrap() {
                Line::End => break,
                Line::TooLong => {
                    assert!(buf.is_empty() && buf.capacity() <= 16);
                    seen.push("(too long)".to_owned());
                }
                Line::Whole => seen.push(String::from_utf8(buf.clone()).unwrap()),
            }
        }
        assert_eq!(seen, ["short", "(too long)", "last"]);
    }

    #[test]
    fn csv_rows_longer_than_the_cap_are_skipped_and_the_rest_read() {
        let text = "a,b\n1,x\n2,\"quoted\nover lines\"\n3,y\n0123456789ab,z\nbad\n4,w\n";
        let mut table = csv::ReaderBuilder::new().from_reader(Rows::new(text.as_bytes(), 12));
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        let mut record = csv::StringRecord::new();
        loop {
            match table.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => rows.push(record.get(0).unwrap().to_owned()),
                Err(e) => errors.push(e.position().unwrap().line()),
            }
        }
        assert_eq!(rows, ["1", "3", "4"]);
        // A ragged row after them is still found (the table counts the skipped row's
        // lines as blank ones before it, as for any blank line).
        assert_eq!(errors, [6]);
        assert_eq!(table.get_ref().too_long, 2);
        assert_eq!(table.get_ref().skipped, [3, 6]);

        let e = from_csv(format!("{}\n1\n", "h".repeat(MAX_LINE + 1)).as_bytes()).unwrap_err();
        assert!(e.contains("header row is longer than"), "{e}");
        let (_, s) =
            from_csv(format!("a\n1\n{}\n2\n", "9".repeat(MAX_LINE + 1)).as_bytes()).unwrap();
        assert_eq!((s.requests, s.too_long), (2, 1));
    }
}
