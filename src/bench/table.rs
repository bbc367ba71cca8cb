//! [`BenchReport`] as a table: one row per backend (PyTorch last), the
//! per-recurrent-step latencies against the budget, the ratios between our
//! backends, then PyTorch / ours for (a) the epoch, (b) the step, (c)
//! generation and (d) the loss after one epoch, and last one line per
//! PyTorch variant (strict fp32 / TF32, eager / CUDA-graph loop) with its
//! epoch ratio to each of ours.

use std::fmt;

use super::{BenchReport, BenchRow, Comparison, PytorchVariant};
use crate::engine::LstmPath;

fn num(x: Option<f64>, scale: f64) -> String {
    x.map_or("-".into(), |x| format!("{:.3}", x * scale))
}

fn times(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.2}x"))
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "V={} H={}{} B={} T={}; {} windows, {} batches/epoch; {} steps, slice of {} batches, {} x {} chars{}{}",
            self.vocab,
            self.hidden,
            match (self.layers, self.dropout) {
                (1, _) => String::new(),
                (n, d) if d > 0.0 => format!(" N={n} dropout={d}"),
                (n, _) => format!(" N={n}"),
            },
            self.batch,
            self.maxlen,
            self.windows,
            self.batches_per_epoch,
            self.config.steps,
            self.config.slice_batches,
            self.config.temperatures.len(),
            self.config.gen_length,
            if self.config.full_epoch {
                "; one whole epoch each"
            } else {
                ""
            },
            match self.config.recurrence {
                LstmPath::Auto => String::new(),
                path => format!("; recurrence {path} on the devices"),
            }
        )?;
        // The PyTorch label (`pytorch (cuDNN, fp32, graph)`) may be wider.
        let w = self
            .rows
            .iter()
            .map(|r| self.label(r).chars().count())
            .fold(16, usize::max);
        writeln!(
            f,
            "{:<w$} {:>10} {:>12} {:>13} {:>10} {:>12} {:>12} {:>8} {:>10}  note",
            "backend",
            "step (ms)",
            "µs/rec.step",
            "epoch est (s)",
            "epoch (s)",
            "generate (s)",
            "stateful (s)",
            "loss",
            "epoch loss"
        )?;
        for r in &self.rows {
            let note = if r.available {
                r.note.clone().unwrap_or_default()
            } else {
                format!(
                    "no GPU / unavailable: {}",
                    r.note.clone().unwrap_or_default()
                )
            };
            writeln!(
                f,
                "{:<w$} {:>10} {:>12} {:>13} {:>10} {:>12} {:>12} {:>8} {:>10}  {}",
                self.label(r),
                num(r.train_step_s, 1e3),
                num(r.step_latency_us, 1.0),
                num(r.epoch_estimate_s, 1.0),
                num(r.epoch_s, 1.0),
                num(r.generate_s, 1.0),
                num(r.generate_stateful_s, 1.0),
                r.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
                r.epoch_loss.map_or("-".into(), |l| format!("{l:.4}")),
                note
            )?;
        }
        self.fmt_latency(f)?;
        for r in &self.rows {
            if let Some(x) = r.stateful_speedup {
                writeln!(
                    f,
                    "{}: stateful generation {x:.1}x faster than window generation ({} x {} \
                     chars; window runs {} recurrent steps a character, stateful one)",
                    r.backend,
                    self.config.temperatures.len(),
                    self.config.gen_length,
                    self.maxlen
                )?;
            }
        }
        let ours = |r: &&BenchRow| r.available && r.backend != "pytorch";
        let base = self.rows.iter().find(ours);
        for r in self.rows.iter().filter(ours) {
            if let Some(b) = base.filter(|b| b.backend != r.backend) {
                let step = self.ratio(|x| x.train_step_s, &b.backend, &r.backend);
                let epoch = self.ratio(|x| x.epoch_estimate_s, &b.backend, &r.backend);
                let generate = self.ratio(|x| x.generate_s, &b.backend, &r.backend);
                writeln!(
                    f,
                    "{} vs {}: step {}x, epoch {}x, generate {}x faster",
                    r.backend,
                    b.backend,
                    num(step, 1.0),
                    num(epoch, 1.0),
                    num(generate, 1.0)
                )?;
            }
        }
        for c in &self.comparisons {
            self.fmt_comparison(f, c)?;
        }
        self.fmt_variants(f)
    }
}

/// The first line of `text`, at most `max` characters.
fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= max && !text.trim_end().contains('\n') {
        line.into()
    } else {
        format!("{} ...", line.chars().take(max).collect::<String>())
    }
}

