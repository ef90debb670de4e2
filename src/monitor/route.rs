//! One route's monitor: what it keeps per backend, and how each exchange and each pair of
//! answers is counted; the settings' checks that read a reference file.

use super::drift::{Builder, Layout, OutputBins, Reference, Window};
use super::features::{self, Schema};
use super::stats::{self, BackendStats, FeatureStats, OutputStats};
use crate::config::MonitorConfig as Settings;
use crate::wire::{Exchange, Payload, Protocol};
use serde::Serialize;
use tokio::time::Instant;

/// Backends one route's monitor tracks; exchanges of any further backend are dropped and counted.
pub const MAX_BACKENDS: usize = 16;

// === Settings ===

/// The config's reference files that do not read, each with its field path
/// (`monitor.reference.file`): the monitor reads them, so it checks them
/// ([`config::Outside`](crate::config::Outside)).
pub fn reference_problems(
    config: &crate::config::Config,
) -> Vec<(crate::config::FieldPath, String)> {
    let mut problems = Vec::new();
    for (p, m) in config.monitor_blocks() {
        if let Some(file) = &m.reference.file {
            if let Err(e) = Reference::load(file) {
                problems.push((p.key("reference").key("file"), e));
            }
        }
    }
    problems
}

impl Settings {
    /// What `switchyard validate` can tell of a `reference.file` without live requests: a
    /// file of no input features (one built from redacted inputs), or one whose features
    /// share no name with the configured `features`. Empty without a file, or when it
    /// does not read (that is an error, reported by the config check).
    pub fn reference_warnings(&self) -> Vec<String> {
        let Some(path) = &self.reference.file else {
            return Vec::new();
        };
        let Ok(reference) = Reference::load(path) else {
            return Vec::new();
        };
        let file = path.display();
        let names = &reference.features;
        if names.is_empty() {
            return vec![format!(
                "reference.file {file} has no input features: no data drift will be \
                 measured, only output drift (a reference built from a capture whose inputs \
                 were redacted has none)"
            )];
        }
        let configured = &self.features;
        if !configured.is_empty() && !configured.iter().any(|f| names.contains_key(&f.name)) {
            return vec![format!(
                "reference.file {file} shares no feature name with monitor.features \
                 (the file: {}; configured: {}): no data drift will be measured",
                listed(names.keys().map(String::as_str)),
                listed(configured.iter().map(|f| f.name.as_str())),
            )];
        }
        Vec::new()
    }
}

// === impl Monitor ===

/// Payload statistics and drift for one route (see the module docs).
///
/// Not shared between threads by itself: the observer that owns it calls
/// [`observe`](Monitor::observe); readers take a [`report`](Monitor::report).
#[derive(Debug)]
pub struct Monitor {
    pub(super) settings: Settings,
    pub(super) schema: Schema,
    pub(super) backends: Vec<Backend>,
    pub(super) layout: Option<Layout>,
    pub(super) builder: Option<Builder>,
    pub(super) samples: Samples,
    /// Per feature, how many values the current exchange had (for absent values).
    pub(super) seen: Vec<u32>,
    /// Where the drift windows' time buckets start.
    pub(super) origin: Instant,
    /// Per protocol ([`Protocol`] as an index), whether a `redact` pointer may reach where
    /// an answer's predictions are read: then their labels and scores are counted, not shown.
    pub(super) answers_hidden: [bool; 5],
    /// The warnings already logged (a [`Warning`] as a bit), so that each is logged once.
    pub(super) logged: u8,
    /// The schema's features, and how many of them are redacted, when the warnings were
    /// last checked for the log; `None`: check again (a reference was put in use, or the
    /// features were forgotten).
    pub(super) checked: Option<(usize, usize)>,
}

/// Why the monitor measures no data drift although a reference is in use: each is shown
/// in the status and `GET /api/v1/monitor` while it holds, and logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// The reference has no input features (a file of none, or one built from redacted
    /// inputs): only output drift is measured.
    NoFeatures,
    /// The reference's features and the features in requests share no name.
    NoSharedName,
    /// Every feature in requests is under a `redact` pointer: none is shown or measured.
    AllRedacted,
}

