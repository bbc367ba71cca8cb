//! What `train` shows: a progress bar on stderr (terminals only), one line
//! per epoch and the notebook's sample block on stdout, coloured like the
//! notebook when stdout is a terminal and NO_COLOR is unset. With `--json`,
//! one JSON object per epoch instead (the fields of metrics.jsonl).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use charlstm_cuda::train::{BatchEvent, Control, Observer, RollbackEvent, SampleEvent};
use charlstm_cuda::{EpochRow, Strategy};

use super::interrupt::Phase;

pub struct Printer {
    bar: Option<ProgressBar>,
    quiet: bool,
    colour: bool,
    json: bool,
}

/// Whether stdout should get ANSI colours.
/// `n` and the noun, plural unless `n` is 1: "1 epoch", "60 epochs",
/// "2 batches" (`noun` + "s", or "es" after "tch": "epoch" is not "epoches").
pub fn count(n: usize, noun: &str) -> String {
    match (n, noun.ends_with("tch")) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        _ => format!("{n} {noun}s"),
    }
}

pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

impl Printer {
    pub fn new(quiet: bool) -> Self {
        Printer {
            bar: None,
            quiet,
            colour: colour_stdout(),
            json: false,
        }
    }

    /// Epochs as JSON lines on stdout instead of text.
    pub fn json(mut self, json: bool) -> Self {
        self.json = json;
        self
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn control_after_epoch(&self) -> Control {
        if super::interrupt::requested() {
            Control::Stop
        } else {
            Control::Continue
        }
    }

    fn bar(&mut self, epoch: usize, batches: usize) -> &ProgressBar {
        self.bar.get_or_insert_with(|| {
            let bar =
                ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(epoch.to_string());
            bar
        })
    }
}

impl Observer for Printer {
    fn on_batch(&mut self, e: &BatchEvent) -> Control {
        if super::interrupt::requested() {
            return Control::Stop;
        }
        // indicatif hides itself when stderr is not a terminal.
        if !self.quiet {
            let bar = self.bar(e.epoch, e.batches);
            bar.set_position(e.batch as u64);
            bar.set_message(format!(
                "loss {:.4} {:.0} samples/s",
                e.running_loss, e.samples_per_s
            ));
        }
        Control::Continue
    }

    fn on_sample(&mut self, e: &SampleEvent) -> Control {
        super::interrupt::set_phase(Phase::Sampling);
        if super::interrupt::requested() {
            return Control::Stop;
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("sampling: {}/{} characters", e.done, e.length));
        }
        Control::Continue
    }

    fn on_epoch(&mut self, e: &EpochRow) -> Control {
        super::interrupt::set_phase(Phase::Training);
        self.finish();
        if self.json {
            // The same serialisation as the trainer's metrics.jsonl line.
            match serde_json::to_string(e) {
                Ok(line) => println!("{line}"),
                Err(err) => eprintln!("warning: epoch {} as JSON: {err}", e.epoch),
            }
            return self.control_after_epoch();
        }
        // Keras' names; "(best)" where best.safetensors was just written.
        let val = match e.val_loss {
            Some(v) if e.best_epoch == Some(e.epoch) => format!(", val_loss {v:.4} (best)"),
            Some(v) => format!(", val_loss {v:.4}"),
            None => String::new(),
        };
        println!(
            "epoch {}/{}: loss {:.4}{val}, {:.1} s, {:.0} samples/s, {} batches",
            e.epoch, e.epochs, e.loss, e.seconds, e.samples_per_s, e.batches
        );
        if let Some(first) = e.samples.first() {
            print!("{}", sample_header(&first.seed));
            for s in &e.samples {
                print!("{}", sample_label(&Strategy::Temperature(s.temperature)));
                print_sample(&s.seed, &s.text, self.colour);
            }
        }
        self.control_after_epoch()
    }

    fn on_rollback(&mut self, e: &RollbackEvent) {
        self.finish();
        eprintln!(
            "diverged ({}): rolled back to the end of epoch {}, learning rate now {} (rollback {})",
            e.cause, e.to_epoch, e.lr, e.rollbacks
        );
    }
}

/// Seed and generated text on one line, the generated part highlighted on terminals.
pub fn print_sample(seed: &str, text: &str, colour: bool) {
    println!(
        "{}{}",
        seed_part(seed, colour),
        generated_part(text, colour)
    );
}

/// The notebook's sample block, piece by piece (`generate` streams it):
/// the header line.
pub fn sample_header(seed: &str) -> String {
    format!("--- Generating with seed: \"{seed}\"\n")
}

/// A sample's label line.
pub fn sample_label(s: &Strategy) -> String {
    match s {
        Strategy::Temperature(t) => format!("------ temperature: {t:?}\n"),
        Strategy::Greedy => "------ greedy\n".into(),
        Strategy::Uniform => "------ uniform\n".into(),
    }
}

/// The seed: dimmed on terminals.
pub fn seed_part(seed: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[2m{seed}\x1b[0m")
    } else {
        seed.into()
    }
}

/// Generated characters: green on terminals, each piece closed, so an
/// interrupt leaves the terminal's colour alone.
pub fn generated_part(text: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[1;32m{text}\x1b[0m")
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn count_pluralises_the_nouns_the_cli_prints() {
        assert_eq!(count(1, "epoch"), "1 epoch");
        assert_eq!(count(60, "epoch"), "60 epochs");
        assert_eq!(count(0, "batch"), "0 batches");
        assert_eq!(count(1, "batch"), "1 batch");
        assert_eq!(count(3, "window"), "3 windows");
    }
}
