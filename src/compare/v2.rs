//! Comparison of Open Inference Protocol (KServe V2 / MLServer / Triton) responses.
//!
//! Only `outputs` are compared; they are matched by `name`. For each pair the
//! `datatype`, `shape`, `parameters` (structurally) and `data` (element-wise,
//! flattened row-major) are compared. Paths in differences name outputs by
//! name: `/outputs/predict/data/3`.

use super::json;
use super::pointer::Seg;
use super::report::{Ctx, Shown};
use super::tensor::{self, Leaves, Mode, Stats};
use super::OutputReport;
use serde_json::{Map, Value};

type Obj = Map<String, Value>;

/// Tells whether `v` looks like a V2 response: an object whose `outputs` is an array of objects with a string `name` (and `data`, when `need_data`).
pub(crate) fn looks_like(v: &Value, need_data: bool) -> bool {
    let Some(Value::Array(outs)) = v.get("outputs") else {
        return false;
    };
    outs.iter().all(|o| {
        o.get("name").is_some_and(Value::is_string) && (!need_data || o.get("data").is_some())
    })
}

/// One named output: its name, the output value and the same value as an object.
type Named<'a> = (&'a str, &'a Value, &'a Obj);

/// The named outputs of a response already checked by [`looks_like`].
fn outputs(v: &Value) -> Vec<Named<'_>> {
    let Some(Value::Array(outs)) = v.get("outputs") else {
        return Vec::new();
    };
    outs.iter()
        .filter_map(|o| {
            let m = o.as_object()?;
            Some((m.get("name")?.as_str()?, o, m))
        })
        .collect()
}

/// Compares the outputs of two V2 responses and reports on each.
pub(crate) fn compare<'a>(
    ctx: &mut Ctx<'_, 'a>,
    live: &'a Value,
    shadow: &'a Value,
) -> Vec<OutputReport> {
    let lo = outputs(live);
    let so = outputs(shadow);
    let mut reports = Vec::with_capacity(lo.len().max(so.len()));
    let Some(check) = ctx.enter(Seg::Key("outputs"), ctx.has_ignores()) else {
        return reports;
    };

    // Shadow outputs by name (stable sort keeps duplicates in document order).
    let mut by_name: Vec<(&str, usize)> = so
        .iter()
        .enumerate()
        .map(|(i, (n, _, _))| (*n, i))
        .collect();
    by_name.sort_by(|a, b| a.0.cmp(b.0));
    let mut used = vec![false; so.len()];

    for (li, &(name, lval, lmap)) in lo.iter().enumerate() {
        let start = by_name.partition_point(|(n, _)| *n < name);
        let si = by_name[start..]
            .iter()
            .take_while(|(n, _)| *n == name)
            .map(|&(_, i)| i)
            .find(|&i| !used[i]);
        if let Some(i) = si {
            used[i] = true;
        }
        let seg = Seg::Named {
            name,
            live: Some(li),
            shadow: si,
        };
        let Some(sub) = ctx.enter(seg, check) else {
            continue;
        };
        let report = match si {
            Some(i) => compare_output(ctx, name, lmap, so[i].2, sub),
            None => one_sided(ctx, name, lval, lmap, true),
        };
        reports.push(report);
        ctx.leave();
    }
    for (si, &(name, sval, smap)) in so.iter().enumerate() {
        if used[si] {
            continue;
        }
        let seg = Seg::Named {
            name,
            live: None,
            shadow: Some(si),
        };
        if ctx.enter(seg, check).is_some() {
            reports.push(one_sided(ctx, name, sval, smap, false));
            ctx.leave();
        }
    }
    ctx.leave();
    reports
}

/// Reports an output present on one side only (`live_side`: it is the live one).
fn one_sided(
    ctx: &mut Ctx<'_, '_>,
    name: &str,
    whole: &Value,
    out: &Obj,
    live_side: bool,
) -> OutputReport {
    let elements = out
        .get("data")
        .map_or(0, |d| tensor::flatten(d).leaves.len());
    if live_side {
        ctx.record("missing in shadow", Shown::Val(whole), Shown::Absent);
    } else {
        ctx.record("extra in shadow", Shown::Absent, Shown::Val(whole));
    }
    OutputReport {
        name: name.to_owned(),
        agree: false,
        elements,
        mismatched: elements,
        max_abs_diff: None,
        top1_agree: None,
        top1_agreement: None,
        label_agreement: None,
    }
}

/// What a V2 datatype implies for comparison and reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    Bool,
    Bytes,
    Unknown,
}

fn kind(dt: Option<&str>) -> Kind {
    match dt {
        Some(s) if s.starts_with("FP") || s == "BF16" => Kind::Float,
        Some(s) if s.starts_with("INT") || s.starts_with("UINT") => Kind::Int,
        Some("BOOL") => Kind::Bool,
        Some("BYTES") => Kind::Bytes,
        _ => Kind::Unknown,
    }
}