#[derive(Debug)]
pub(super) struct Backend {
    pub(super) name: Box<str>,
    pub(super) stats: BackendStats,
    pub(super) window: Option<Window>,
    /// Outputs of the answers this backend gave to mirrored requests, the live one's or
    /// the mirror's ([`Monitor::pair`]): output drift on the very same requests.
    pub(super) paired: Option<Window>,
}

/// Exchanges the monitor was handed, by what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Samples {
    /// The request was read.
    pub parsed: u64,
    /// The request was not JSON (or was truncated).
    pub unparseable: u64,
    /// The backend was beyond [`MAX_BACKENDS`]: not counted anywhere else.
    pub dropped: u64,
}

impl Monitor {
    /// A monitor with validated settings; a reference `file` is read here.
    pub fn new(settings: Settings) -> Result<Monitor, String> {
        settings.validate()?;
        let schema = Schema::new(&settings.features, settings.max_features)?
            .shared(settings.protocol)
            .redacting(&settings.redact);
        let answers_hidden = [
            Protocol::Auto,
            Protocol::V2,
            Protocol::V1,
            Protocol::OpenAi,
            Protocol::Json,
        ]
        .map(|p| crate::wire::answer_redacted(&settings.redact, p));
        let mut monitor = Monitor {
            answers_hidden,
            schema,
            backends: Vec::new(),
            layout: None,
            builder: None,
            samples: Samples::default(),
            seen: Vec::new(),
            origin: Instant::now(),
            settings,
            logged: 0,
            checked: None,
        };
        if let Some(path) = &monitor.settings.reference.file {
            let reference = Reference::load(path)?;
            monitor.set_reference(reference);
        }
        Ok(monitor)
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Starts building the reference from the next `reference.requests` sampled requests of
    /// `backend` (the stable), when the monitor of a stable model starts; the current
    /// reference, if any, stays in use until the new one is complete. Does nothing with a
    /// reference file.
    pub fn start_reference(&mut self, backend: &str) {
        if self.settings.reference.file.is_none() {
            self.builder = Some(Builder::new(backend, self.settings.reference.requests));
        }
    }

    /// A new rollout (a new candidate, a retry) on the same stable model: the features
    /// found in requests are forgotten ([`forget_discovered`](Monitor::forget_discovered))
    /// and the drift windows start empty, but a reference already built stays, so that
    /// drift that happened before the rollout still shows as drift. A reference still
    /// being built starts over from `stable`'s next requests (the features it counted
    /// were named by the forgotten ones).
    pub fn begin_rollout(&mut self, stable: &str) {
        let building = self.builder.is_some();
        self.forget_discovered();
        if building || (self.layout.is_none() && self.settings.reference.file.is_none()) {
            self.builder = None;
            self.start_reference(stable);
        }
    }

    /// Puts a reference in use; every backend's drift window starts empty.
    pub fn set_reference(&mut self, reference: Reference) {
        let mut layout = Layout::new(reference);
        layout.link(self.schema.features.iter().map(|f| &*f.name));
        for b in &mut self.backends {
            b.window = Some(new_window(&self.settings, self.origin, &layout));
            b.paired = Some(new_window(&self.settings, self.origin, &layout));
        }
        self.layout = Some(layout);
        self.checked = None;
    }

    /// Empties every backend's drift window, so that the figures from now on (output
    /// drift above all) are of this rollout's exchanges only, as the analysis looks back
    /// no further than the rollout's start. Statistics and the reference stay.
    pub fn clear_windows(&mut self) {
        if let Some(layout) = &self.layout {
            for b in &mut self.backends {
                b.window = Some(new_window(&self.settings, self.origin, layout));
                b.paired = Some(new_window(&self.settings, self.origin, layout));
            }
        }
    }

    /// Empties the output counts of every backend but `stable` (the windows' label and
    /// score bins) and every paired window, so that the `output_drift` gate reads the
    /// candidate's answers under the rollout's current step only: a step changes what the
    /// candidate answers (a shadow step's mirrored copies, then a canary's own users),
    /// and figures mixing two steps judge neither. The stable's answers stay: they are
    /// what the candidate's are compared with at any step (at a 100 % step, the last the
    /// stable gave). Feature counts, statistics and the reference stay.
    pub fn clear_outputs(&mut self, stable: &str) {
        if let Some(layout) = &self.layout {
            let outputs = layout.outputs();
            for b in &mut self.backends {
                if *b.name != *stable {
                    if let Some(w) = &mut b.window {
                        w.clear(outputs.clone());
                    }
                }
                b.paired = Some(new_window(&self.settings, self.origin, layout));
            }
        }
    }

    /// Forgets the features found in requests and their statistics (configured ones
    /// stay), so that the slots a request took before a new rollout are free for the
    /// requests of this one (see [`features`]). The drift windows start empty.
    pub fn forget_discovered(&mut self) {
        self.schema.forget_discovered();
        let kept = self.schema.configured();
        for b in &mut self.backends {
            b.stats.features.truncate(kept);
        }
        if let Some(layout) = &mut self.layout {
            layout.unlink();
        }
        self.checked = None;
        self.clear_windows();
    }

    /// The reference in use, as its file would hold it.
    pub fn reference(&self) -> Option<Reference> {
        self.layout.as_ref().map(Layout::reference)
    }

    /// The reference in use as the admin API exports it, in the format of its file, or why
    /// there is none yet (the requests it is being built from, so far and in all). Where a
    /// `redact` pointer may reach the answers' predictions (whose labels and scores are then
    /// never shown), the output bins are left out: the labels and score edges they hold
    /// are those values.
    pub fn reference_in_use(&self) -> Result<Reference, String> {
        if let Some(mut r) = self.reference() {
            if self.answers_hidden.iter().any(|&hidden| hidden) {
                r.outputs = OutputBins::default();
            }
            return Ok(r);
        }
        Err(match &self.builder {
            Some(b) => format!(
                "no reference yet: building from the sampled requests of {}: {} of {} requests",
                b.backend, b.requests, b.target
            ),
            None => "no reference in use".to_owned(),
        })
    }

    /// What keeps data drift from being measured although a reference is in use (see
    /// [`Warning`]), each with a sentence for a person; empty when nothing does.
    pub fn warnings(&self) -> Vec<(Warning, String)> {
        let Some(layout) = &self.layout else {
            return Vec::new();
        };
        let names = layout.feature_names();
        let features = &self.schema.features;
        let shown: Vec<&str> = features
            .iter()
            .filter(|f| !f.redacted)
            .map(|f| &*f.name)
            .collect();
        let mut warnings = Vec::new();
        if names.is_empty() {
            let why = if !features.is_empty() && shown.is_empty() {
                " (the features in requests are under a `redact` pointer, whose values are \
                 never kept)"
            } else if self.settings.reference.file.is_some() {
                " (the reference file names none)"
            } else {
                ""
            };
            warnings.push((
                Warning::NoFeatures,
                format!(
                    "the reference in use has no input features{why}: no data drift is \
                     measured, only output drift"
                ),
            ));
        } else if !shown.is_empty()
            && !shown
                .iter()
                .any(|n| names.binary_search_by(|r| r.as_str().cmp(n)).is_ok())
        {
            warnings.push((
                Warning::NoSharedName,
                format!(
                    "the reference's features ({}) share no name with the features in \
                     requests ({}): no data drift is measured; build the reference from \
                     these requests, or name the features in `monitor.features` as the \
                     reference does",
                    listed(names.iter().map(String::as_str)),
                    listed(shown.iter().copied()),
                ),
            ));
        } else if !features.is_empty() && shown.is_empty() {
            warnings.push((
                Warning::AllRedacted,
                format!(
                    "every feature in requests ({}) is under a `redact` pointer (the \
                     capture's or the comparison's): none is shown or measured for drift",
                    listed(features.iter().map(|f| &*f.name)),
                ),
            ));
        }
        warnings
    }

    /// Logs each [warning](Monitor::warnings) of `route` the first time it holds; cheap
    /// unless a reference was put in use or features were named since the last call.
    pub fn log_warnings(&mut self, route: &str) {
        let features = &self.schema.features;
        let now = (
            features.len(),
            features.iter().filter(|f| f.redacted).count(),
        );
        if self.checked == Some(now) {
            return;
        }
        self.checked = Some(now);
        for (w, message) in self.warnings() {
            let bit = 1u8 << (w as u8);
            if self.logged & bit == 0 {
                self.logged |= bit;
                tracing::warn!(target: "switchyard::monitor", route = %route, "{message}");
            }
        }
    }

    /// Parses an exchange's bodies under the configured protocol (see [`Payload::parse`]).
    pub fn parse(&self, exchange: &Exchange<'_>) -> Payload {
        Payload::parse(exchange, self.settings.protocol)
    }

    /// Counts one observed exchange, parsed once by [`Monitor::parse`] (or [`Payload::parse`]).
    pub fn observe(&mut self, exchange: &Exchange<'_>, payload: &Payload, now: Instant) {
        let Some(b) = self.backend(exchange.backend) else {
            self.samples.dropped += 1;
            return;
        };
        let sample = payload
            .request
            .as_ref()
            .map(|r| self.schema.extract(payload.protocol, r));
        if let Some(layout) = &mut self.layout {
            layout.link(self.schema.features.iter().map(|f| &*f.name));
        }
        let building = self
            .builder
            .as_ref()
            .is_some_and(|r| *r.backend == *exchange.backend);
        let Backend { stats, window, .. } = &mut self.backends[b];
        let mut to = Observed {
            layout: self.layout.as_ref(),
            bucket: window.as_mut().and_then(|w| w.bucket(now)),
            builder: self.builder.as_mut().filter(|_| building),
        };
        stats.requests += 1;
        stats.request_bytes.add(payload.request_bytes as f64);
        stats.answer_bytes.add(payload.answer_bytes as f64);
        match &sample {
            Some(s) => {
                self.samples.parsed += 1;
                stats.rows.add(s.rows as f64);
                record_inputs(&mut self.schema, stats, &mut self.seen, s, &mut to);
            }
            None => {
                self.samples.unparseable += 1;
                stats.unparsed += 1;
            }
        }
        let hidden = self.answers_hidden[payload.protocol as usize];
        record_outputs(&mut stats.outputs, payload, hidden, &mut to);
        if building {
            self.finish_request();
        }
        self.log_warnings(exchange.route);
    }

    /// Counts the outputs of one mirrored request's two answers, the live one's and the
    /// mirror's (each already [observed](Monitor::observe)), in their backends' paired
    /// windows: output drift then compares the two models' answers to the very same
    /// requests, which no mix of inputs (one user's flood, a skewed sticky split) can move.
    pub fn pair(&mut self, live: (&str, &Payload), mirror: (&str, &Payload), now: Instant) {
        let (Some(l), Some(m)) = (self.backend(live.0), self.backend(mirror.0)) else {
            return;
        };
        let Some(layout) = &self.layout else {
            return;
        };
        for (b, payload) in [(l, live.1), (m, mirror.1)] {
            if self.answers_hidden[payload.protocol as usize] {
                continue;
            }
            let Some(bucket) = self.backends[b].paired.as_mut().and_then(|w| w.bucket(now)) else {
                continue;
            };
            for p in &payload.predictions {
                for bin in layout
                    .output_bins(p.label.as_deref(), p.score)
                    .into_iter()
                    .flatten()
                {
                    if let Some(c) = bucket.get_mut(bin) {
                        *c = c.saturating_add(1);
                    }
                }
            }
        }
    }

    /// Counts a request towards the reference being built, and puts it in use when complete.
    fn finish_request(&mut self) {
        let Some(builder) = &mut self.builder else {
            return;
        };
        builder.requests += 1;
        if builder.done() {
            if let Some(builder) = self.builder.take() {
                let features = &self.schema.features;
                let reference = builder.finish(|ix| &features[ix].name);
                self.set_reference(reference);
            }
        }
    }

    /// The index of a backend's state, made on first sight; `None` beyond [`MAX_BACKENDS`].
    fn backend(&mut self, name: &str) -> Option<usize> {
        if let Some(i) = self.backends.iter().position(|b| *b.name == *name) {
            return Some(i);
        }
        if self.backends.len() >= MAX_BACKENDS {
            return None;
        }
        let window = || {
            self.layout
                .as_ref()
                .map(|l| new_window(&self.settings, self.origin, l))
        };
        let (window, paired) = (window(), window());
        self.backends.push(Backend {
            name: name.into(),
            stats: BackendStats::default(),
            window,
            paired,
        });
        Some(self.backends.len() - 1)
    }
}

/// The first few of `names`, and how many there are in all: `a, b, c, … (9 in all)`.
fn listed<'n>(names: impl ExactSizeIterator<Item = &'n str>) -> String {
    const SHOWN: usize = 4;
    let n = names.len();
    let mut text = names.take(SHOWN).collect::<Vec<_>>().join(", ");
    if n > SHOWN {
        text.push_str(&format!(", … ({n} in all)"));
    }
    text
}

