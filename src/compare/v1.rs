//! Comparison of TF-Serving / KServe V1 responses (`{"predictions": ...}` or columnar `{"outputs": ...}`).
//!
//! Only the `predictions` member (or, without it, `outputs`) is compared.
//! `predictions` and a tensor-valued `outputs` give one report each (named
//! `predictions` / `outputs`); an object-valued `outputs` (named columnar
//! tensors) gives one report per member.

use super::json;
use super::outcome::OutputReport;
use super::report::{Ctx, Shown};
use super::tensor::{self, Mode};
use crate::wire::pointer::Seg;
use crate::wire::tensor::flatten;
use crate::wire::v1::{entries, Entry};
use serde_json::Value;

/// Compares the predictions/outputs of two V1 responses and reports on each tensor.
pub(crate) fn compare<'a>(
    ctx: &mut Ctx<'_, 'a>,
    live: &'a Value,
    shadow: &'a Value,
) -> Vec<OutputReport> {
    let le = entries(live);
    let se = entries(shadow);
    let check = ctx.has_ignores();
    let mut reports = Vec::with_capacity(le.len().max(se.len()));
    for l in &le {
        let other = se
            .iter()
            .find(|s| s.columnar == l.columnar && s.name == l.name);
        let Some(sub) = enter(ctx, l, check) else {
            continue;
        };
        let report = match other {
            Some(s) => compare_tensor(ctx, l.name, l.value, s.value, sub),
            None => one_sided(ctx, l, true),
        };
        reports.push(report);
        leave(ctx, l);
    }
    for s in &se {
        if le
            .iter()
            .any(|l| s.columnar == l.columnar && s.name == l.name)
        {
            continue;
        }
        if enter(ctx, s, check).is_some() {
            reports.push(one_sided(ctx, s, false));
            leave(ctx, s);
        }
    }
    reports
}

/// Pushes the path of an entry (`/predictions`, `/outputs` or `/outputs/<name>`); `None` if ignored.
fn enter<'a>(ctx: &mut Ctx<'_, 'a>, e: &Entry<'a>, check: bool) -> Option<bool> {
    if e.columnar {
        let sub = ctx.enter(Seg::Key("outputs"), check)?;
        let r = ctx.enter(Seg::Key(e.name), sub);
        if r.is_none() {
            ctx.leave();
        }
        r
    } else {
        ctx.enter(Seg::Key(e.name), check)
    }
}

fn leave(ctx: &mut Ctx<'_, '_>, e: &Entry<'_>) {
    ctx.leave();
    if e.columnar {
        ctx.leave();
    }
}

fn one_sided(ctx: &mut Ctx<'_, '_>, e: &Entry<'_>, live_side: bool) -> OutputReport {
    if live_side {
        ctx.record("missing in shadow", Shown::Val(e.value), Shown::Absent);
    } else {
        ctx.record("extra in shadow", Shown::Absent, Shown::Val(e.value));
    }
    let elements = flatten(e.value).leaves.len();
    OutputReport {
        name: e.name.to_owned(),
        agree: false,
        elements,
        mismatched: elements,
        max_abs_diff: None,
        top1_agree: None,
        top1_agreement: None,
        label_agreement: None,
    }
}

fn compare_tensor<'a>(
    ctx: &mut Ctx<'_, 'a>,
    name: &str,
    a: &'a Value,
    b: &'a Value,
    check: bool,
) -> OutputReport {
    let before = ctx.total;
    let ta = flatten(a);
    let tb = flatten(b);
    let mut report = OutputReport {
        name: name.to_owned(),
        agree: true,
        elements: ta.leaves.len().max(tb.leaves.len()),
        mismatched: 0,
        max_abs_diff: None,
        top1_agree: None,
        top1_agreement: None,
        label_agreement: None,
    };

    if !ta.regular || !tb.regular || ta.has_objects || tb.has_objects {
        // Ragged lists or row objects (TF-Serving row format): structural diff, no tensor statistics.
        json::diff(ctx, a, b, check);
        report.mismatched = (ctx.total - before).min(report.elements);
        report.agree = ctx.total == before;
        return report;
    }

    let shapes_equal = ta.dims == tb.dims;
    if !shapes_equal {
        ctx.record("shape", Shown::Dims(&ta.dims), Shown::Dims(&tb.dims));
    }
    let mask = check.then(|| tensor::ignore_mask(ctx, a, ta.leaves.len()));
    let stats = tensor::compare_leaves(
        ctx,
        &ta.leaves,
        &tb.leaves,
        Mode::Tolerant,
        &ta.dims,
        shapes_equal,
        mask.as_deref(),
    );
    report.elements = stats.elements;
    report.mismatched = stats.mismatched;
    report.max_abs_diff = stats.all_numeric.then_some(stats.max_abs_diff).flatten();

    match ta.dims.as_slice() {
        &[rows, k] if k > 1 && shapes_equal && stats.all_numeric => {
            if let Some((agree, rows)) = tensor::top1(&ta.leaves, &tb.leaves, rows, k) {
                report.top1_agree = Some(agree == rows);
                report.top1_agreement = Some(agree as f64 / rows as f64);
            }
        }
        d if (d.len() <= 1 || d.last() == Some(&1)) && tensor::labelish(&ta.leaves) => {
            report.label_agreement = tensor::share(&stats);
        }
        _ => {}
    }
    report.agree = ctx.total == before;
    report
}
