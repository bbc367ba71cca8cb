//! [`BenchReport`] as a table: one row per backend (PyTorch last), the
//! per-recurrent-step latencies against the budget, the ratios between our
//! backends, then PyTorch / ours for (a) the epoch, (b) the step, (c)
//! generation and (d) the loss after one epoch.

use std::fmt;

use super::{BenchReport, BenchRow, Comparison};

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
            "V={} H={} B={} T={}; {} windows, {} batches/epoch; {} steps, slice of {} batches, {} x {} chars{}",
            self.vocab,
            self.hidden,
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
            }
        )?;
        writeln!(
            f,
            "{:<16} {:>10} {:>12} {:>13} {:>10} {:>12} {:>8} {:>10}  note",
            "backend",
            "step (ms)",
            "µs/rec.step",
            "epoch est (s)",
            "epoch (s)",
            "generate (s)",
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
                "{:<16} {:>10} {:>12} {:>13} {:>10} {:>12} {:>8} {:>10}  {}",
                self.label(r),
                num(r.train_step_s, 1e3),
                num(r.step_latency_us, 1.0),
                num(r.epoch_estimate_s, 1.0),
                num(r.epoch_s, 1.0),
                num(r.generate_s, 1.0),
                r.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
                r.epoch_loss.map_or("-".into(), |l| format!("{l:.4}")),
                note
            )?;
        }
        self.fmt_latency(f)?;
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
        Ok(())
    }
}

impl BenchReport {
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
        let latency = |name: &str| {
            self.rows
                .iter()
                .find(|r| r.backend == name)
                .and_then(|r| r.step_latency_us)
        };
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
