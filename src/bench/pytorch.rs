//! PyTorch's numbers for the same job next to ours: `bench --pytorch FILE`
//! reads the JSON `scripts/bench_pytorch.py` printed (nn.LSTM + Linear,
//! cuDNN on a GPU), checks that it ran the same job (V, H, B, T, the epoch's
//! batches, the generation asked for), adds it as a `pytorch` row and
//! computes PyTorch / ours for every one of our rows.
//!
//! The file's top-level numbers are its headline, the one compared: strict
//! fp32 (no TF32) and the faster of its eager and CUDA-graph loops, named by
//! its `precision` and `loop` keys (files from before those keys are read as
//! they are). Its `variants` (every precision x loop it ran, or why one has
//! no numbers) become [`PytorchVariant`]s, each with its epoch and step
//! ratios to our rows, so TF32 shows beside strict fp32.
//!
//! Ratios are PyTorch's time over ours, so above 1 means we are faster; the
//! epoch goal is [`EPOCH_GOAL`]x. The loss after one epoch is compared
//! loosely ([`LOSS_TOLERANCE`]): the two start from different random
//! initialisations and shuffle the windows differently, so the same model
//! and optimizer land near each other, not on the same number.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{BenchReport, BenchRow, step_latency_us};
use crate::error::{Error, Result};

/// PyTorch epoch time over ours that the project aims for.
pub const EPOCH_GOAL: f64 = 5.0;
/// Relative difference of the losses after one epoch still called "close".
pub const LOSS_TOLERANCE: f64 = 0.10;

/// PyTorch against one of our backends, from numbers measured in one run.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Our backend (`cpu`, `cuda`, `sim`).
    pub backend: String,
    /// Where PyTorch ran and, when the file says, the headline's precision
    /// and loop: `pytorch (cuDNN, fp32, graph)`, `pytorch (cpu, fp32, eager)`;
    /// `pytorch (cuDNN)` for a file without them.
    pub reference: String,
    /// Why there are no ratios (our backend unavailable), else `None`.
    pub unavailable: Option<String>,
    /// PyTorch epoch time / ours.
    pub epoch_ratio: Option<f64>,
    /// `whole epoch` when both trained one, else `estimate` (from the slices).
    pub epoch_basis: Option<String>,
    /// [`EPOCH_GOAL`].
    pub epoch_goal: f64,
    /// `epoch_ratio >= epoch_goal`.
    pub epoch_goal_met: Option<bool>,
    /// PyTorch training step / ours (the same as the per-recurrent-step ratio).
    pub step_ratio: Option<f64>,
    /// PyTorch generation time / ours.
    pub generate_ratio: Option<f64>,
    /// Our mean loss over one whole epoch.
    pub loss_ours: Option<f64>,
    /// PyTorch's mean loss over one whole epoch.
    pub loss_reference: Option<f64>,
    /// `(ours - pytorch) / pytorch`.
    pub loss_rel_diff: Option<f64>,
    /// [`LOSS_TOLERANCE`].
    pub loss_tolerance: f64,
    /// `|loss_rel_diff| <= loss_tolerance`.
    pub loss_within_tolerance: Option<bool>,
}

/// PyTorch's row and what to call it.
#[derive(Clone, Debug)]
pub struct Reference {
    /// The numbers, as a row like ours (`backend` is `pytorch`).
    pub row: BenchRow,
    /// `pytorch (cuDNN, PRECISION, LOOP)` on a GPU, else `pytorch (DEVICE,
    /// PRECISION, LOOP)`; without the precision and loop for an older file.
    pub label: String,
    /// The file's variants (empty for an older file), ratios not yet filled in.
    pub variants: Vec<PytorchVariant>,
}