/// Reads a declared shape (non-negative integers).
fn shape(out: &Obj) -> Option<Vec<usize>> {
    out.get("shape")?
        .as_array()?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect()
}

fn compare_output<'a>(
    ctx: &mut Ctx<'_, 'a>,
    name: &str,
    l: &'a Obj,
    s: &'a Obj,
    check: bool,
) -> OutputReport {
    let before = ctx.total;

    let ldt = l.get("datatype");
    let sdt = s.get("datatype");
    if ctx.enter(Seg::Key("datatype"), check).is_some() {
        if ldt != sdt {
            ctx.record("datatype", shown(ldt), shown(sdt));
        }
        ctx.leave();
    }

    let shapes_equal = l.get("shape") == s.get("shape");
    if ctx.enter(Seg::Key("shape"), check).is_some() {
        if !shapes_equal {
            ctx.record("shape", shown(l.get("shape")), shown(s.get("shape")));
        }
        ctx.leave();
    }

    if let Some(sub) = ctx.enter(Seg::Key("parameters"), check) {
        match (l.get("parameters"), s.get("parameters")) {
            (Some(a), Some(b)) => json::diff(ctx, a, b, sub),
            (Some(a), None) => ctx.record("missing in shadow", Shown::Val(a), Shown::Absent),
            (None, Some(b)) => ctx.record("extra in shadow", Shown::Absent, Shown::Val(b)),
            (None, None) => {}
        }
        ctx.leave();
    }

    let dkind = kind(ldt.and_then(Value::as_str));
    let dims = shape(l);
    let mut report = OutputReport {
        name: name.to_owned(),
        agree: true,
        elements: 0,
        mismatched: 0,
        max_abs_diff: None,
        top1_agree: None,
        top1_agreement: None,
        label_agreement: None,
    };

    if let Some(sub) = ctx.enter(Seg::Key("data"), check) {
        match (l.get("data"), s.get("data")) {
            (Some(a), Some(b)) => {
                let ta = tensor::flatten(a);
                let tb = tensor::flatten(b);
                let mask = sub.then(|| tensor::ignore_mask(ctx, a, ta.leaves.len()));
                let mode = if ldt == sdt && matches!(dkind, Kind::Int | Kind::Bool | Kind::Bytes) {
                    Mode::Exact
                } else {
                    Mode::Tolerant
                };
                let path_dims: &[usize] = if ta.regular { &ta.dims } else { &[] };
                let stats = tensor::compare_leaves(
                    ctx,
                    &ta.leaves,
                    &tb.leaves,
                    mode,
                    path_dims,
                    mask.as_deref(),
                );
                if ta.leaves.len() != tb.leaves.len() {
                    ctx.record(
                        "length",
                        Shown::Len(ta.leaves.len()),
                        Shown::Len(tb.leaves.len()),
                    );
                }
                fill(
                    &mut report,
                    &stats,
                    dkind,
                    dims.as_deref(),
                    shapes_equal,
                    &ta.leaves,
                    &tb.leaves,
                );
            }
            (Some(a), None) => {
                report.elements = tensor::flatten(a).leaves.len();
                report.mismatched = report.elements;
                ctx.record("missing in shadow", Shown::Val(a), Shown::Absent);
            }
            (None, Some(b)) => {
                report.elements = tensor::flatten(b).leaves.len();
                report.mismatched = report.elements;
                ctx.record("extra in shadow", Shown::Absent, Shown::Val(b));
            }
            (None, None) => {}
        }
        ctx.leave();
    }

    report.agree = ctx.total == before;
    report
}

/// Fills the statistics of an output report from an element-wise comparison.
fn fill(
    report: &mut OutputReport,
    stats: &Stats,
    dkind: Kind,
    dims: Option<&[usize]>,
    shapes_equal: bool,
    a: &Leaves<'_>,
    b: &Leaves<'_>,
) {
    report.elements = stats.elements;
    report.mismatched = stats.mismatched;
    if dkind != Kind::Bytes {
        report.max_abs_diff = stats.max_abs_diff;
    }
    match (dkind, dims) {
        (Kind::Float, Some(&[rows, k])) if k > 1 && shapes_equal => {
            if let Some((agree, rows)) = tensor::top1(a, b, rows, k) {
                report.top1_agree = Some(agree == rows);
                report.top1_agreement = Some(agree as f64 / rows as f64);
            }
        }
        (Kind::Bytes, _) => report.label_agreement = tensor::share(stats),
        (Kind::Int | Kind::Bool, Some(d)) if d.len() <= 1 || d.last() == Some(&1) => {
            report.label_agreement = tensor::share(stats);
        }
        _ => {}
    }
}

fn shown(v: Option<&Value>) -> Shown<'_> {
    v.map_or(Shown::Absent, Shown::Val)
}
