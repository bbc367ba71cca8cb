//! `generate` and `eval`.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use charlstm_cuda::Device;
use charlstm_cuda::corpus::{CorpusFile, OneHotCorpus, Vocab, Windows};
use charlstm_cuda::device;
use charlstm_cuda::engine::mean_loss;
use charlstm_cuda::model::Checkpoint;
use charlstm_cuda::sample::{
    GenMode, GenerateRequest, Purpose, RngStream, Strategy, check_length, decode, encode_seed,
    random_seed_text,
};
use charlstm_cuda::{Error, Result};

use super::args::{EvalArgs, GenerateArgs, StrategyArg};
use super::interrupt::Phase;
use super::printer::{colour_stdout, generated_part, sample_header, sample_label, seed_part};

pub fn generate(a: GenerateArgs) -> Result<ExitCode> {
    // Checked before anything is read: the length bounds the time a typo
    // can cost, the modes what stdout is.
    check_length("--length", a.length)?;
    if a.raw && a.json {
        return Err(Error::Conflict {
            what: "--raw cannot be used with --json: --raw prints the generated characters \
                   alone, --json one JSON object per sample"
                .into(),
            fix: "drop one: --raw to pipe the text on, --json for the samples with their \
                  temperatures and seed"
                .into(),
        });
    }
    // Nothing to save: the first Ctrl-C ends the command (exit 130), and
    // the text generated so far is on stdout already.
    super::interrupt::set_phase(Phase::Generating);
    super::interrupt::install();
    let device: Device = a.device.parse()?;
    let gen_mode: GenMode = a.gen_mode.parse()?;
    // Read before the device is resolved, so a bad checkpoint gets the
    // same error whichever --device is asked for.
    let ckpt = Checkpoint::load(&a.checkpoint)?;
    // Resolving refuses a backend that cannot run here (no kernels, no
    // GPU), and says what `auto` picked.
    let (backend, notice) = device.resolve()?;
    if let Some(n) = notice {
        eprintln!("{n}");
    }
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
    let seed_indices = encode_seed(&vocab, &seed_text)?;
    let req = GenerateRequest {
        seed_indices: &seed_indices,
        maxlen,
        length: a.length,
        strategies: &strategies,
        seed: a.seed,
        stream: 0,
        mode: gen_mode,
    };
    let mode = match (a.raw, a.json) {
        (true, _) => Mode::Raw,
        (_, true) => Mode::Json,
        _ => Mode::Notebook {
            colour: colour_stdout(),
        },
    };
    if a.raw && a.seed_text.is_none() {
        eprintln!("seed: {seed_text:?}");
    }
    let mut out = Sink::new(mode, &vocab);
    out.begin(&seed_text, strategies.first())?;
    // One path for every backend: the first sample is written as its
    // characters come (each on the CPU; the whole launch at once on a
    // device), the others, made in the same batch, when it is done.
    let mut failed = None;
    let texts = device::generate_with(backend, &ckpt.params, &req, &mut |seqs| match seqs
        .first()
        .map(|s| out.stream(s))
    {
        Some(Err(e)) => {
            failed = Some(e);
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    out.finish(&seed_text, &strategies, &texts)?;
    Ok(ExitCode::SUCCESS)
}

/// What `generate` writes on stdout.
#[derive(Clone, Copy)]
enum Mode {
    /// The notebook's block: the seed, a label per strategy, seed + text.
    Notebook { colour: bool },
    /// The generated characters alone, each sample ended by a newline.
    Raw,
    /// One JSON object per sample, at the end.
    Json,
}

/// stdout as generation goes: the first sample streamed, the rest after.
struct Sink<'v> {
    mode: Mode,
    vocab: &'v Vocab,
    out: std::io::Stdout,
    /// Characters of the first sample written so far.
    written: usize,
}

impl<'v> Sink<'v> {
    fn new(mode: Mode, vocab: &'v Vocab) -> Self {
        Sink {
            mode,
            vocab,
            out: std::io::stdout(),
            written: 0,
        }
    }

    fn write(&mut self, text: &str) -> Result<()> {
        let mut out = self.out.lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Error::io("stdout", e))
    }

    /// The header and the first sample's seed, before any character.
    fn begin(&mut self, seed: &str, first: Option<&Strategy>) -> Result<()> {
        let Mode::Notebook { colour } = self.mode else {
            return Ok(());
        };
        let mut head = sample_header(seed);
        if let Some(s) = first {
            head += &sample_label(s);
            head += &seed_part(seed, colour);
        }
        self.write(&head)
    }

    /// The first sample's characters that are new in `seq`.
    fn stream(&mut self, seq: &[u32]) -> Result<()> {
        if matches!(self.mode, Mode::Json) || seq.len() <= self.written {
            return Ok(());
        }
        let text: String = seq[self.written..]
            .iter()
            .map(|&i| self.vocab.char_at(i))
            .collect();
        self.written = seq.len();
        let text = match self.mode {
            Mode::Notebook { colour: true } => generated_part(&text, true),
            _ => text,
        };
        self.write(&text)
    }

    /// The end of the first sample and the others.
    fn finish(&mut self, seed: &str, strategies: &[Strategy], seqs: &[Vec<u32>]) -> Result<()> {
        if let Some(first) = seqs.first() {
            // On a device the one report came after the launch; make sure
            // every character is out, then end the line.
            self.stream(first)?;
        }
        let texts = decode(self.vocab, seqs);
        let mut rest = String::new();
        match self.mode {
            Mode::Notebook { colour } => {
                if !seqs.is_empty() {
                    rest.push('\n');
                }
                for (s, text) in strategies.iter().zip(&texts).skip(1) {
                    rest += &sample_label(s);
                    rest += &seed_part(seed, colour);
                    rest += &generated_part(text, colour);
                    rest.push('\n');
                }
            }
            Mode::Raw => {
                for (k, text) in texts.iter().enumerate() {
                    if k > 0 {
                        rest += text;
                    }
                    rest.push('\n');
                }
            }
            Mode::Json => {
                for (s, text) in strategies.iter().zip(&texts) {
                    let mut row = serde_json::Map::new();
                    let (name, t) = match *s {
                        Strategy::Temperature(t) => ("temperature", Some(t)),
                        Strategy::Greedy => ("greedy", None),
                        Strategy::Uniform => ("uniform", None),
                    };
                    row.insert("strategy".into(), name.into());
                    if let Some(t) = t {
                        row.insert("temperature".into(), t.into());
                    }
                    row.insert("seed".into(), seed.into());
                    row.insert("text".into(), text.as_str().into());
                    rest += &serde_json::Value::Object(row).to_string();
                    rest.push('\n');
                }
            }
        }
        self.write(&rest)
    }
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
    let rmsprop = ckpt.params.zeros_like();
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
    let loss = mean_loss(engine.as_mut(), &starts, a.batch_size, &mut |k, loss| {
        // JSON has no NaN or infinity (serde_json would print null): a loss
        // that is not a number is an error, named where it first appears.
        if !loss.is_finite() {
            bar.finish_and_clear();
            let first = k * a.batch_size;
            return Err(Error::BadPrediction {
                what: format!(
                    "the mean loss of batch {} of {chunks} (windows {} to {}) is {loss}",
                    k + 1,
                    first + 1,
                    (first + a.batch_size).min(starts.len())
                ),
            });
        }
        bar.inc(1);
        Ok(())
    })?;
    bar.finish_and_clear();
    println!(
        "{}",
        serde_json::json!({ "loss": loss, "windows": windows.count })
    );
    Ok(ExitCode::SUCCESS)
}