/// One of PyTorch's variants: a precision (`fp32` strict, `tf32`) and a loop
/// (`eager`, `graph`), its numbers or why it has none, and PyTorch / ours.
#[derive(Clone, Debug, Serialize)]
pub struct PytorchVariant {
    /// `fp32` (strict IEEE fp32) or `tf32`.
    pub precision: String,
    /// `eager` or `graph` (one CUDA graph per train step, replayed).
    #[serde(rename = "loop")]
    pub loop_kind: String,
    /// Whether cuDNN and cuBLAS were allowed TF32.
    pub allow_tf32: Option<bool>,
    /// The variant the top-level numbers (the compared row) come from.
    pub headline: bool,
    /// Median seconds of one training step.
    pub train_step_s: Option<f64>,
    /// `train_step_s / (2 T)` in µs.
    pub step_latency_us: Option<f64>,
    /// The epoch slice scaled to a whole epoch.
    pub epoch_estimate_s: Option<f64>,
    /// Seconds of one whole epoch (`--full-epoch`).
    pub epoch_s: Option<f64>,
    /// Mean loss over that epoch.
    pub epoch_loss: Option<f64>,
    /// Why it failed (a CUDA-graph capture refused, say).
    pub error: Option<String>,
    /// Why it does not apply (graphs or TF32 on the CPU).
    pub not_applicable: Option<String>,
    /// What else bench_pytorch.py said about it.
    pub note: Option<String>,
    /// PyTorch / ours against each of our rows, in their order.
    pub ratios: Vec<VariantRatio>,
}

/// A [`PytorchVariant`] against one of our backends.
#[derive(Clone, Debug, Serialize)]
pub struct VariantRatio {
    /// Our backend.
    pub backend: String,
    /// The variant's epoch time / ours (`None` when either is missing).
    pub epoch_ratio: Option<f64>,
    /// `whole epoch` or `estimate`, as [`Comparison::epoch_basis`].
    pub epoch_basis: Option<String>,
    /// The variant's training step / ours.
    pub step_ratio: Option<f64>,
}

/// The keys of `bench_pytorch.py`'s output this reads; others are ignored.
#[derive(Clone, Debug, Deserialize)]
pub struct PytorchJson {
    device: Option<String>,
    torch: Option<String>,
    cudnn: Option<serde_json::Value>,
    vocab: usize,
    hidden: usize,
    /// Absent from files of before `--layers`: one layer.
    layers: Option<usize>,
    /// Absent from files of before `--dropout`: none.
    dropout: Option<f64>,
    batch: usize,
    maxlen: usize,
    batches_per_epoch: Option<usize>,
    gen_length: Option<usize>,
    temperatures: Option<Vec<f64>>,
    train_step_s: f64,
    epoch_slice_s: Option<f64>,
    epoch_estimate_s: f64,
    generate_s: f64,
    last_loss: Option<f64>,
    epoch_s: Option<f64>,
    epoch_loss: Option<f64>,
    precision: Option<String>,
    #[serde(rename = "loop")]
    loop_kind: Option<String>,
    allow_tf32: Option<bool>,
    #[serde(default)]
    variants: Vec<VariantJson>,
}

/// One entry of the file's `variants`.
#[derive(Clone, Debug, Deserialize)]
struct VariantJson {
    precision: Option<String>,
    #[serde(rename = "loop")]
    loop_kind: Option<String>,
    allow_tf32: Option<bool>,
    train_step_s: Option<f64>,
    epoch_estimate_s: Option<f64>,
    epoch_s: Option<f64>,
    epoch_loss: Option<f64>,
    error: Option<String>,
    not_applicable: Option<String>,
    note: Option<String>,
}

fn bad(path: &Path, what: String) -> Error {
    Error::BenchInput {
        path: path.to_path_buf(),
        what,
    }
}