impl BenchReport {
    /// One line per PyTorch variant: its step, µs per recurrent step, epoch,
    /// epoch loss (eager and graph started alike, so they should agree) and
    /// epoch ratio to each of our rows; or why it has no numbers.
    fn fmt_variants(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(first) = self.pytorch_variants.first() else {
            return Ok(());
        };
        writeln!(
            f,
            "PyTorch variants, PyTorch epoch / ours (above 1x: ours is faster; est = from the \
             epoch slices; * = the row compared above, strict fp32 and the faster loop):"
        )?;
        let mut header = format!(
            "  {:<9} {:<6} {:>12} {:>12} {:>13} {:>10}",
            "precision", "loop", "step (µs)", "µs/rec.step", "epoch (s)", "epoch loss"
        );
        for r in &first.ratios {
            header += &format!(" {:>12}", format!("vs {}", r.backend));
        }
        writeln!(f, "{}", header.trim_end())?;
        for v in &self.pytorch_variants {
            writeln!(f, "{}", variant_line(v))?;
        }
        Ok(())
    }

    fn fmt_latency(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let measured: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| {
                let us = r.step_latency_us?;
                let ratio = us / self.step_budget_us;
                let verdict = if ratio <= 1.0 { "within" } else { "over" };
                Some(format!(
                    "{} {us:.3} µs = {ratio:.2}x the budget ({verdict})",
                    self.label(r)
                ))
            })
            .collect();
        writeln!(
            f,
            "per recurrent step = train step / {} ({} forward + {} backward dependent steps), budget {} µs:",
            self.recurrent_steps_per_batch, self.maxlen, self.maxlen, self.step_budget_us
        )?;
        if measured.is_empty() {
            writeln!(f, "  nothing measured")
        } else {
            writeln!(f, "  {}", measured.join("; "))
        }
    }

    fn fmt_comparison(&self, f: &mut fmt::Formatter<'_>, c: &Comparison) -> fmt::Result {
        if let Some(why) = &c.unavailable {
            return writeln!(
                f,
                "{} / {}: no ratios, {} unavailable: {why}",
                c.reference, c.backend, c.backend
            );
        }
        writeln!(
            f,
            "{} / {}, measured in this run (above 1x: {} is faster):",
            c.reference, c.backend, c.backend
        )?;
        let goal = c.epoch_goal_met.map_or(String::new(), |met| {
            format!(
                "; goal >= {}x: {}",
                c.epoch_goal,
                if met { "met" } else { "NOT met" }
            )
        });
        writeln!(
            f,
            "  (a) epoch {} ({}{goal})",
            times(c.epoch_ratio),
            c.epoch_basis.as_deref().unwrap_or("not measured")
        )?;
        let latency = |name: &str| self.metric(name, |r| r.step_latency_us);
        writeln!(
            f,
            "  (b) step {}: {} µs vs {} µs per recurrent step (budget {} µs)",
            times(c.step_ratio),
            num(latency(&c.backend), 1.0),
            num(latency("pytorch"), 1.0),
            self.step_budget_us
        )?;
        writeln!(
            f,
            "  (c) generation of {} x {} chars {}",
            self.config.temperatures.len(),
            self.config.gen_length,
            times(c.generate_ratio)
        )?;
        match (c.loss_ours, c.loss_reference, c.loss_rel_diff) {
            (Some(a), Some(b), Some(d)) => writeln!(
                f,
                "  (d) loss after one epoch: {} {a:.4}, pytorch {b:.4} ({:+.1}%, {} {:.0}%; \
                 different initialisations and window orders, so only a loose check)",
                c.backend,
                d * 100.0,
                if d.abs() <= c.loss_tolerance {
                    "within"
                } else {
                    "NOT within"
                },
                c.loss_tolerance * 100.0
            ),
            (ours, theirs, _) => {
                let missing = match (ours.is_some(), theirs.is_some()) {
                    (false, false) => "from either side (--full-epoch on both)",
                    (false, true) => "from this bench (add --full-epoch)",
                    _ => "from PyTorch (run bench_pytorch.py with --full-epoch)",
                };
                writeln!(
                    f,
                    "  (d) loss after one epoch: not measured: no whole epoch {missing}"
                )
            }
        }
    }
}

fn variant_line(v: &PytorchVariant) -> String {
    let mark = if v.headline { '*' } else { ' ' };
    let head = format!("{mark} {:<9} {:<6}", v.precision, v.loop_kind);
    if let Some(e) = &v.error {
        return format!("{head} error: {}", first_line(e, 160));
    }
    if let Some(why) = &v.not_applicable {
        return format!("{head} not applicable: {}", first_line(why, 160));
    }
    let epoch = match (v.epoch_s, v.epoch_estimate_s) {
        (Some(s), _) => format!("{s:.3}"),
        (None, Some(s)) => format!("{s:.3} est"),
        (None, None) => "-".into(),
    };
    let mut line = format!(
        "{head} {:>12} {:>12} {:>13} {:>10}",
        num(v.train_step_s, 1e6),
        num(v.step_latency_us, 1.0),
        epoch,
        v.epoch_loss.map_or("-".into(), |l| format!("{l:.4}"))
    );
    for r in &v.ratios {
        let ratio = match (r.epoch_ratio, r.epoch_basis.as_deref()) {
            (Some(x), Some("estimate")) => format!("{x:.2}x est"),
            (x, _) => times(x),
        };
        line += &format!(" {ratio:>12}");
    }
    if let Some(note) = &v.note {
        line += &format!("  ({})", first_line(note, 120));
    }
    line
}
