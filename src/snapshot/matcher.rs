//! The route decision: which of the configured routes takes a request.
//!
//! Routes are tried in order and the first whose conditions all hold takes the request;
//! a route without conditions takes everything and may only be last. The decision is
//! made from the request head, except for OpenAI-style requests when some route has a
//! `model` condition: their model is in the JSON body, so [`Matcher::pick`] says
//! [`Pick::NeedsBody`] and the caller, once it holds the body, asks
//! [`Matcher::pick_with_body`].
//!
//! ```
//! use http::{HeaderMap, Method, Uri};
//! use switchyard::snapshot::matcher::{MatchRule, Matcher, Pick};
//!
//! let matcher = Matcher::new(vec![
//!     ("iris".into(), Some(MatchRule { model: Some("iris".into()), ..Default::default() })),
//!     ("rest".into(), None),
//! ])
//! .unwrap();
//! let uri = Uri::from_static("/v2/models/iris/versions/2/infer");
//! assert_eq!(matcher.pick(&Method::POST, &uri, &HeaderMap::new()), Pick::Route(0));
//! let chat = Uri::from_static("/v1/chat/completions");
//! assert_eq!(matcher.pick(&Method::POST, &chat, &HeaderMap::new()), Pick::NeedsBody);
//! let body = br#"{"messages": [], "model": "iris"}"#;
//! assert_eq!(matcher.pick_with_body(&Method::POST, &chat, &HeaderMap::new(), body), Pick::Route(0));
//! ```
//!
//! How each condition reads a request:
//!
//! - `model`: the `NAME` of a KServe/MLServer V2 path `/v2/models/NAME[/...]`, of a
//!   TF-Serving V1 path `/v1/models/NAME[/...][:VERB]` (the name stops at the first `/`
//!   or `:`, as in TF-Serving's own grammar), or the top-level `"model"` string of the JSON
//!   body of a `POST` to `/v1/chat/completions`, `/v1/completions` or `/v1/embeddings`
//!   (those exact paths). A name in a path is percent-decoded after the path is split at
//!   its `/`s, so `my%20model` is `my model` and `a%2Fb` is `a/b` (clients such as
//!   Triton's quote model names); a malformed escape or a name that is not UTF-8 names no
//!   model. Names are compared exactly (case-sensitive).
//! - `path_prefix`: segment by segment, as Kubernetes' `Prefix` path type: `/fraud` and
//!   `/fraud/` both take `/fraud`, `/fraud/` and `/fraud/score`, never `/fraudulent`. The
//!   path is compared as sent (neither decoded nor normalised), which is also what the
//!   backend receives; the query string plays no part.
//! - `header`: each named header's first value is exactly the given value (the name is
//!   case-insensitive, the value is not), as the rest of switchyard reads headers.
//! - `host`: the request's authority (the URI's, as HTTP/2 and absolute-form requests
//!   carry it, else the `Host` header), case-insensitive; its port counts only when the
//!   condition gives one.
//!
//! Deciding from the head allocates nothing (but for a percent-encoded model name, which
//! is decoded into a string of its own): paths, names and values are compared as slices
//! of the request, and the header names are made once when the matcher is built. Nor
//! does it grow with the number of routes: each route is filed under one key (its model,
//! a header's value or its prefix's first segment), so a decision looks up the request's
//! few keys and checks only the routes filed under them and those without one. A body's
//! model is borrowed from the body unless it holds escapes.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Method, Uri};

/// The conditions of one route, as configured: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchRule {
    /// The model the request is for (from its path, or an OpenAI-style body).
    pub model: Option<String>,
    /// The path's leading segments, e.g. `/fraud/`.
    pub path_prefix: Option<String>,
    /// Headers (name, value) the request must carry, each with exactly that value.
    pub header: Vec<(String, String)>,
    /// The host the request is addressed to, with or without a port.
    pub host: Option<String>,
}

impl From<&crate::config::Match> for MatchRule {
    fn from(m: &crate::config::Match) -> MatchRule {
        MatchRule {
            model: m.model.clone(),
            path_prefix: m.path_prefix.clone(),
            header: m
                .header
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            host: m.host.clone(),
        }
    }
}

/// What the route decision came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The route at this index (in the order given to [`Matcher::new`]) takes the request.
    Route(usize),
    /// The route depends on the `model` in the request's JSON body: read the body, then
    /// ask [`Matcher::pick_with_body`].
    NeedsBody,
    /// No route takes the request (the caller answers 404).
    NoRoute,
}

/// The routes of a configuration, in order, ready to decide where each request goes.
#[derive(Debug)]
pub struct Matcher {
    routes: Box<[Route]>,
    index: Index,
    /// The header names conditions read, each once; a condition refers to one by index.
    header_names: Box<[HeaderName]>,
}

/// One route: its name and conditions.
#[derive(Debug)]
struct Route {
    name: Box<str>,
    model: Option<Box<str>>,
    /// Without its trailing `/`.
    path_prefix: Option<Box<str>>,
    /// (index into [`Matcher::header_names`], the value it must have)
    header: Box<[(usize, HeaderValue)]>,
    host: Option<HostRule>,
}

/// A `host` condition: the name (compared without case) and, when given, the port.
#[derive(Debug)]
struct HostRule {
    name: Box<str>,
    port: Option<u16>,
}

/// Route indices, in order, under a key a request may have.
type Table<K> = HashMap<K, Vec<usize>, BuildHasherDefault<KeyHasher>>;

/// Hashes the index's keys with xxh3, as sticky keys are hashed. The keys are configured
/// names and a lookup never adds one, so no request can make a table degrade: the std
/// hasher's per-process seed would cost time and buy nothing here.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    /// The end mark of a `str` and the length of a `[u8]` (one key per hash: a cheap mix
    /// is enough, rather than another pass of xxh3).
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_usize(n.into());
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Each route filed once, under the first key it has: its model, else its first header
/// condition, else the first segment of its path prefix, else none. The routes a request
/// may match are those under its keys and those without one; so a decision looks up a
/// few keys and checks a few routes, however many there are.
#[derive(Debug, Default)]
struct Index {
    by_model: Table<Box<str>>,
    /// Every route with a `model` condition: those a body not read yet may name.
    with_model: Vec<usize>,
    /// Per header name (an index into [`Matcher::header_names`]), by value.
    by_header: Vec<(usize, Table<Box<[u8]>>)>,
    by_segment: Table<Box<str>>,
    unkeyed: Vec<usize>,
    /// The first route takes every request (it is then the only one).
    everything: bool,
}

/// Where a request names its model, as far as its head tells.
enum Model<'r> {
    /// In its path (decoded when it was percent-encoded).
    Named(Cow<'r, str>),
    /// In its JSON body, not read yet.
    InBody,
    /// Nowhere.
    Unnamed,
}

