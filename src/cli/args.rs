//! The command line, with the Keras notebook's defaults and Keras' option names.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Train a character-level LSTM (Keras' Deep Learning with Python §8.1) and generate text.
#[derive(Parser, Debug)]
#[command(name = "charlstm-cuda", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Encode a text once as the bit-packed one-hot corpus file that `train` reads.
    #[command(
        after_help = "Examples:\n  charlstm-cuda prepare nietzsche.txt -o nietzsche.ohc\n  \
        charlstm-cuda train --corpus nietzsche.ohc --out runs/n"
    )]
    Prepare(PrepareArgs),
    /// Train the model; checkpoints, metrics.jsonl and samples after every epoch.
    #[command(allow_negative_numbers = true)]
    #[command(after_help = "Examples:\n  charlstm-cuda train --epochs 1\n  \
        charlstm-cuda train --corpus my.txt --out runs/my --epochs 20\n  \
        charlstm-cuda train --out runs/my --resume --epochs 40\n  \
        charlstm-cuda train --corpus my.txt --out runs/s --mode stream --seq-len 60 --val-fraction 0.1 --device cpu\n  \
        charlstm-cuda train --config run.toml --epochs 5    (flags override the file)\n  \
        charlstm-cuda train --corpus my.txt --layers 2 --hidden 256 --dropout 0.2 --device cpu\n  \
        charlstm-cuda train --corpus my.txt --json | jq .loss")]
    Train(Box<TrainArgs>),
    /// Generate text from a checkpoint.
    #[command(allow_negative_numbers = true)]
    #[command(after_help = "Examples:\n  \
        charlstm-cuda generate --checkpoint runs/n/last.safetensors --corpus nietzsche.txt\n  \
        charlstm-cuda generate --checkpoint runs/n/last.safetensors --seed-text \"the will to power\" \\\n    \
        --temperature 0.5 --length 400\n  \
        charlstm-cuda generate --checkpoint runs/n/epoch-010.safetensors --strategy greedy\n  \
        charlstm-cuda generate --checkpoint runs/n/last.safetensors --temperature 0.5 --length 2000 --raw > sample.txt")]
    Generate(GenerateArgs),
    /// Mean cross-entropy of a checkpoint over every window of a text, as JSON.
    #[command(after_help = "Examples:\n  \
        charlstm-cuda eval --checkpoint runs/n/last.safetensors --corpus nietzsche.txt\n  \
        charlstm-cuda eval --checkpoint runs/n/last.safetensors --corpus held-out.txt --device cuda")]
    Eval(EvalArgs),
    /// Show what a checkpoint holds: model, vocabulary, hyper-parameters, progress, run settings.
    #[command(after_help = "Examples:\n  \
        charlstm-cuda inspect runs/n/last.safetensors\n  \
        charlstm-cuda inspect runs/n/epoch-003.safetensors --json | jq .vocab")]
    Inspect(super::inspect::InspectArgs),
    /// One self-contained HTML page about a run: loss chart, hyper-parameters, throughput, samples.
    #[command(after_help = "Examples:\n  charlstm-cuda report --out runs/n\n  \
        charlstm-cuda report --out runs/n -o /tmp/n.html")]
    Report(super::report::ReportArgs),
    /// Print a shell completion script to stdout.
    #[command(after_help = "Examples:\n  \
        charlstm-cuda completions bash > ~/.local/share/bash-completion/completions/charlstm-cuda\n  \
        charlstm-cuda completions zsh > ~/.zfunc/_charlstm-cuda\n  \
        charlstm-cuda completions fish > ~/.config/fish/completions/charlstm-cuda.fish\n  \
        charlstm-cuda completions powershell >> $PROFILE")]
    Completions(super::report::CompletionsArgs),
    /// Time a training step, an epoch slice and generation per backend, as JSON.
    #[command(allow_negative_numbers = true)]
    #[command(
        after_help = "Prints the JSON report on stdout and the same as a table, \
        with per-recurrent-step latencies and ratios, on stderr.\n\nExamples:\n  \
        charlstm-cuda bench --device cpu,cuda\n  \
        charlstm-cuda bench --corpus nietzsche.txt --steps 50 --slice-batches 200\n  \
        charlstm-cuda bench --device cpu --layers 2 --hidden 256 --dropout 0.2\n  \
        python3 scripts/bench_pytorch.py --corpus nietzsche.txt --full-epoch > pt.json\n  \
        charlstm-cuda bench --device cuda --corpus nietzsche.txt --pytorch pt.json --full-epoch"
    )]
    Bench(BenchArgs),
    /// Check every kernel, and a few training steps, against the CPU reference on a device.
    #[command(after_help = "Exits 0 only if every check passes. Inputs are random, \
        drawn from a fresh seed each run (printed); --seed replays one.\n\nExamples:\n  \
        charlstm-cuda selftest\n  charlstm-cuda selftest --device sim --seed 42 --json\n  \
        charlstm-cuda selftest --device sim --full-shape")]
    Selftest(SelftestArgs),
    /// Write a checkpoint's weights for Keras (.npz) or PyTorch (.safetensors).
    #[command(
        after_help = "The file carries the vocabulary and maxlen too; docs/interop.md \
        shows the few lines of Python that load it.\n\nExamples:\n  \
        charlstm-cuda export --checkpoint runs/n/last.safetensors -o n.npz\n  \
        charlstm-cuda export --checkpoint runs/n/last.safetensors --format pytorch -o n.pt.safetensors"
    )]
    Export(ExportArgs),
    /// Make a checkpoint from Keras (.npz) or PyTorch (.safetensors) weights.
    #[command(
        after_help = "A file from `export` needs nothing else. Weights saved by Keras \
        (np.savez(path, *model.get_weights())) or PyTorch \
        (safetensors.torch.save_file(model.state_dict(), path)) need the vocabulary: \
        --vocab-from the training text, a prepared corpus or a checkpoint.\n\nExamples:\n  \
        charlstm-cuda import n.npz -o runs/k/last.safetensors\n  \
        charlstm-cuda import --format pytorch torch.safetensors --vocab-from nietzsche.txt -o t.safetensors"
    )]
    Import(ImportArgs),
}

