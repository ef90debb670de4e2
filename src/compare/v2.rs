//! Comparison of Open Inference Protocol (KServe V2 / MLServer / Triton) responses.
//!
//! Only `outputs` are compared; they are matched by `name`. For each pair the
//! `datatype`, `shape`, `parameters` (structurally) and `data` (element-wise,
//! flattened row-major) are compared. Paths in differences name outputs by
//! name: `/outputs/predict/data/3`.

use super::json;
use super::outcome::OutputReport;
use super::report::{Ctx, Shown};
use super::tensor::{self, Mode, Stats};
use crate::wire::pointer::Seg;
use crate::wire::tensor::{flatten, Leaves};
use crate::wire::v2::{kind, Kind, Output};
use serde_json::Value;

/// Compares the outputs of two V2 responses and reports on each.
pub(crate) fn compare<'a>(
    ctx: &mut Ctx<'_, 'a>,
    lo: &[Output<'a>],
    so: &[Output<'a>],
) -> Vec<OutputReport> {
    let mut reports = Vec::with_capacity(lo.len().max(so.len()));
    let Some(check) = ctx.enter(Seg::Key("outputs"), ctx.has_ignores()) else {
        return reports;
    };

    // Shadow outputs by name (stable sort keeps duplicates in document order).
    let mut by_name: Vec<(&str, usize)> = so.iter().enumerate().map(|(i, o)| (o.name, i)).collect();
    by_name.sort_by(|a, b| a.0.cmp(b.0));
    let mut used = vec![false; so.len()];

    for (li, l) in lo.iter().enumerate() {
        let name = l.name;
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
            Some(i) => compare_output(ctx, l, &so[i], sub),
            None => one_sided(ctx, l, true),
        };
        reports.push(report);
        ctx.leave();
    }
    for (si, s) in so.iter().enumerate() {
        if used[si] {
            continue;
        }
        let seg = Seg::Named {
            name: s.name,
            live: None,
            shadow: Some(si),
        };
        if ctx.enter(seg, check).is_some() {
            reports.push(one_sided(ctx, s, false));
            ctx.leave();
        }
    }
    ctx.leave();
    reports
}

/// Reports an output present on one side only (`live_side`: it is the live one).
fn one_sided(ctx: &mut Ctx<'_, '_>, out: &Output<'_>, live_side: bool) -> OutputReport {
    let elements = out.data.map_or(0, |d| flatten(d).leaves.len());
    let whole = out.whole();
    if live_side {
        ctx.record("missing in shadow", Shown::Val(&whole), Shown::Absent);
    } else {
        ctx.record("extra in shadow", Shown::Absent, Shown::Val(&whole));
    }
    OutputReport {
        elements,
        mismatched: elements,
        ..empty_report(out.name)
    }
}

/// Reads a declared shape (non-negative integers).
fn shape(out: &Output<'_>) -> Option<Vec<usize>> {
    out.shape?
        .as_array()?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect()
}

/// Compares one output present on both sides: its `datatype`, `shape` and `parameters`,
/// then its data.
fn compare_output<'a>(
    ctx: &mut Ctx<'_, 'a>,
    l: &Output<'a>,
    s: &Output<'a>,
    check: bool,
) -> OutputReport {
    let before = ctx.total;

    if ctx.enter(Seg::Key("datatype"), check).is_some() {
        if l.datatype != s.datatype {
            ctx.record("datatype", shown(l.datatype), shown(s.datatype));
        }
        ctx.leave();
    }

    let shapes_equal = l.shape == s.shape;
    if ctx.enter(Seg::Key("shape"), check).is_some() {
        if !shapes_equal {
            ctx.record("shape", shown(l.shape), shown(s.shape));
        }
        ctx.leave();
    }

    if let Some(sub) = ctx.enter(Seg::Key("parameters"), check) {
        match (l.parameters, s.parameters) {
            (Some(a), Some(b)) => json::diff(ctx, a, b, sub),
            (a, b) => {
                one_side(ctx, a, b);
            }
        }
        ctx.leave();
    }

    let mut report = empty_report(l.name);
    if let Some(sub) = ctx.enter(Seg::Key("data"), check) {
        compare_data(ctx, l, s, sub, shapes_equal, &mut report);
        ctx.leave();
    }
    report.agree = ctx.total == before;
    report
}

/// Compares two outputs' `data` element by element (`check`: ignore rules apply inside)
/// and fills the report's counts and statistics.
fn compare_data<'a>(
    ctx: &mut Ctx<'_, 'a>,
    l: &Output<'a>,
    s: &Output<'a>,
    check: bool,
    shapes_equal: bool,
    report: &mut OutputReport,
) {
    let (Some(a), Some(b)) = (l.data, s.data) else {
        if let Some(data) = one_side(ctx, l.data, s.data) {
            report.elements = flatten(data).leaves.len();
            report.mismatched = report.elements;
        }
        return;
    };
    let dkind = kind(l.datatype.and_then(Value::as_str));
    let ta = flatten(a);
    let tb = flatten(b);
    let mask = check.then(|| tensor::ignore_mask(ctx, a, ta.leaves.len()));
    let exact = matches!(dkind, Kind::Int | Kind::Bool | Kind::Bytes);
    let mode = if l.datatype == s.datatype && exact {
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
        ta.regular && tb.regular && ta.dims == tb.dims,
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
        report,
        &stats,
        dkind,
        shape(l).as_deref(),
        shapes_equal,
        &ta.leaves,
        &tb.leaves,
    );
}

/// Records a member that only one side has (`live` or `shadow`) and returns it; `None`
/// when neither has it.
fn one_side<'v>(
    ctx: &mut Ctx<'_, '_>,
    live: Option<&'v Value>,
    shadow: Option<&'v Value>,
) -> Option<&'v Value> {
    match (live, shadow) {
        (Some(a), None) => ctx.record("missing in shadow", Shown::Val(a), Shown::Absent),
        (None, Some(b)) => ctx.record("extra in shadow", Shown::Absent, Shown::Val(b)),
        _ => return None,
    }
    live.or(shadow)
}

/// A report on output `name` with nothing counted yet (`agree` is set once it is).
fn empty_report(name: &str) -> OutputReport {
    OutputReport {
        name: name.to_owned(),
        agree: false,
        elements: 0,
        mismatched: 0,
        max_abs_diff: None,
        top1_agree: None,
        top1_agreement: None,
        label_agreement: None,
    }
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