/// The paths of OpenAI-style requests whose JSON body names the model.
const OPENAI_PATHS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

// === impl Matcher ===

impl Matcher {
    /// The matcher of a validated config's routes (a catch-all route has no rule).
    pub fn from_routes(routes: &[crate::config::Route]) -> Result<Matcher, String> {
        let rules = routes
            .iter()
            .map(|r| {
                let rule = (!r.when.is_catch_all()).then(|| MatchRule::from(&r.when));
                (r.name.clone(), rule)
            })
            .collect();
        Matcher::new(rules)
    }

    /// Builds the matcher for routes given in order as (name, conditions); `None` is a
    /// route that takes every request, allowed only last.
    pub fn new(rules: Vec<(String, Option<MatchRule>)>) -> Result<Matcher, String> {
        if rules.is_empty() {
            return Err("no routes".into());
        }
        let last = rules.len() - 1;
        let mut header_names = Vec::new();
        let mut routes = Vec::with_capacity(rules.len());
        for (i, (name, rule)) in rules.into_iter().enumerate() {
            if rule.is_none() && i != last {
                return Err(format!(
                    "route `{name}` has no `match`, so it takes every request: only the last route may omit it"
                ));
            }
            routes.push(Route::new(name, rule, &mut header_names)?);
        }
        Ok(Matcher {
            index: Index::new(&routes),
            routes: routes.into(),
            header_names: header_names.into(),
        })
    }

    /// Decides the route from the request head: a route, [`Pick::NeedsBody`] (only for an
    /// OpenAI-style `POST` whose route depends on its body's model), or no route.
    #[inline]
    pub fn pick(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Pick {
        // One route that takes everything (a top-level `rollout:`): nothing to look at.
        if self.index.everything {
            return Pick::Route(0);
        }
        let model = self.model(method, uri);
        self.first(model, &Facts::new(uri, headers))
    }

    /// Decides the route with the request's body at hand: as [`Matcher::pick`], except
    /// that an OpenAI-style request's model is read from `body` (never
    /// [`Pick::NeedsBody`]). A body that is not a JSON object with a string `"model"` at
    /// its top level names no model.
    pub fn pick_with_body(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Pick {
        let model = match self.model(method, uri) {
            Model::InBody => body_model(body).map_or(Model::Unnamed, Model::Named),
            model => model,
        };
        self.first(model, &Facts::new(uri, headers))
    }

    /// The name of the route at `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.routes[index].name
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes (never, once built).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Where the request names its model; not looked for when no route asks.
    fn model<'r>(&self, method: &Method, uri: &'r Uri) -> Model<'r> {
        if self.index.with_model.is_empty() {
            return Model::Unnamed;
        }
        let path = uri.path();
        if let Some(name) = path_model(path) {
            return decode(name).map_or(Model::Unnamed, Model::Named);
        }
        if method == Method::POST && OPENAI_PATHS.contains(&path) {
            return Model::InBody;
        }
        Model::Unnamed
    }

    /// The first route that takes the request, its `model` being `model`.
    fn first(&self, model: Model<'_>, facts: &Facts<'_>) -> Pick {
        let index = &self.index;
        let by_model = match &model {
            Model::Named(name) => index.by_model.get(&**name).map_or(&[][..], Vec::as_slice),
            Model::InBody => &index.with_model,
            Model::Unnamed => &[],
        };
        let by_header = index.by_header.iter().filter_map(|(name, by_value)| {
            by_value.get(facts.header(&self.header_names, *name)?.as_bytes())
        });
        let by_segment = (!index.by_segment.is_empty())
            .then(|| index.by_segment.get(first_segment(facts.path)?))
            .flatten();
        let lists = by_header.chain(by_segment).map(Vec::as_slice);
        // (the first route so far, whether it is one a body not read yet may name)
        let mut first = self
            .first_of(by_model, usize::MAX, facts)
            .map(|i| (i, true));
        for routes in lists.chain([&index.unkeyed[..]]) {
            let before = first.map_or(usize::MAX, |(i, _)| i);
            if let Some(i) = self.first_of(routes, before, facts) {
                first = Some((i, false));
            }
        }
        match first {
            Some((_, true)) if matches!(model, Model::InBody) => Pick::NeedsBody,
            Some((i, _)) => Pick::Route(i),
            None => Pick::NoRoute,
        }
    }

    /// The first of `routes` (in order) that comes before `before` and holds.
    fn first_of(&self, routes: &[usize], before: usize, facts: &Facts<'_>) -> Option<usize> {
        let holds = |i: &usize| self.routes[*i].holds(&self.header_names, facts);
        routes
            .iter()
            .copied()
            .take_while(|i| *i < before)
            .find(holds)
    }
}

// === impl Index ===

impl Index {
    fn new(routes: &[Route]) -> Index {
        let mut index = Index::default();
        for (i, route) in routes.iter().enumerate() {
            if let Some(model) = &route.model {
                index.by_model.entry(model.clone()).or_default().push(i);
                index.with_model.push(i);
            } else if let Some((name, value)) = route.header.first() {
                let by_header = &mut index.by_header;
                let at = place_of(by_header, |(n, _)| n == name, || (*name, Table::default()));
                let by_value = &mut by_header[at].1;
                by_value.entry(value.as_bytes().into()).or_default().push(i);
            } else if let Some(segment) = route.path_prefix.as_deref().and_then(first_segment) {
                index.by_segment.entry(segment.into()).or_default().push(i);
            } else {
                index.unkeyed.push(i);
            }
        }
        index.everything = routes.first().is_some_and(Route::takes_everything);
        index
    }
}

/// The place in `items` of the first that `is`, `new()` pushed there when none is.
fn place_of<T>(items: &mut Vec<T>, is: impl Fn(&T) -> bool, new: impl FnOnce() -> T) -> usize {
    items.iter().position(is).unwrap_or_else(|| {
        items.push(new());
        items.len() - 1
    })
}

/// The first segment of a path (`fraud` of `/fraud/score`), if it starts with `/`. Every
/// path under a prefix has the prefix's first segment, when the prefix has one.
fn first_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let end = rest.bytes().position(|b| b == b'/').unwrap_or(rest.len());
    Some(&rest[..end])
}

// === impl Route ===

