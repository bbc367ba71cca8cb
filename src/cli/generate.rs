//! `generate` and `eval`.

use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use charlstm_cuda::Device;
use charlstm_cuda::corpus::{CorpusFile, OneHotCorpus, Vocab, Windows};
use charlstm_cuda::device;
use charlstm_cuda::model::{Checkpoint, Params};
use charlstm_cuda::sample::{Purpose, RngStream, Strategy, random_seed_text};
use charlstm_cuda::{Error, Result};

use super::args::{EvalArgs, GenerateArgs, StrategyArg};
use super::printer::{colour_stdout, print_sample};

pub fn generate(a: GenerateArgs) -> Result<ExitCode> {
    let device: Device = a.device.parse()?;
    // Resolving refuses a backend that cannot run here (no kernels, no
    // GPU), and says what `auto` picked.
    let (backend, notice) = device.resolve()?;
    if let Some(n) = notice {
        eprintln!("{n}");
    }
    let ckpt = Checkpoint::load(&a.checkpoint)?;
    let vocab = Vocab::from_chars(ckpt.vocab.clone())?;
    let maxlen = ckpt.hyper.maxlen;
    let strategies: Vec<Strategy> = match a.strategy {
        StrategyArg::Temperature => a
            .temperatures
            .iter()
            .map(|&t| Strategy::temperature(t))
            .collect::<Result<_>>()?,
        StrategyArg::Greedy => vec![Strategy::Greedy],
        StrategyArg::Uniform => vec![Strategy::Uniform],
    };
    let seed_text = match (&a.seed_text, &a.corpus) {
        (Some(s), _) if ckpt.hyper.lowercase => s.to_lowercase(),
        (Some(s), _) => s.clone(),
        (None, Some(path)) => {
            let corpus = OneHotCorpus::load(path, ckpt.hyper.lowercase)?;
            let start = random_seed_text(corpus.rows(), maxlen, a.seed, u32::MAX)?;
            corpus.text(start, maxlen)
        }
        (None, None) => {
            let i = RngStream::new(a.seed, Purpose::SeedText, u32::MAX).below(vocab.len() as u64);
            vocab.char_at(i as u32).to_string()
        }
    };
    // One path for every backend: on a device the whole sampling loop is
    // one kernel launch (or the same loop over the device's predict where
    // that does not fit), on the CPU the reference predictor.
    let texts = device::generate_text(
        backend,
        &ckpt.params,
        &vocab,
        maxlen,
        &seed_text,
        a.length,
        &strategies,
        a.seed,
        0,
    )?;
    let colour = colour_stdout();
    println!("--- Generating with seed: \"{seed_text}\"");
    for (s, text) in strategies.iter().zip(texts) {
        match s {
            Strategy::Temperature(t) => println!("------ temperature: {t:?}"),
            Strategy::Greedy => println!("------ greedy"),
            Strategy::Uniform => println!("------ uniform"),
        }
        print_sample(&seed_text, &text, colour);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn eval(a: EvalArgs) -> Result<ExitCode> {
    if a.batch_size == 0 {
        return Err(Error::InvalidArgument {
            name: "--batch-size",
            what: "0 (must be at least 1)".into(),
        });
    }
    let device: Device = a.device.parse()?;
    let ckpt = Checkpoint::load(&a.checkpoint)?;
    let vocab = Vocab::from_chars(ckpt.vocab.clone())?;
    let corpus = match CorpusFile::read(&a.corpus)? {
        CorpusFile::Prepared(c) => {
            if c.vocab() != &vocab {
                return Err(Error::InvalidArgument {
                    name: "--corpus",
                    what: "the prepared corpus' vocabulary differs from the checkpoint's; pass the text file".into(),
                });
            }
            c
        }
        CorpusFile::Text(text) => {
            OneHotCorpus::from_text_with_vocab(&text, &vocab, ckpt.hyper.lowercase)?
        }
    };
    let hyper = ckpt.hyper.clone();
    let windows = Windows::new(corpus.rows(), hyper.maxlen, hyper.step)?;
    let rmsprop = Params::zeros(ckpt.params.vocab, ckpt.params.hidden);
    let (mut engine, notice) = device.open_engine(&corpus, &hyper, ckpt.params, rmsprop)?;
    if let Some(n) = notice {
        eprintln!("{n}");
    }
    let starts: Vec<u32> = (0..windows.count)
        .map(|i| (i * windows.step) as u32)
        .collect();
    let chunks = starts.len().div_ceil(a.batch_size);
    // A whole corpus can take a while on the CPU; indicatif draws nothing
    // when stderr is not a terminal, and --quiet turns it off.
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(chunks as u64), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template("eval [{bar:30}] {pos}/{len} batches ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut sum = 0.0f64;
    for chunk in starts.chunks(a.batch_size) {
        sum += f64::from(engine.eval_batch(chunk)?) * chunk.len() as f64;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let loss = sum / windows.count as f64;
    println!(
        "{}",
        serde_json::json!({ "loss": loss, "windows": windows.count })
    );
    Ok(ExitCode::SUCCESS)
}
