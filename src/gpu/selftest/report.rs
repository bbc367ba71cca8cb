//! The selftest's result: one row per compared tensor, and its table.

use std::fmt;

use super::{FLOOR, max_rel_err, rel_l2_err};
use crate::error::Error;

/// How a row's error is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Element-wise: `max_i |got_i - want_i| / (|want_i| + 0.1 * max|want|)`.
    MaxRel,
    /// Tensor-wise: `||got - want||_2 / ||want||_2`, for weights after
    /// several RMSprop steps (see `training.rs` for why not element-wise).
    RelL2,
}

impl Metric {
    /// The error of `got` against `want` (same length), and how many `got`
    /// are not finite (which makes the error infinite).
    pub fn measure(self, got: &[f64], want: &[f64]) -> (f64, usize) {
        match self {
            Metric::MaxRel => max_rel_err(got, want),
            Metric::RelL2 => rel_l2_err(got, want),
        }
    }
}

/// A tolerance: how a row's error is measured and how large it may be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// The measure.
    pub metric: Metric,
    /// The largest error that passes.
    pub value: f64,
}

impl Bound {
    /// Element-wise relative error at most `value` ([`Metric::MaxRel`]).
    pub const fn max_rel(value: f64) -> Self {
        Bound {
            metric: Metric::MaxRel,
            value,
        }
    }

    /// Relative L2 error at most `value` ([`Metric::RelL2`]).
    pub const fn rel_l2(value: f64) -> Self {
        Bound {
            metric: Metric::RelL2,
            value,
        }
    }
}

/// One compared output tensor.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SelftestRow {
    /// The kernel (or kernels) that produced the output; `GpuEngine` for
    /// the training steps.
    pub kernel: String,
    /// The output compared, e.g. `gates` or `d lstm.kernel`.
    pub output: String,
    /// The sizes it ran at.
    pub shape: String,
    /// How `rel_err` is measured.
    pub metric: Metric,
    /// Relative error against the reference, by `metric`; infinite when a
    /// value is not finite or the check could not run.
    pub rel_err: f64,
    /// What `rel_err` may reach.
    pub bound: f64,
    /// `rel_err <= bound` and every value finite.
    pub pass: bool,
    /// What the numbers do not say: values that are not finite, or the
    /// error that stopped the check.
    pub note: Option<String>,
}

impl SelftestRow {
    /// Compares `got` with the reference `want` (same length) against `bound`.
    pub fn compare(
        kernel: &str,
        output: &str,
        shape: &str,
        got: &[f64],
        want: &[f64],
        bound: Bound,
    ) -> Self {
        let (err, non_finite) = bound.metric.measure(got, want);
        SelftestRow {
            kernel: kernel.into(),
            output: output.into(),
            shape: shape.into(),
            metric: bound.metric,
            rel_err: err,
            bound: bound.value,
            pass: non_finite == 0 && err <= bound.value,
            note: (non_finite > 0).then(|| {
                format!(
                    "{non_finite} of {} values NaN or infinite (NaN: never written)",
                    got.len()
                )
            }),
        }
    }

    /// A check that could not run.
    pub(crate) fn error(kernel: &str, shape: &str, e: &Error) -> Self {
        SelftestRow {
            kernel: kernel.into(),
            output: "-".into(),
            shape: shape.into(),
            metric: Metric::MaxRel,
            rel_err: f64::INFINITY,
            bound: 0.0,
            pass: false,
            note: Some(format!("did not run: {e}")),
        }
    }
}

/// Every row of a selftest.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SelftestReport {
    /// In the order the checks ran.
    pub rows: Vec<SelftestRow>,
}

impl SelftestReport {
    /// True when every row passed (and there is at least one).
    pub fn all_passed(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.pass)
    }

    /// How many rows failed.
    pub fn failed(&self) -> usize {
        self.rows.iter().filter(|r| !r.pass).count()
    }
}

/// The table: kernel | output | shape | rel err | bound | result, a legend
/// of the metrics, then one line per note.
impl fmt::Display for SelftestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.kernel.clone(),
                    match r.metric {
                        Metric::MaxRel => r.output.clone(),
                        Metric::RelL2 => format!("{} (L2)", r.output),
                    },
                    r.shape.clone(),
                    sci(r.rel_err),
                    if r.bound == 0.0 {
                        "0 (exact)".into()
                    } else {
                        format!("{:.0e}", r.bound)
                    },
                    if r.pass { "pass" } else { "FAIL" }.into(),
                ]
            })
            .collect();
        let header = ["kernel", "output", "shape", "rel err", "bound", "result"];
        let mut width = header.map(str::len);
        for row in &cells {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(width)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            writeln!(f, "{}", padded.join("  ").trim_end())
        };
        line(f, &header)?;
        let rule: Vec<String> = width.iter().map(|&w| "-".repeat(w)).collect();
        line(f, &rule.iter().map(String::as_str).collect::<Vec<_>>())?;
        for row in &cells {
            line(f, &row.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        writeln!(
            f,
            "rel err: max over elements of |got - want| / (|want| + {FLOOR} max|want|); \
             (L2): ||got - want|| / ||want|| over the tensor"
        )?;
        for r in self.rows.iter().filter(|r| r.note.is_some()) {
            let note = r.note.as_deref().unwrap_or_default();
            writeln!(f, "note: {} {}: {note}", r.kernel, r.output)?;
        }
        Ok(())
    }
}

/// `1.23e-5`, `0`, `inf`.
fn sci(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.is_finite() {
        format!("{x:.2e}")
    } else {
        "inf".into()
    }
}