impl Route {
    /// Checks a route's conditions, interning its header names into `header_names`.
    fn new(
        name: String,
        rule: Option<MatchRule>,
        header_names: &mut Vec<HeaderName>,
    ) -> Result<Route, String> {
        let mut route = Route {
            name: name.into(),
            model: None,
            path_prefix: None,
            header: Box::new([]),
            host: None,
        };
        let Some(rule) = rule else {
            return Ok(route);
        };
        let fail = |what: String| format!("route `{}`: {what}", route.name);
        if rule == MatchRule::default() {
            return Err(fail(
                "`match` gives no condition (omit `match` for a route that takes everything)"
                    .into(),
            ));
        }
        if rule.model.as_deref() == Some("") {
            return Err(fail("`model` is empty".into()));
        }
        route.model = rule.model.map(Into::into);
        let path_prefix = rule.path_prefix.as_deref().map(path_prefix).transpose();
        let header = header_rules(&rule.header, header_names);
        let host = rule.host.as_deref().map(HostRule::new).transpose();
        route.path_prefix = path_prefix.map_err(fail)?;
        route.header = header.map_err(fail)?;
        route.host = host.map_err(fail)?;
        Ok(route)
    }

    /// Whether the route has no condition at all.
    fn takes_everything(&self) -> bool {
        self.model.is_none()
            && self.path_prefix.is_none()
            && self.header.is_empty()
            && self.host.is_none()
    }

    /// Whether the route's head conditions (all but `model`) hold for the request.
    fn holds(&self, header_names: &[HeaderName], facts: &Facts<'_>) -> bool {
        if let Some(prefix) = &self.path_prefix {
            if !crate::config::path_under(facts.path, prefix) {
                return false;
            }
        }
        for (name, value) in &self.header {
            if facts.header(header_names, *name) != Some(value) {
                return false;
            }
        }
        match &self.host {
            Some(rule) => facts
                .host()
                .is_some_and(|(name, port)| rule.takes(name, port)),
            None => true,
        }
    }
}

/// A `path_prefix` as compared: it starts with `/`, its trailing `/` dropped.
fn path_prefix(prefix: &str) -> Result<Box<str>, String> {
    if !prefix.starts_with('/') {
        return Err(format!("`path_prefix` {prefix:?} does not start with `/`"));
    }
    if prefix.contains(|c: char| c == '?' || c == '#' || c.is_whitespace()) {
        return Err(format!(
            "`path_prefix` {prefix:?} holds a `?`, `#` or white space"
        ));
    }
    Ok(prefix.trim_end_matches('/').into())
}

/// The `header` conditions, each name interned into `names` (lowercase, once).
fn header_rules(
    header: &[(String, String)],
    names: &mut Vec<HeaderName>,
) -> Result<Box<[(usize, HeaderValue)]>, String> {
    let mut rules: Vec<(usize, HeaderValue)> = Vec::with_capacity(header.len());
    for (name, value) in header {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`header` name {name:?} is not a header name"))?;
        let value = HeaderValue::from_str(value)
            .ok()
            .filter(|v| v.as_bytes().trim_ascii().len() == v.len())
            .ok_or_else(|| {
                format!("`header` {name}: {value:?} is not a header value a request can carry")
            })?;
        let index = place_of(names, |n| *n == name, || name.clone());
        if rules.iter().any(|(i, _)| *i == index) {
            return Err(format!("`header` {name} is given twice"));
        }
        rules.push((index, value));
    }
    Ok(rules.into())
}

// === impl HostRule ===

impl HostRule {
    /// Reads a `host` condition: a host name or address, then optionally `:PORT`.
    fn new(host: &str) -> Result<HostRule, String> {
        let refuse = || format!("`host` {host:?} is not a host, with or without a port");
        if host.contains(['@', '/', '*']) || host.parse::<http::uri::Authority>().is_err() {
            return Err(refuse());
        }
        match split_authority(host) {
            Some((name, port)) if !name.is_empty() => Ok(HostRule {
                name: name.into(),
                port,
            }),
            _ => Err(refuse()),
        }
    }

    /// Whether a request addressed to `name` (and `port`, when it gave one) is meant.
    fn takes(&self, name: &str, port: Option<u16>) -> bool {
        self.name.eq_ignore_ascii_case(name) && self.port.is_none_or(|p| port == Some(p))
    }
}

/// The request's authority split into host and port, without allocating: `None` when
/// the value is not one.
fn split_authority(authority: &str) -> Option<HostPort<'_>> {
    match authority.rfind(':') {
        // A `:` inside brackets belongs to an IPv6 address.
        Some(i) if !authority[i..].contains(']') => {
            let (host, port) = (&authority[..i], &authority[i + 1..]);
            let port = if port.is_empty() {
                None
            } else {
                Some(port.parse().ok()?)
            };
            Some((host, port))
        }
        _ => Some((authority, None)),
    }
}

// === the request's facts ===

/// A host and, when given, its port.
type HostPort<'r> = (&'r str, Option<u16>);

/// How many distinct header names a request remembers having looked up; conditions on
/// names past these look theirs up each time.
const REMEMBERED: usize = 8;

/// What the conditions read of one request, each looked up at most once.
struct Facts<'r> {
    uri: &'r Uri,
    path: &'r str,
    headers: &'r HeaderMap,
    host: Cell<Option<Option<HostPort<'r>>>>,
    values: [Cell<Option<Option<&'r HeaderValue>>>; REMEMBERED],
}

impl<'r> Facts<'r> {
    fn new(uri: &'r Uri, headers: &'r HeaderMap) -> Self {
        Facts {
            uri,
            path: uri.path(),
            headers,
            host: Cell::default(),
            values: Default::default(),
        }
    }

    /// The first value of the header `names[index]`.
    fn header(&self, names: &[HeaderName], index: usize) -> Option<&'r HeaderValue> {
        let look_up = || self.headers.get(&names[index]);
        match self.values.get(index) {
            Some(seen) => remembered(seen, look_up),
            None => look_up(),
        }
    }

    /// The host (and port, if given) the request is addressed to.
    fn host(&self) -> Option<HostPort<'r>> {
        remembered(&self.host, || match self.uri.authority() {
            Some(a) => Some((a.host(), a.port_u16())),
            None => split_authority(self.headers.get(HOST)?.to_str().ok()?),
        })
    }
}

/// What `seen` remembers, or else `look_up`'s answer, remembered.
fn remembered<T: Copy>(seen: &Cell<Option<T>>, look_up: impl FnOnce() -> T) -> T {
    seen.get().unwrap_or_else(|| {
        let found = look_up();
        seen.set(Some(found));
        found
    })
}

// === the model of a request ===

/// The (still encoded) model name in a V2 or V1 inference path, if it is one.
fn path_model(path: &str) -> Option<&str> {
    let name = if let Some(rest) = path.strip_prefix("/v2/models/") {
        rest.split('/').next()
    } else if let Some(rest) = path.strip_prefix("/v1/models/") {
        rest.split(['/', ':']).next()
    } else {
        None
    }?;
    (!name.is_empty()).then_some(name)
}

