//! Train on a small text, watch the run through a callback that stops it
//! early, then generate: the library API end to end, in a few seconds.
//!
//! ```sh
//! cargo run --example train_and_generate
//! ```

use charlstm_cuda::{
    Backend, BatchEvent, Control, EpochRow, Hyper, Observer, OneHotCorpus, Strategy, TrainConfig,
    Trainer,
};

/// Prints progress; asks for a stop once a budget of batches is spent (a
/// real caller might watch the clock, a loss target or a cancel button).
struct Progress {
    batches: usize,
    max_batches: usize,
}

impl Observer for Progress {
    fn on_batch(&mut self, e: &BatchEvent) -> Control {
        self.batches += 1;
        if e.batch.is_multiple_of(5) || e.batch == e.batches {
            println!(
                "epoch {} batch {:>3}/{}: loss {:.3} ({:.0} windows/s)",
                e.epoch, e.batch, e.batches, e.running_loss, e.samples_per_s
            );
        }
        if self.batches >= self.max_batches {
            println!("budget of {} batches spent: stopping", self.batches);
            return Control::Stop;
        }
        Control::Continue
    }

    fn on_epoch(&mut self, e: &EpochRow) -> Control {
        println!(
            "epoch {} done: loss {:.3} in {:.2} s",
            e.epoch, e.loss, e.seconds
        );
        for s in &e.samples {
            println!("  T={}: {:?}", s.temperature, s.text);
        }
        Control::Continue
    }
}

fn main() -> charlstm_cuda::Result<()> {
    // A made-up text with a little structure to learn: ~8,000 characters of
    // words in a pseudo-random order (a small LCG, so every run is the same).
    let words = [
        "the", "will", "to", "power", "is", "truth", "and", "of", "a", "free", "spirit",
    ];
    let mut text = String::new();
    let mut state = 12345u32;
    for i in 0..1500 {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        text.push_str(words[(state >> 16) as usize % words.len()]);
        text.push(if i % 9 == 8 { '\n' } else { ' ' });
    }
    let corpus = OneHotCorpus::from_text(&text, true)?;

    // The notebook's model, made smaller so this runs in seconds.
    let hyper = Hyper {
        maxlen: 20,
        hidden: 32,
        batch: 64,
        epochs: 2,
        ..Hyper::default()
    };
    let config = TrainConfig {
        temperatures: vec![0.5],
        gen_length: 40,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::builder(&corpus)
        .hyper(hyper)
        .config(config)
        .backend(Backend::Cpu)
        .build()?;
    println!(
        "{} windows, {} batches per epoch, backend {}",
        trainer.windows().count,
        trainer.batches_per_epoch(),
        trainer.backend()
    );

    // Through epoch 1, stopped halfway through epoch 2.
    let mut progress = Progress {
        batches: 0,
        max_batches: trainer.batches_per_epoch() * 3 / 2,
    };
    let summary = trainer.run(&mut progress)?;
    println!(
        "{} after {} steps",
        if summary.stopped {
            "stopped"
        } else {
            "finished"
        },
        summary.state.step
    );

    let model = trainer.model()?;
    let seed = "the will to power ";
    for t in [0.2, 1.0] {
        let text = model.generate(seed, 80, Strategy::Temperature(t), 7)?;
        println!("T={t}: {seed}{text}");
    }
    let probs = model.predict(&["the will to powe"])?;
    let best = probs[0]
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| model.vocab().char_at(i as u32));
    println!("most likely after \"the will to powe\": {best:?}");
    Ok(())
}