/// Reads `path` and checks its numbers (before a long measurement, so a bad
/// file fails at once).
pub fn read(path: &Path) -> Result<PytorchJson> {
    let limit = crate::io::Limit {
        bytes: 1 << 20,
        what: "a PyTorch bench result",
        fix: "pass the one JSON object scripts/bench_pytorch.py prints",
    };
    let bytes = crate::io::read_bounded(path, limit).map_err(|e| match e {
        Error::Io { source, .. } => bad(path, format!("cannot read it: {source}")),
        other => other,
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|e| bad(path, format!("not UTF-8 text: {}", e.utf8_error())))?;
    let p: PytorchJson = serde_json::from_str(&text).map_err(|e| {
        bad(
            path,
            format!("not the JSON object bench_pytorch.py prints: {e}"),
        )
    })?;
    let times = [
        ("train_step_s", Some(p.train_step_s)),
        ("epoch_estimate_s", Some(p.epoch_estimate_s)),
        ("generate_s", Some(p.generate_s)),
        ("epoch_slice_s", p.epoch_slice_s),
        ("epoch_s", p.epoch_s),
    ];
    let losses = [("last_loss", p.last_loss), ("epoch_loss", p.epoch_loss)];
    check_numbers(path, "", &times, &losses)?;
    for (i, v) in p.variants.iter().enumerate() {
        let times = [
            ("train_step_s", v.train_step_s),
            ("epoch_estimate_s", v.epoch_estimate_s),
            ("epoch_s", v.epoch_s),
        ];
        let losses = [("epoch_loss", v.epoch_loss)];
        check_numbers(path, &format!("variants[{i}]."), &times, &losses)?;
    }
    Ok(p)
}

/// Times must be positive seconds, losses finite (`prefix` names where).
fn check_numbers(
    path: &Path,
    prefix: &str,
    times: &[(&str, Option<f64>)],
    losses: &[(&str, Option<f64>)],
) -> Result<()> {
    for &(key, x) in times {
        if let Some(x) = x.filter(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(bad(
                path,
                format!("{prefix}{key} is {x}, not a positive number of seconds"),
            ));
        }
    }
    for &(key, x) in losses {
        if let Some(x) = x.filter(|x| !x.is_finite()) {
            return Err(bad(path, format!("{prefix}{key} is {x}")));
        }
    }
    Ok(())
}

/// Reads `path` ([`read`]) and checks that it ran `report`'s job.
pub fn load(path: &Path, report: &BenchReport) -> Result<Reference> {
    check(read(path)?, path, report)
}

/// Checks that `p` (read from `path`) ran `report`'s job.
pub fn check(p: PytorchJson, path: &Path, report: &BenchReport) -> Result<Reference> {
    let bad = |what: String| bad(path, what);
    // Dropout is compared as the f32 both sides trained with.
    let dropout = p.dropout.unwrap_or(0.0) as f32;
    let theirs = (
        p.vocab,
        p.hidden,
        p.layers.unwrap_or(1),
        dropout,
        p.batch,
        p.maxlen,
    );
    let ours = (
        report.vocab,
        report.hidden,
        report.layers,
        report.dropout,
        report.batch,
        report.maxlen,
    );
    if theirs != ours {
        let job = |(v, h, n, d, b, t): (usize, usize, usize, f32, usize, usize)| {
            format!("V={v} H={h} N={n} dropout={d} B={b} T={t}")
        };
        let (theirs, ours) = (job(theirs), job(ours));
        return Err(bad(format!(
            "not the same job: PyTorch ran {theirs}, this bench {ours}"
        )));
    }
    if let Some(n) = p
        .batches_per_epoch
        .filter(|&n| n != report.batches_per_epoch)
    {
        return Err(bad(format!(
            "not the same corpus: {n} batches per epoch there, {} here",
            report.batches_per_epoch
        )));
    }
    let gen_length = p.gen_length.unwrap_or(report.config.gen_length);
    let temperatures = p.temperatures.as_ref().map_or(4, Vec::len);
    if (gen_length, temperatures) != (report.config.gen_length, report.config.temperatures.len()) {
        return Err(bad(format!(
            "not the same generation: {temperatures} x {gen_length} characters there, {} x {} here",
            report.config.temperatures.len(),
            report.config.gen_length
        )));
    }
    let device = p.device.unwrap_or_else(|| "an unnamed device".into());
    let cudnn = p.cudnn.filter(|c| !c.is_null());
    let place = match cudnn {
        Some(_) => "cuDNN".to_string(),
        None => device.clone(),
    };
    let label = match (&p.precision, &p.loop_kind) {
        (Some(precision), Some(loop_kind)) => {
            format!("pytorch ({place}, {precision}, {loop_kind})")
        }
        (Some(only), None) | (None, Some(only)) => format!("pytorch ({place}, {only})"),
        (None, None) => format!("pytorch ({place})"),
    };
    let cudnn = cudnn.map_or("no cuDNN".into(), |c| format!("cuDNN {c}"));
    let tf32 = p
        .allow_tf32
        .map_or(String::new(), |t| format!(", allow_tf32 {t}"));
    let headline = (p.precision.as_deref(), p.loop_kind.as_deref());
    let variants = p
        .variants
        .iter()
        .map(|v| {
            let precision = v.precision.clone().unwrap_or_else(|| "?".into());
            let loop_kind = v.loop_kind.clone().unwrap_or_else(|| "?".into());
            PytorchVariant {
                headline: headline == (Some(precision.as_str()), Some(loop_kind.as_str())),
                precision,
                loop_kind,
                allow_tf32: v.allow_tf32,
                train_step_s: v.train_step_s,
                step_latency_us: v.train_step_s.map(|s| step_latency_us(s, p.maxlen)),
                epoch_estimate_s: v.epoch_estimate_s,
                epoch_s: v.epoch_s,
                epoch_loss: v.epoch_loss,
                error: v.error.clone(),
                not_applicable: v.not_applicable.clone(),
                note: v.note.clone(),
                ratios: Vec::new(),
            }
        })
        .collect();
    let row = BenchRow {
        backend: "pytorch".into(),
        available: true,
        note: Some(format!(
            "nn.LSTM on {device}, torch {}, {cudnn}{tf32}",
            p.torch.as_deref().unwrap_or("?")
        )),
        train_step_s: Some(p.train_step_s),
        epoch_slice_s: p.epoch_slice_s,
        epoch_estimate_s: Some(p.epoch_estimate_s),
        generate_s: Some(p.generate_s),
        // scripts/bench_pytorch.py times window generation only.
        generate_stateful_s: None,
        stateful_speedup: None,
        last_loss: p.last_loss.map(|l| l as f32),
        step_latency_us: Some(step_latency_us(p.train_step_s, p.maxlen)),
        epoch_s: p.epoch_s,
        epoch_loss: p.epoch_loss,
    };
    Ok(Reference {
        row,
        label,
        variants,
    })
}

impl BenchReport {
    /// Adds PyTorch's row (from [`load`]) and its comparison with each of ours.
    pub fn add_pytorch(&mut self, reference: Reference, file: &Path) {
        let Reference {
            row,
            label,
            mut variants,
        } = reference;
        let reference = label;
        self.rows.retain(|r| r.backend != "pytorch");
        self.comparisons = self
            .rows
            .iter()
            .map(|ours| compare(ours, &row, &reference))
            .collect();
        for v in &mut variants {
            v.ratios = self.rows.iter().map(|ours| v.against(ours)).collect();
        }
        self.pytorch_variants = variants;
        self.rows.push(row);
        self.pytorch_file = Some(file.display().to_string());
    }

    /// What the PyTorch row is called in tables.
    pub fn label(&self, row: &BenchRow) -> String {
        match self.comparisons.first() {
            Some(c) if row.backend == "pytorch" => c.reference.clone(),
            _ => row.backend.clone(),
        }
    }
}

impl PytorchVariant {
    fn against(&self, ours: &BenchRow) -> VariantRatio {
        let (epoch_ratio, basis) = epoch_ratio(
            (ours.epoch_s, ours.epoch_estimate_s),
            (self.epoch_s, self.epoch_estimate_s),
        );
        VariantRatio {
            backend: ours.backend.clone(),
            epoch_ratio,
            epoch_basis: epoch_ratio.map(|_| basis.into()),
            step_ratio: div(self.train_step_s, ours.train_step_s),
        }
    }
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

/// Their epoch / ours from (whole epoch, estimate) pairs: whole epochs when
/// both have one, else the estimates; and which it was.
fn epoch_ratio(
    ours: (Option<f64>, Option<f64>),
    theirs: (Option<f64>, Option<f64>),
) -> (Option<f64>, &'static str) {
    if ours.0.is_some() && theirs.0.is_some() {
        (div(theirs.0, ours.0), "whole epoch")
    } else {
        (div(theirs.1, ours.1), "estimate")
    }
}

fn compare(ours: &BenchRow, theirs: &BenchRow, reference: &str) -> Comparison {
    let (epoch_ratio, basis) = epoch_ratio(
        (ours.epoch_s, ours.epoch_estimate_s),
        (theirs.epoch_s, theirs.epoch_estimate_s),
    );
    let loss_rel_diff = div(ours.epoch_loss, theirs.epoch_loss).map(|r| r - 1.0);
    Comparison {
        backend: ours.backend.clone(),
        reference: reference.into(),
        unavailable: (!ours.available).then(|| ours.note.clone().unwrap_or_default()),
        epoch_ratio,
        epoch_basis: epoch_ratio.map(|_| basis.into()),
        epoch_goal: EPOCH_GOAL,
        epoch_goal_met: epoch_ratio.map(|r| r >= EPOCH_GOAL),
        step_ratio: div(theirs.train_step_s, ours.train_step_s),
        generate_ratio: div(theirs.generate_s, ours.generate_s),
        loss_ours: ours.epoch_loss,
        loss_reference: theirs.epoch_loss,
        loss_rel_diff,
        loss_tolerance: LOSS_TOLERANCE,
        loss_within_tolerance: loss_rel_diff.map(|d| d.abs() <= LOSS_TOLERANCE),
    }
}