/// An empty drift window for a reference's layout.
fn new_window(settings: &Settings, origin: Instant, layout: &Layout) -> Window {
    Window::new(origin, settings.window, settings.bucket, layout.width)
}

/// Where one exchange's values go besides the statistics: the current bucket of the
/// backend's drift window, and the reference being built.
struct Observed<'a> {
    layout: Option<&'a Layout>,
    bucket: Option<&'a mut [u32]>,
    builder: Option<&'a mut Builder>,
}

impl Observed<'_> {
    /// Counts one value in the drift window's bin `bin`.
    fn count(&mut self, bin: usize) {
        if let Some(c) = self.bucket.as_deref_mut().and_then(|b| b.get_mut(bin)) {
            *c = c.saturating_add(1);
        }
    }
}

/// Counts a request's feature values, and the absent values of discovered features.
fn record_inputs(
    schema: &mut Schema,
    stats: &mut BackendStats,
    seen: &mut Vec<u32>,
    sample: &features::Sample<'_>,
    to: &mut Observed<'_>,
) {
    let n = schema.features.len();
    stats.features.resize_with(n, FeatureStats::default);
    seen.clear();
    seen.resize(n, 0);
    for (ix, cell) in &sample.cells {
        let i = *ix as usize;
        let (Some(feature), Some(fs), Some(n)) = (
            schema.features.get_mut(i),
            stats.features.get_mut(i),
            seen.get_mut(i),
        ) else {
            continue;
        };
        let read = stats::read(cell);
        fs.record(feature, &read);
        *n = n.saturating_add(1);
        // A redacted feature's values stay out of the drift windows and the reference.
        if feature.redacted {
            continue;
        }
        if let Some(bin) = to.layout.and_then(|l| l.feature_bin(*ix, &read)) {
            to.count(bin);
        }
        if let Some(builder) = to.builder.as_deref_mut() {
            builder.feature(*ix, feature.kind, &read);
        }
    }
    for &(ix, rows) in &sample.absent {
        if let Some(fs) = stats.features.get_mut(ix as usize) {
            fs.absent(rows as u64);
        }
    }
    for (i, f) in schema.features.iter().enumerate() {
        if f.discovered == Some(sample.protocol) {
            let absent = sample.rows.saturating_sub(seen[i] as usize);
            if absent > 0 {
                stats.features[i].absent(absent as u64);
            }
        }
    }
}

/// Counts an answer's predictions; `hidden`: a `redact` pointer may reach them, so their
/// labels and scores are counted, not shown (they still make the output drift).
fn record_outputs(stats: &mut OutputStats, payload: &Payload, hidden: bool, to: &mut Observed<'_>) {
    stats.record(payload, hidden);
    for p in &payload.predictions {
        if let Some(layout) = to.layout {
            for bin in layout
                .output_bins(p.label.as_deref(), p.score)
                .into_iter()
                .flatten()
            {
                to.count(bin);
            }
        }
        if let Some(builder) = to.builder.as_deref_mut() {
            builder.prediction(p);
        }
    }
}