// The values `--device` takes, listed to clap so that shell completion
// offers them (instead of file names) and a typo lists them. A value a
// command refuses for a reason of its own (`bench --device auto`: it
// compares named backends; `selftest --device cpu`: no kernels to check) is
// accepted here, hidden, so that the command's error says why.
const DEVICES: [&str; 4] = ["auto", "cpu", "cuda", "sim"];

// The values `--mode` takes (`TrainMode`).
const TRAIN_MODES: [&str; 2] = ["window", "stream"];

// The values `--recurrence` takes (`LstmPath`).
const RECURRENCES: [&str; 4] = ["auto", "per-step", "persistent", "cluster"];

// The values `--gen-mode` takes (`sample::GenMode`).
const GEN_MODES: [&str; 2] = ["window", "stateful"];

fn devices(hidden: &'static str) -> clap::builder::PossibleValuesParser {
    DEVICES
        .iter()
        .map(|&d| clap::builder::PossibleValue::new(d).hide(d == hidden))
        .collect::<Vec<_>>()
        .into()
}

/// The framework of `export` / `import`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    /// Keras 3: an .npz of the arrays `model.set_weights()` takes.
    Keras,
    /// PyTorch: a safetensors state dict of `lstm` (nn.LSTM) and `fc` (nn.Linear).
    Pytorch,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A checkpoint written by `train` or `import`, or a run directory
    /// of `train` (its last.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// keras or pytorch [default: from the output's extension, .npz or .safetensors].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Where to write the weights.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output even when it is a training checkpoint or a file of
    /// a run directory (never when it is one of the inputs).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The weights: an .npz (keras) or a .safetensors (pytorch).
    pub file: PathBuf,
    /// keras or pytorch [default: from the file's extension].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Vocabulary source when the file has none: a checkpoint (.safetensors, also gives
    /// maxlen and case), a prepared corpus or the training text.
    #[arg(long, value_name = "PATH")]
    pub vocab_from: Option<PathBuf>,
    /// Window length [default: the file's, else --vocab-from's checkpoint's, else 60].
    #[arg(long)]
    pub maxlen: Option<usize>,
    /// The model was trained on text that kept its case (Keras lower-cases).
    #[arg(long)]
    pub keep_case: bool,
    /// The checkpoint to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output even when it is a training checkpoint or a file of
    /// a run directory (never when it is one of the inputs).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// The UTF-8 text to encode.
    pub text: PathBuf,
    /// Where to write the prepared corpus.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output even when it is a training checkpoint or a file of
    /// a run directory (never when it is one of the inputs).
    #[arg(long)]
    pub force: bool,
    /// Keep upper case (Keras lower-cases).
    #[arg(long)]
    pub keep_case: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// TOML file of train options, keys named like the flags (batch_size = 64); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Text or prepared corpus; default: the Keras example's Nietzsche text, built in
    /// (with --resume: the run's own, as saved in its checkpoint).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Directory for checkpoints and metrics [default: runs/<corpus name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run saved in --out, or in DIR (same corpus, settings, data order and
    /// random streams).
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub resume: Option<Option<PathBuf>>,
    /// Epochs in total (with --resume: the new total) [default: 60].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Windows per batch [default: 128].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Batches per epoch at most (default: the whole corpus).
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    /// Keep only the newest N epoch checkpoints (default: all; last.safetensors always).
    #[arg(long, value_name = "N")]
    pub keep_checkpoints: Option<usize>,
    /// An epoch loss above this factor x the best epoch's counts as divergence (inf: only NaN/inf) [default: 2].
    #[arg(long, value_name = "F")]
    pub divergence_factor: Option<f64>,
    /// On divergence: stop (keep the good checkpoints) or rollback (best epoch, half the --lr) [default: stop].
    #[arg(long, value_name = "ACTION")]
    pub on_divergence: Option<String>,
    /// Hold out the last fraction F of the text for validation (0 to below 1):
    /// a validation loss after every epoch, best.safetensors, --patience [default: 0, none;
    /// with --resume: the run's].
    #[arg(long, value_name = "F")]
    pub val_fraction: Option<f64>,
    /// Stop after N epochs without a new best validation loss (needs --val-fraction) [default: never].
    #[arg(long, value_name = "N")]
    pub patience: Option<usize>,
    /// What a batch is: window (shuffled windows, one target each: the notebook) or stream
    /// (B contiguous streams, the next --seq-len characters of each, a target at every step,
    /// the state carried between batches; on every device) [default: window; with
    /// --resume: the run's].
    #[arg(long, value_parser = TRAIN_MODES)]
    pub mode: Option<String>,
    /// Steps of a stream batch, with --mode stream [default: 60].
    #[arg(long, value_name = "L")]
    pub seq_len: Option<usize>,
    /// Characters per window [default: 60].
    #[arg(long)]
    pub maxlen: Option<usize>,
    /// Distance between window starts [default: 3].
    #[arg(long)]
    pub step: Option<usize>,
    /// LSTM units per layer, at most 1024 [default: 128].
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Stacked LSTM layers, 1 to 16, on every device [default: 1].
    #[arg(long, value_name = "N")]
    pub layers: Option<usize>,
    /// Dropout probability in [0, 1) between stacked layers, in training only (needs --layers 2
    /// or more to do anything) [default: 0].
    #[arg(long, value_name = "P")]
    pub dropout: Option<f32>,
    /// RMSprop learning rate [default: 0.01].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Seed of initialisation, shuffling and sampling [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Scale the gradients down to this global L2 norm when it is exceeded
    /// (PyTorch's clip_grad_norm_); default: never clip; inf turns it off on --resume.
    #[arg(long, value_name = "C")]
    pub clip_norm: Option<f32>,
    /// Temperatures of the after-epoch samples [default: 0.2,0.5,1.0,1.2].
    #[arg(long, value_delimiter = ',')]
    pub temperatures: Option<Vec<f64>>,
    /// Characters per after-epoch sample, at most 1000000; 0 skips sampling [default: 400].
    #[arg(long)]
    pub gen_length: Option<usize>,
    /// How the after-epoch samples are made: window (the notebook) or stateful
    /// (one LSTM step per character) [default: window].
    #[arg(long, value_parser = GEN_MODES)]
    pub gen_mode: Option<String>,
    /// Keep upper case (Keras lower-cases).
    #[arg(long)]
    pub keep_case: bool,
    /// Compute backend: auto, cpu, cuda or sim [default: auto; with --resume: the run's].
    #[arg(long, value_parser = devices(""))]
    pub device: Option<String>,
    /// Which kernels run the LSTM recurrence on cuda or sim: auto (persistent where H fits,
    /// else per-step), per-step, persistent, or cluster (Hopper, H a multiple of 64 up to
    /// 256). Speed only: every choice gives the same weights [default: auto; not kept on
    /// --resume].
    #[arg(long, value_name = "KERNELS", value_parser = RECURRENCES)]
    pub recurrence: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// One JSON object per epoch on stdout (the fields of metrics.jsonl) instead of text; no progress bar.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyArg {
    /// Re-weight by temperature, then draw (the notebook).
    Temperature,
    /// Always the most probable character.
    Greedy,
    /// Every character equally likely.
    Uniform,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A checkpoint written by `train`, or a run directory of `train`
    /// (its last.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Text to start from (default: a random window of --corpus, else a random character).
    #[arg(long)]
    pub seed_text: Option<String>,
    /// Corpus to pick a random seed window from.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Temperatures, one sample each.
    #[arg(
        long = "temperature",
        value_delimiter = ',',
        default_value = "0.2,0.5,1.0,1.2"
    )]
    pub temperatures: Vec<f64>,
    /// Characters to generate per sample, at most 1000000 (docs/cli.md says why).
    #[arg(long, default_value_t = 400)]
    pub length: usize,
    /// How the next character is picked.
    #[arg(long, value_enum, default_value = "temperature")]
    pub strategy: StrategyArg,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// window: re-run the last maxlen characters for every character (the notebook);
    /// stateful: prime on the seed once, then one LSTM step per character (char-rnn).
    #[arg(long, default_value = "window", value_parser = GEN_MODES)]
    pub gen_mode: String,
    /// Compute backend: auto, cpu, cuda or sim.
    #[arg(long, default_value = "auto", value_parser = devices(""))]
    pub device: String,
    /// No progress bar (generate shows none; accepted as on train and eval).
    #[arg(long, short)]
    pub quiet: bool,
    /// Print only the generated characters, each sample ended by a newline: no
    /// seed, no labels (for pipes; char-rnn's `sample.lua -verbose 0`).
    #[arg(long, visible_alias = "text-only")]
    pub raw: bool,
    /// One JSON object per sample on stdout (strategy, temperature, seed, text).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A checkpoint written by `train`, or a run directory of `train`
    /// (its last.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Text (or prepared corpus) to evaluate on.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Windows per batch.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
    /// Compute backend: auto, cpu, cuda or sim.
    #[arg(long, default_value = "auto", value_parser = devices(""))]
    pub device: String,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Text or prepared corpus; default: the Keras example's Nietzsche text, built in.
    #[arg(long)]
    pub corpus: Option<std::path::PathBuf>,
    /// Backends to compare, in order: cpu, cuda, sim.
    #[arg(long, value_delimiter = ',', default_value = "cpu,cuda", value_parser = devices("auto"))]
    pub device: Vec<String>,
    /// Timed training steps (median reported).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Consecutive batches timed as an epoch slice.
    #[arg(long, default_value_t = 20)]
    pub slice_batches: usize,
    /// Characters generated per temperature.
    #[arg(long, default_value_t = 400)]
    pub gen_length: usize,
    /// Temperatures generated at once.
    #[arg(long, value_delimiter = ',', default_value = "0.2,0.5,1.0,1.2")]
    pub temperatures: Vec<f64>,
    /// Windows per batch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// LSTM units per layer, at most 1024.
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Stacked LSTM layers, 1 to 16 (as train's --layers).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub layers: usize,
    /// Dropout probability in [0, 1) between stacked layers, in the timed
    /// training steps (as train's --dropout).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub dropout: f32,
    /// Characters per window.
    #[arg(long, default_value_t = 60)]
    pub maxlen: usize,
    /// Which kernels run the LSTM recurrence on the cuda and sim rows (as train's
    /// --recurrence; the cpu row has one).
    #[arg(long, value_name = "KERNELS", default_value = "auto", value_parser = RECURRENCES)]
    pub recurrence: String,
    /// Also train one whole shuffled epoch per backend (a fresh model, as
    /// `train --epochs 1`): its time and mean loss.
    #[arg(long)]
    pub full_epoch: bool,
    /// PyTorch's numbers for the same job (the JSON scripts/bench_pytorch.py
    /// prints): adds a pytorch row and PyTorch / ours ratios.
    #[arg(long, value_name = "FILE")]
    pub pytorch: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// Device to check: cuda or sim [default: cuda when a GPU is usable, else sim].
    #[arg(long, value_parser = devices("cpu"))]
    pub device: Option<String>,
    /// Seed of the random inputs (default: a fresh one, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Instead of every kernel: a training step and generation at the Keras
    /// shape (V 57, H 128, B 128, T 60), about 35 s on the simulator.
    #[arg(long)]
    pub full_shape: bool,
}