/// A path segment percent-decoded: borrowed when it has no `%`, `None` when an escape is
/// malformed or the result is not UTF-8.
fn decode(segment: &str) -> Option<Cow<'_, str>> {
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    let mut bytes = Vec::with_capacity(segment.len());
    let mut rest = segment.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    while let Some((&b, tail)) = rest.split_first() {
        if let (b'%', [hi, lo, ..]) = (b, tail) {
            bytes.push((hex(*hi)? << 4 | hex(*lo)?) as u8);
            rest = &tail[2..];
        } else if b == b'%' {
            return None;
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok().map(Cow::Owned)
}

/// The top-level `"model"` string of a JSON object body; borrowed from `body` unless it
/// holds escapes. Anything else (not JSON, not an object, no `"model"`, a `"model"`
/// that is not a string, or given twice) is `None`.
fn body_model(body: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Openai<'a> {
        #[serde(borrow)]
        model: Cow<'a, str>,
    }
    serde_json::from_slice::<Openai<'_>>(body)
        .ok()
        .map(|o| o.model)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A route's conditions, the short way: `("header", "x-tenant: acme")` and the like.
    fn rule(conditions: &[(&str, &str)]) -> Option<MatchRule> {
        let mut rule = MatchRule::default();
        for (condition, given) in conditions {
            let given = given.to_string();
            match *condition {
                "model" => rule.model = Some(given),
                "path_prefix" => rule.path_prefix = Some(given),
                "host" => rule.host = Some(given),
                "header" => {
                    let (name, value) = given.split_once(": ").expect("NAME: VALUE");
                    rule.header.push((name.into(), value.into()));
                }
                _ => panic!("no condition {condition}"),
            }
        }
        Some(rule)
    }

    /// Routes in order, as (name, conditions).
    type Table<'a> = Vec<(&'a str, Option<MatchRule>)>;

    fn routes(routes: &[(&str, Option<MatchRule>)]) -> Vec<(String, Option<MatchRule>)> {
        let owned = routes.iter().map(|(n, r)| (n.to_string(), r.clone()));
        owned.collect()
    }

    fn matcher(table: &[(&str, Option<MatchRule>)]) -> Matcher {
        Matcher::new(routes(table)).expect("valid routes")
    }

    /// A request head written on one line: `POST /fraud/score | x-tenant: acme`.
    fn head(request: &str) -> (Method, Uri, HeaderMap) {
        let mut parts = request.split(" | ");
        let line = parts.next().unwrap_or_default();
        let (method, target) = line.split_once(' ').expect("METHOD TARGET");
        let mut headers = HeaderMap::new();
        for header in parts {
            let (name, value) = header.split_once(": ").expect("NAME: VALUE");
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        (method.parse().unwrap(), target.parse().unwrap(), headers)
    }

    /// A decision as a table writes it: the route's name, `NEEDS BODY` or `NO ROUTE`.
    fn shown(matcher: &Matcher, pick: Pick) -> &str {
        match pick {
            Pick::Route(i) => matcher.name(i),
            Pick::NeedsBody => "NEEDS BODY",
            Pick::NoRoute => "NO ROUTE",
        }
    }

    /// Fails naming every case of a table that went wrong, if any did.
    fn report(wrong: Vec<String>, cases: usize) {
        let (n, wrong) = (wrong.len(), wrong.join("\n"));
        assert!(n == 0, "{n} of {cases} cases:\n{wrong}");
    }

    /// Decides every (case, request head, expected decision) from the head; a case
    /// decided from its head is decided the same with a body at hand.
    fn check(matcher: &Matcher, cases: &[(&str, &str, &str)]) {
        let wrong = cases.iter().filter_map(|(case, request, want)| {
            let (method, uri, headers) = head(request);
            let pick = matcher.pick(&method, &uri, &headers);
            let got = shown(matcher, pick);
            if got != *want {
                return Some(format!(
                    "{case}: `{request}` went to {got}, expected {want}"
                ));
            }
            let with_body = matcher.pick_with_body(&method, &uri, &headers, b"{}");
            let with_body = shown(matcher, with_body);
            (pick != Pick::NeedsBody && with_body != got)
                .then(|| format!("{case}: with a body went to {with_body}"))
        });
        report(wrong.collect(), cases.len());
    }

    /// Decides every (case, body, expected decision) for `request` with that body.
    fn check_bodies(matcher: &Matcher, request: &str, cases: &[(&str, &str, &str)]) {
        let (method, uri, headers) = head(request);
        let wrong = cases.iter().filter_map(|(case, body, want)| {
            let pick = matcher.pick_with_body(&method, &uri, &headers, body.as_bytes());
            let got = shown(matcher, pick);
            (got != *want).then(|| format!("{case}: {body} went to {got}, expected {want}"))
        });
        report(wrong.collect(), cases.len());
    }

    fn models() -> Matcher {
        matcher(&[
            ("iris", rule(&[("model", "iris")])),
            ("llama", rule(&[("model", "llama-3-8b")])),
            ("hf", rule(&[("model", "meta-llama/Llama-3")])),
            ("spaced", rule(&[("model", "my model")])),
            ("quoted", rule(&[("model", "a\"b")])),
        ])
    }

    #[test]
    fn v2_paths_name_their_model() {
        #[rustfmt::skip]
        let cases = [
            ("infer", "POST /v2/models/iris/infer", "iris"),
            ("versioned infer", "POST /v2/models/iris/versions/2/infer", "iris"),
            ("ready", "GET /v2/models/iris/ready", "iris"),
            ("versioned ready", "GET /v2/models/iris/versions/2/ready", "iris"),
            ("metadata", "GET /v2/models/iris", "iris"),
            ("trailing slash", "GET /v2/models/iris/", "iris"),
            ("query string", "POST /v2/models/iris/infer?trace=1", "iris"),
            ("absolute form", "POST http://models.example/v2/models/iris/infer", "iris"),
            ("other model", "POST /v2/models/setosa/infer", "NO ROUTE"),
            ("the name's prefix", "POST /v2/models/ir/infer", "NO ROUTE"),
            ("the name extended", "POST /v2/models/iris2/infer", "NO ROUTE"),
            ("other case", "POST /v2/models/IRIS/infer", "NO ROUTE"),
            ("empty name", "POST /v2/models//infer", "NO ROUTE"),
            ("model list", "GET /v2/models", "NO ROUTE"),
            ("model list, slash", "GET /v2/models/", "NO ROUTE"),
            ("server ready", "GET /v2/health/ready", "NO ROUTE"),
            ("mounted elsewhere", "POST /api/v2/models/iris/infer", "NO ROUTE"),
            ("v3 is no version", "POST /v3/models/iris/infer", "NO ROUTE"),
        ];
        check(&models(), &cases);
    }

    #[test]
    fn v1_paths_name_their_model() {
        #[rustfmt::skip]
        let cases = [
            ("predict", "POST /v1/models/iris:predict", "iris"),
            ("classify", "POST /v1/models/iris:classify", "iris"),
            ("versioned predict", "POST /v1/models/iris/versions/3:predict", "iris"),
            ("labelled predict", "POST /v1/models/iris/labels/stable:predict", "iris"),
            ("status", "GET /v1/models/iris", "iris"),
            ("versioned status", "GET /v1/models/iris/versions/3", "iris"),
            ("metadata", "GET /v1/models/iris/metadata", "iris"),
            ("versioned metadata", "GET /v1/models/iris/versions/3/metadata", "iris"),
            ("trailing slash", "GET /v1/models/iris/", "iris"),
            ("query string", "POST /v1/models/iris:predict?x=1", "iris"),
            ("other model", "POST /v1/models/setosa:predict", "NO ROUTE"),
            ("empty name", "POST /v1/models/:predict", "NO ROUTE"),
            ("model list", "GET /v1/models", "NO ROUTE"),
            ("the name extended", "POST /v1/models/iris2:predict", "NO ROUTE"),
        ];
        check(&models(), &cases);
    }

    #[test]
    fn path_names_are_percent_decoded_after_the_split() {
        #[rustfmt::skip]
        let cases = [
            ("encoded letter", "POST /v2/models/ir%69s/infer", "iris"),
            ("encoded space", "POST /v2/models/my%20model/infer", "spaced"),
            ("encoded slash", "POST /v2/models/meta-llama%2FLlama-3/infer", "hf"),
            ("lowercase escape", "POST /v2/models/meta-llama%2fLlama-3/infer", "hf"),
            ("encoded quote", "POST /v2/models/a%22b/infer", "quoted"),
            ("v1 encoded", "POST /v1/models/ir%69s:predict", "iris"),
            ("raw slash splits", "POST /v2/models/meta-llama/Llama-3/infer", "NO ROUTE"),
            ("escape cut short", "POST /v2/models/iris%6/infer", "NO ROUTE"),
            ("escape at the end", "POST /v2/models/iris%/infer", "NO ROUTE"),
            ("escape not hex", "POST /v2/models/iris%zz/infer", "NO ROUTE"),
            ("decodes to no UTF-8", "POST /v2/models/%ff/infer", "NO ROUTE"),
        ];
        check(&models(), &cases);
    }

    #[test]
    fn escapes_are_two_hex_digits() {
        #[rustfmt::skip]
        let cases = [
            ("plain", "iris", Some("iris")),
            ("upper and lower case", "%4a%4A", Some("JJ")),
            ("two bytes of UTF-8", "%C3%A9t%C3%A9", Some("été")),
            ("an escaped %", "%2541", Some("%41")),
            ("a sign", "a%+f", None),
            ("one digit", "a%f", None),
            ("a lone %", "%", None),
            ("not hex", "%g0", None),
            ("half a character", "%C3", None),
        ];
        for (case, segment, want) in cases {
            assert_eq!(decode(segment).as_deref(), want, "{case}");
        }
    }

    #[test]
    fn openai_requests_need_their_body_and_nothing_else_does() {
        #[rustfmt::skip]
        let cases = [
            ("chat completions", "POST /v1/chat/completions", "NEEDS BODY"),
            ("completions", "POST /v1/completions", "NEEDS BODY"),
            ("embeddings", "POST /v1/embeddings", "NEEDS BODY"),
            ("query string", "POST /v1/chat/completions?stream=true", "NEEDS BODY"),
            ("GET", "GET /v1/chat/completions", "NO ROUTE"),
            ("PUT", "PUT /v1/completions", "NO ROUTE"),
            ("trailing slash", "POST /v1/chat/completions/", "NO ROUTE"),
            ("below", "POST /v1/chat/completions/x", "NO ROUTE"),
            ("other OpenAI path", "POST /v1/responses", "NO ROUTE"),
            ("mounted elsewhere", "POST /openai/v1/chat/completions", "NO ROUTE"),
        ];
        check(&models(), &cases);
    }

    #[test]
    fn openai_bodies_name_their_model_at_the_top_level_only() {
        #[rustfmt::skip]
        let cases = [
            ("model first", r#"{"model": "llama-3-8b", "messages": []}"#, "llama"),
            ("model last", r#"{"messages": [{"content": "hi"}], "model": "llama-3-8b"}"#, "llama"),
            ("white space", " \n{ \"model\" :\t\"llama-3-8b\" } \n", "llama"),
            ("slash in name", r#"{"model": "meta-llama/Llama-3"}"#, "hf"),
            ("escaped slash", r#"{"model": "meta-llama\/Llama-3"}"#, "hf"),
            ("escaped quote", r#"{"model": "a\"b"}"#, "quoted"),
            ("unicode escape", r#"{"model": "llama-3-8\u0062"}"#, "llama"),
            ("escaped key", r#"{"mod\u0065l": "llama-3-8b"}"#, "llama"),
            ("nested model before", r#"{"x": {"model": "iris"}, "model": "llama-3-8b"}"#, "llama"),
            ("model in a string", r#"{"p": "\"model\": \"iris\"", "model": "llama-3-8b"}"#, "llama"),
            ("other model", r#"{"model": "gpt-4"}"#, "NO ROUTE"),
            ("model in other case", r#"{"model": "LLAMA-3-8B"}"#, "NO ROUTE"),
            ("no model", r#"{"messages": []}"#, "NO ROUTE"),
            ("model only nested", r#"{"messages": [{"model": "llama-3-8b"}]}"#, "NO ROUTE"),
            ("model only in an object", r#"{"options": {"model": "llama-3-8b"}}"#, "NO ROUTE"),
            ("model a number", r#"{"model": 3}"#, "NO ROUTE"),
            ("model null", r#"{"model": null}"#, "NO ROUTE"),
            ("model an array", r#"{"model": ["llama-3-8b"]}"#, "NO ROUTE"),
            ("model an object", r#"{"model": {"name": "llama-3-8b"}}"#, "NO ROUTE"),
            ("model empty", r#"{"model": ""}"#, "NO ROUTE"),
            ("model twice", r#"{"model": "llama-3-8b", "model": "iris"}"#, "NO ROUTE"),
            ("top level an array", r#"[{"model": "llama-3-8b"}]"#, "NO ROUTE"),
            ("top level a string", r#""llama-3-8b""#, "NO ROUTE"),
            ("empty body", "", "NO ROUTE"),
            ("cut short", r#"{"model": "llama-3-8b""#, "NO ROUTE"),
            ("cut in the name", r#"{"model": "llama-3"#, "NO ROUTE"),
            ("trailing garbage", r#"{"model": "llama-3-8b"} x"#, "NO ROUTE"),
            ("trailing comma", r#"{"model": "llama-3-8b",}"#, "NO ROUTE"),
            ("bad escape", r#"{"model": "llama\q"}"#, "NO ROUTE"),
            ("lone surrogate", r#"{"model": "\ud800"}"#, "NO ROUTE"),
            ("not JSON", "model=llama-3-8b", "NO ROUTE"),
        ];
        let m = models();
        check_bodies(&m, "POST /v1/chat/completions", &cases);
        let embeddings = [(
            "input first",
            r#"{"input": "hi", "model": "llama-3-8b"}"#,
            "llama",
        )];
        check_bodies(&m, "POST /v1/embeddings", &embeddings);
        let v2 = [(
            "a V2 path, not its body",
            r#"{"model": "llama-3-8b"}"#,
            "iris",
        )];
        check_bodies(&m, "POST /v2/models/iris/infer", &v2);
    }

    #[test]
    fn an_openai_model_that_is_not_utf8_names_no_model() {
        let m = models();
        let (method, uri, headers) = head("POST /v1/completions");
        let body = b"{\"model\": \"llama-3-8b\xff\"}";
        assert_eq!(
            m.pick_with_body(&method, &uri, &headers, body),
            Pick::NoRoute
        );
        // Strings the model does not depend on are skipped unchecked: the backend, which
        // reads the whole body, is the one to refuse it.
        let elsewhere = b"{\"x\": \"\xc3\", \"model\": \"llama-3-8b\"}";
        let pick = m.pick_with_body(&method, &uri, &headers, elsewhere);
        assert_eq!(pick, Pick::Route(1));
    }

    #[test]
    fn a_huge_openai_body_is_read_to_its_model() {
        let mut body = String::from(r#"{"input": ["#);
        for i in 0..1_000_000 {
            body.push_str(&format!("{}.5, ", i % 1000));
        }
        body.push_str(r#"0], "nested": {"model": "iris"}, "model": "llama-3-8b"}"#);
        assert!(body.len() > 6_000_000);
        let (method, uri, headers) = head("POST /v1/embeddings");
        let pick = models().pick_with_body(&method, &uri, &headers, body.as_bytes());
        assert_eq!(pick, Pick::Route(1));
    }

    #[test]
    fn a_deeply_nested_openai_body_never_overflows() {
        let depth = 100_000;
        let (open, close) = ("[".repeat(depth), "]".repeat(depth));
        let body = format!(r#"{{"x": {open}{close}, "model": "llama-3-8b"}}"#);
        let (method, uri, headers) = head("POST /v1/completions");
        let pick = models().pick_with_body(&method, &uri, &headers, body.as_bytes());
        // Values other than the model are skipped in a loop, not by recursion: any depth
        // costs no stack, and the top-level model is still found.
        assert_eq!(pick, Pick::Route(1));
    }

    fn conditions() -> Matcher {
        matcher(&[
            (
                "fraud-acme",
                rule(&[("path_prefix", "/fraud/"), ("header", "x-tenant: acme")]),
            ),
            ("fraud", rule(&[("path_prefix", "/fraud")])),
            ("globex", rule(&[("header", "X-Tenant: globex")])),
            ("both", rule(&[("header", "x-a: 1"), ("header", "x-b: 2")])),
            ("models-host", rule(&[("host", "Models.Example.com")])),
            ("api-8443", rule(&[("host", "api.example.com:8443")])),
            ("v6", rule(&[("host", "[::1]:9000")])),
            (
                "initech",
                rule(&[
                    ("host", "tenants.example.com"),
                    ("path_prefix", "/t"),
                    ("header", "x-tenant: initech"),
                ]),
            ),
        ])
    }

    #[test]
    fn path_prefixes_match_whole_segments() {
        #[rustfmt::skip]
        let cases = [
            ("below the prefix", "POST /fraud/score", "fraud"),
            ("the prefix itself", "POST /fraud", "fraud"),
            ("the prefix with its slash", "POST /fraud/", "fraud"),
            ("deep below", "POST /fraud/a/b/c", "fraud"),
            ("query string", "POST /fraud?x=/y", "fraud"),
            ("absolute form", "POST http://h.example/fraud/score", "fraud"),
            ("longer segment", "POST /fraudulent", "NO ROUTE"),
            ("other case", "POST /Fraud/score", "NO ROUTE"),
            ("encoded", "POST /fr%61ud/score", "NO ROUTE"),
            ("not at the start", "POST /x/fraud/score", "NO ROUTE"),
            ("root", "GET /", "NO ROUTE"),
        ];
        check(&conditions(), &cases);
        let root = matcher(&[("root", rule(&[("path_prefix", "/")])), ("rest", None)]);
        #[rustfmt::skip]
        let cases = [
            ("`/` takes every path", "GET /anything/at/all", "root"),
            ("`/` takes the root", "GET /", "root"),
            ("`/` does not take `*`", "OPTIONS *", "rest"),
        ];
        check(&root, &cases);
    }

    #[test]
    fn headers_match_exact_values_under_any_case_of_name() {
        #[rustfmt::skip]
        let cases = [
            ("prefix and header", "POST /fraud/score | x-tenant: acme", "fraud-acme"),
            ("header name in capitals", "POST /fraud/score | X-TENANT: acme", "fraud-acme"),
            ("header, other value", "POST /fraud/score | x-tenant: initech", "fraud"),
            ("header value in capitals", "POST /fraud/score | x-tenant: ACME", "fraud"),
            ("header value extended", "POST /fraud/score | x-tenant: acme, globex", "fraud"),
            ("header without prefix", "POST /other | x-tenant: acme", "NO ROUTE"),
            ("name given in capitals", "GET / | x-tenant: globex", "globex"),
            ("the first value counts", "GET / | x-tenant: globex | x-tenant: acme", "globex"),
            ("a later value does not", "GET / | x-tenant: acme | x-tenant: globex", "NO ROUTE"),
            ("empty value", "GET / | x-tenant: ", "NO ROUTE"),
            ("both headers", "GET / | x-a: 1 | x-b: 2", "both"),
            ("one of two headers", "GET / | x-a: 1", "NO ROUTE"),
            ("two headers, one wrong", "GET / | x-a: 1 | x-b: 3", "NO ROUTE"),
        ];
        check(&conditions(), &cases);
    }

    #[test]
    fn hosts_match_without_case_and_ports_when_given() {
        #[rustfmt::skip]
        let cases = [
            ("host header", "GET / | host: models.example.com", "models-host"),
            ("host in capitals", "GET / | host: MODELS.EXAMPLE.COM", "models-host"),
            ("any port", "GET / | host: models.example.com:8080", "models-host"),
            ("empty port", "GET / | host: models.example.com:", "models-host"),
            ("uri authority", "GET http://models.example.com/x", "models-host"),
            ("uri over Host", "GET http://a.example.com/ | host: models.example.com", "NO ROUTE"),
            ("other host", "GET / | host: other.example.com", "NO ROUTE"),
            ("a subdomain", "GET / | host: eu.models.example.com", "NO ROUTE"),
            ("the host's prefix", "GET / | host: models.example", "NO ROUTE"),
            ("no host", "GET /", "NO ROUTE"),
            ("port not a number", "GET / | host: models.example.com:http", "NO ROUTE"),
            ("the given port", "GET / | host: api.example.com:8443", "api-8443"),
            ("the given port, uri", "GET https://api.example.com:8443/x", "api-8443"),
            ("no port", "GET / | host: api.example.com", "NO ROUTE"),
            ("other port", "GET / | host: api.example.com:443", "NO ROUTE"),
            ("ipv6 with port", "GET / | host: [::1]:9000", "v6"),
            ("ipv6 uri", "GET http://[::1]:9000/x", "v6"),
            ("ipv6 other port", "GET / | host: [::1]:9001", "NO ROUTE"),
            ("ipv6 without port", "GET / | host: [::1]", "NO ROUTE"),
            ("all three", "GET /t/x | host: tenants.example.com | x-tenant: initech", "initech"),
            ("three, path wrong", "GET /u | host: tenants.example.com | x-tenant: initech", "NO ROUTE"),
            ("three, host wrong", "GET /t/x | host: example.com | x-tenant: initech", "NO ROUTE"),
        ];
        check(&conditions(), &cases);
    }

    #[test]
    fn the_first_route_that_matches_wins() {
        let m = matcher(&[
            ("v2-prefix", rule(&[("path_prefix", "/v2")])),
            (
                "iris-acme",
                rule(&[("model", "iris"), ("header", "x-tenant: acme")]),
            ),
            ("iris", rule(&[("model", "iris")])),
            (
                "iris-never",
                rule(&[("model", "iris"), ("host", "example.com")]),
            ),
            ("acme", rule(&[("header", "x-tenant: acme")])),
            ("rest", None),
        ]);
        #[rustfmt::skip]
        let cases = [
            ("earlier prefix, later model", "POST /v2/models/iris/infer | x-tenant: acme", "v2-prefix"),
            ("model with header", "POST /v1/models/iris:predict | x-tenant: acme", "iris-acme"),
            ("model without header", "POST /v1/models/iris:predict", "iris"),
            ("not a later route", "POST /v1/models/iris:predict | host: example.com", "iris"),
            ("other model, header", "POST /v1/models/setosa:predict | x-tenant: acme", "acme"),
            ("header only", "GET /x | x-tenant: acme", "acme"),
            ("catch-all", "GET /x", "rest"),
            ("catch-all takes `*`", "OPTIONS *", "rest"),
            ("catch-all, other model", "POST /v1/models/setosa:predict", "rest"),
        ];
        check(&m, &cases);
    }

    #[test]
    fn the_body_is_needed_only_when_a_model_route_may_take_the_request() {
        let m = matcher(&[
            ("canary", rule(&[("header", "x-canary: 1")])),
            (
                "llama-acme",
                rule(&[("model", "llama-3-8b"), ("header", "x-tenant: acme")]),
            ),
            ("v1", rule(&[("path_prefix", "/v1/completions")])),
            ("llama", rule(&[("model", "llama-3-8b")])),
            ("rest", None),
        ]);
        #[rustfmt::skip]
        let cases = [
            ("an earlier route takes it", "POST /v1/chat/completions | x-canary: 1", "canary"),
            ("a model route may", "POST /v1/chat/completions | x-tenant: acme", "NEEDS BODY"),
            ("an earlier prefix takes it", "POST /v1/completions", "v1"),
            ("a later model route may", "POST /v1/embeddings", "NEEDS BODY"),
        ];
        check(&m, &cases);
        #[rustfmt::skip]
        let bodies = [
            ("the model's route", r#"{"model": "llama-3-8b"}"#, "llama"),
            ("another model", r#"{"model": "gpt-4"}"#, "rest"),
            ("no model", "{}", "rest"),
        ];
        check_bodies(&m, "POST /v1/embeddings", &bodies);
        let only_head = matcher(&[("v1", rule(&[("path_prefix", "/v1")])), ("rest", None)]);
        #[rustfmt::skip]
        let cases = [
            ("no model routes, chat", "POST /v1/chat/completions", "v1"),
            ("no model routes, V2 path", "POST /v2/models/iris/infer", "rest"),
        ];
        check(&only_head, &cases);
    }

    #[test]
    fn a_lone_catch_all_takes_everything() {
        let m = matcher(&[("default", None)]);
        #[rustfmt::skip]
        let cases = [
            ("a path", "GET /x", "default"),
            ("a model", "POST /v2/models/iris/infer", "default"),
            ("an OpenAI request", "POST /v1/chat/completions", "default"),
            ("`*`", "OPTIONS *", "default"),
        ];
        check(&m, &cases);
        assert_eq!((m.len(), m.is_empty(), m.name(0)), (1, false, "default"));
    }

    #[test]
    fn more_header_names_than_remembered_are_looked_up_each_time() {
        let table: Vec<(String, Option<MatchRule>)> = (0..REMEMBERED + 4)
            .map(|i| {
                (
                    format!("r{i}"),
                    rule(&[("header", &format!("x-h{i}: {i}"))]),
                )
            })
            .collect();
        let m = Matcher::new(table).unwrap();
        for i in 0..REMEMBERED + 4 {
            let (method, uri, headers) = head(&format!("GET / | x-h{i}: {i}"));
            assert_eq!(
                m.pick(&method, &uri, &headers),
                Pick::Route(i),
                "header x-h{i}"
            );
        }
    }

    #[test]
    fn a_matcher_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Matcher>();
    }

    /// The decision made the slow way, without the index: every route in order, its
    /// model compared directly.
    fn in_order(m: &Matcher, model: &Model<'_>, facts: &Facts<'_>) -> Pick {
        for (i, route) in m.routes.iter().enumerate() {
            if !route.holds(&m.header_names, facts) {
                continue;
            }
            match (route.model.as_deref(), model) {
                (None, _) => return Pick::Route(i),
                (Some(_), Model::InBody) => return Pick::NeedsBody,
                (Some(want), Model::Named(name)) if want == name => return Pick::Route(i),
                _ => {}
            }
        }
        Pick::NoRoute
    }

    /// One of `from`, at random.
    fn any<T: Copy>(rng: &mut StdRng, from: &[T]) -> T {
        from[rng.random_range(0..from.len())]
    }

    /// A random route table over a small vocabulary, so that requests often match.
    fn random_table(rng: &mut StdRng) -> Vec<(String, Option<MatchRule>)> {
        let n = rng.random_range(1..12);
        let mut table = Vec::with_capacity(n);
        for i in 0..n {
            let mut rule = MatchRule::default();
            if rng.random_bool(0.4) {
                rule.model = Some(any(rng, &["iris", "fraud", "llama"]).into());
            }
            if rng.random_bool(0.4) {
                let prefixes = ["/", "/a", "/a/b/", "/b", "/v2", "/v1/chat"];
                rule.path_prefix = Some(any(rng, &prefixes).into());
            }
            for name in ["x-t", "X-U"] {
                if rng.random_bool(0.3) {
                    rule.header
                        .push((name.into(), any(rng, &["1", "2"]).into()));
                }
            }
            if rng.random_bool(0.2) {
                rule.host = Some(any(rng, &["h1", "h2:80"]).into());
            }
            let catch_all = i == n - 1 && rng.random_bool(0.5);
            if rule == MatchRule::default() && !catch_all {
                rule.path_prefix = Some("/a".into());
            }
            table.push((format!("r{i}"), (!catch_all).then_some(rule)));
        }
        table
    }

    /// A random request head over the same vocabulary as [`random_table`].
    fn random_request(rng: &mut StdRng) -> String {
        let targets = [
            "POST /v2/models/iris/infer",
            "GET /v2/models/llama",
            "POST /v1/models/fraud:predict",
            "POST /v1/chat/completions",
            "POST /v1/embeddings",
            "POST /a/b/c",
            "GET /a",
            "GET /b/x",
            "GET /",
        ];
        let mut request = any(rng, &targets).to_string();
        for (name, values) in [
            ("x-t", ["1", "2"]),
            ("x-u", ["1", "2"]),
            ("host", ["h1", "h2:80"]),
        ] {
            if rng.random_bool(0.6) {
                request.push_str(&format!(" | {name}: {}", any(rng, &values)));
            }
        }
        request
    }

    #[test]
    fn the_index_decides_as_trying_every_route_in_order_would() {
        let bodies = [r#"{"model": "iris"}"#, r#"{"model": "llama"}"#, "{}"];
        let mut rng = StdRng::seed_from_u64(2024);
        for round in 0..2_000 {
            let table = random_table(&mut rng);
            let m = Matcher::new(table.clone()).expect("valid random table");
            for _ in 0..20 {
                let (request, body) = (random_request(&mut rng), any(&mut rng, &bodies));
                let (method, uri, headers) = head(&request);
                let facts = Facts::new(&uri, &headers);
                let model = m.model(&method, &uri);
                let by_body = match m.model(&method, &uri) {
                    Model::InBody => {
                        body_model(body.as_bytes()).map_or(Model::Unnamed, Model::Named)
                    }
                    model => model,
                };
                let want = (in_order(&m, &model, &facts), in_order(&m, &by_body, &facts));
                let got = (
                    m.pick(&method, &uri, &headers),
                    m.pick_with_body(&method, &uri, &headers, body.as_bytes()),
                );
                assert_eq!(got, want, "round {round}: {request} {body}\n{table:#?}");
            }
        }
    }

    #[test]
    fn bad_routes_are_refused_by_name() {
        #[rustfmt::skip]
        let cases: &[(&str, Table<'_>, &str)] = &[
            ("no routes", vec![], "no routes"),
            ("catch-all first", vec![("all", None), ("b", rule(&[("model", "iris")]))], "route `all` has no `match`"),
            ("two catch-alls", vec![("a", None), ("b", None)], "route `a` has no `match`"),
            ("empty match", vec![("e", Some(MatchRule::default()))], "route `e`: `match` gives no condition"),
            ("empty model", vec![("m", rule(&[("model", "")]))], "route `m`: `model` is empty"),
            ("relative prefix", vec![("p", rule(&[("path_prefix", "fraud/")]))], "does not start with `/`"),
            ("prefix with query", vec![("p", rule(&[("path_prefix", "/a?b")]))], "holds a `?`"),
            ("prefix with space", vec![("p", rule(&[("path_prefix", "/a b")]))], "white space"),
            ("bad header name", vec![("h", rule(&[("header", "x tenant: a")]))], "not a header name"),
            ("header value, newline", vec![("h", rule(&[("header", "x-t: a\nb")]))], "not a header value"),
            ("header value padded", vec![("h", rule(&[("header", "x-t:  a")]))], "not a header value"),
            ("header twice", vec![("h", rule(&[("header", "x-t: a"), ("header", "X-T: b")]))], "x-t is given twice"),
            ("host with path", vec![("h", rule(&[("host", "example.com/x")]))], "`host` \"example.com/x\""),
            ("host with user", vec![("h", rule(&[("host", "u@example.com")]))], "is not a host"),
            ("host wildcard", vec![("h", rule(&[("host", "*.example.com")]))], "is not a host"),
            ("host empty", vec![("h", rule(&[("host", "")]))], "is not a host"),
            ("host bad port", vec![("h", rule(&[("host", "example.com:99999")]))], "is not a host"),
            ("host with scheme", vec![("h", rule(&[("host", "http://example.com")]))], "is not a host"),
        ];
        let wrong =
            cases
                .iter()
                .filter_map(|(case, table, want)| match Matcher::new(routes(table)) {
                    Ok(_) => Some(format!("{case}: accepted")),
                    Err(e) if !e.contains(want) => {
                        Some(format!("{case}: {e:?} does not say {want:?}"))
                    }
                    Err(_) => None,
                });
        report(wrong.collect(), cases.len());
    }

    #[test]
    fn good_routes_are_accepted() {
        #[rustfmt::skip]
        let cases: &[(&str, Table<'_>)] = &[
            ("a catch-all last", vec![("iris", rule(&[("model", "iris")])), ("rest", None)]),
            ("root prefix", vec![("root", rule(&[("path_prefix", "/")]))]),
            ("one model, two routes", vec![("a", rule(&[("model", "iris"), ("header", "x-t: a")])), ("b", rule(&[("model", "iris")]))]),
            ("one header, two routes", vec![("a", rule(&[("header", "x-t: a")])), ("b", rule(&[("header", "X-T: b")]))]),
            ("host with port", vec![("h", rule(&[("host", "example.com:8080")]))]),
            ("ipv6 host", vec![("h", rule(&[("host", "[::1]")]))]),
            ("model with slash and space", vec![("m", rule(&[("model", "org/my model")]))]),
        ];
        let wrong = cases.iter().filter_map(|(case, table)| {
            Matcher::new(routes(table))
                .err()
                .map(|e| format!("{case}: {e}"))
        });
        report(wrong.collect(), cases.len());
    }
}
