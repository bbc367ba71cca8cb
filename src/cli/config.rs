//! `train --config FILE.toml`: the train flags as a file.
//!
//! Keys are the flags' names with underscores (`batch_size = 64`; the
//! dashed spelling is accepted too). A flag given on the command line wins
//! over the file, so one file can hold a setup and a flag can vary it; clap
//! tells the two apart by each value's source. Unknown keys are an error
//! naming the key, so a typo never silently trains with a default.
//! Relative paths (`corpus`, `out`) are relative to the file's directory,
//! like Cargo's, so a run file works from wherever it is launched.

use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;

use charlstm_cuda::{Error, Result};

use super::args::TrainArgs;

/// Every key a config file may hold: the train flags except `--config`.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct TrainFile {
    corpus: Option<PathBuf>,
    out: Option<PathBuf>,
    resume: Option<bool>,
    epochs: Option<usize>,
    #[serde(alias = "batch-size")]
    batch_size: Option<usize>,
    #[serde(alias = "steps-per-epoch")]
    steps_per_epoch: Option<usize>,
    #[serde(alias = "keep-checkpoints")]
    keep_checkpoints: Option<usize>,
    #[serde(alias = "divergence-factor")]
    divergence_factor: Option<f64>,
    #[serde(alias = "on-divergence")]
    on_divergence: Option<String>,
    #[serde(alias = "clip-norm")]
    clip_norm: Option<f32>,
    #[serde(alias = "val-fraction")]
    val_fraction: Option<f64>,
    patience: Option<usize>,
    mode: Option<String>,
    #[serde(alias = "seq-len")]
    seq_len: Option<usize>,
    maxlen: Option<usize>,
    step: Option<usize>,
    hidden: Option<usize>,
    layers: Option<usize>,
    dropout: Option<f32>,
    lr: Option<f32>,
    seed: Option<u64>,
    temperatures: Option<Vec<f64>>,
    #[serde(alias = "gen-length")]
    gen_length: Option<usize>,
    #[serde(alias = "gen-mode")]
    gen_mode: Option<String>,
    #[serde(alias = "keep-case")]
    keep_case: Option<bool>,
    device: Option<String>,
    recurrence: Option<String>,
    quiet: Option<bool>,
    json: Option<bool>,
}

/// Fills `a` from its `--config` file, where no flag on the command line
/// (`matches`, the train subcommand's) set the value already.
pub fn apply(a: &mut TrainArgs, matches: &ArgMatches) -> Result<()> {
    let Some(path) = a.config.clone() else {
        return Ok(());
    };
    let limit = charlstm_cuda::io::Limit {
        bytes: charlstm_cuda::io::CONFIG_LIMIT,
        what: "a --config file",
        fix: "pass a TOML file of train options (a few lines; see docs/files.md#config-files)",
    };
    let bytes = charlstm_cuda::io::read_bounded(&path, limit)?;
    let text = String::from_utf8(bytes).map_err(|e| Error::InvalidArgument {
        name: "--config",
        what: format!(
            "{}: not UTF-8 text (first bad byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ),
    })?;
    let file: TrainFile = toml::from_str(&text).map_err(|e| {
        let message = e.message().trim_end();
        let line = match duplicate_lines(&text, message) {
            Some((first, again)) => Some(format!(" line {again} (first set on line {first})")),
            None => e.span().map(|s| {
                let l = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" line {l}")
            }),
        };
        Error::InvalidArgument {
            name: "--config",
            what: format!(
                "{}{}: {}",
                path.display(),
                line.unwrap_or_default(),
                shorter(message)
            ),
        }
    })?;
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let relative = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
    let flag = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    // `$field` is both the TOML key and clap's id of the flag.
    macro_rules! take {
        ($field:ident) => {
            if let Some(v) = file.$field
                && !flag(stringify!($field))
            {
                a.$field = v;
            }
        };
        ($field:ident, some) => {
            if let Some(v) = file.$field
                && !flag(stringify!($field))
            {
                a.$field = Some(v);
            }
        };
    }
    // `resume = true` is the bare flag (the run in `out`).
    if let Some(r) = file.resume
        && !flag("resume")
    {
        a.resume = r.then_some(None);
    }
    take!(epochs, some);
    take!(batch_size, some);
    take!(steps_per_epoch, some);
    take!(keep_checkpoints, some);
    take!(divergence_factor, some);
    take!(on_divergence, some);
    take!(clip_norm, some);
    take!(val_fraction, some);
    take!(patience, some);
    take!(mode, some);
    take!(seq_len, some);
    take!(maxlen, some);
    take!(step, some);
    take!(hidden, some);
    take!(layers, some);
    take!(dropout, some);
    take!(lr, some);
    take!(seed, some);
    take!(temperatures, some);
    take!(gen_length, some);
    take!(gen_mode, some);
    take!(keep_case);
    take!(device, some);
    take!(recurrence, some);
    take!(quiet);
    take!(json);
    if let Some(p) = file.corpus
        && !flag("corpus")
    {
        a.corpus = Some(relative(p));
    }
    if let Some(p) = file.out
        && !flag("out")
    {
        a.out = Some(relative(p));
    }
    Ok(())
}

/// The lines of the first two settings of the key serde calls a duplicate
/// field: `batch_size` and its alias `batch-size` are one field to serde,
/// two keys to TOML, so the parser's span is the whole table (line 1).
fn duplicate_lines(text: &str, message: &str) -> Option<(usize, usize)> {
    let field = message
        .strip_prefix("duplicate field `")?
        .split('`')
        .next()?;
    let dashed = field.replace('_', "-");
    let mut lines = text.lines().enumerate().filter_map(|(i, line)| {
        let key = line
            .split_once('=')?
            .0
            .trim()
            .trim_matches(|c| c == '"' || c == '\'');
        (key == field || key == dashed).then_some(i + 1)
    });
    Some((lines.next()?, lines.next()?))
}

/// serde lists every accepted key, each dashed alias too; the underscored
/// names are enough to see the typo.
fn shorter(message: &str) -> String {
    let Some((head, keys)) = message.split_once(", expected one of ") else {
        return message.to_string();
    };
    let keys: Vec<&str> = keys
        .split(", ")
        .map(|k| k.trim_matches('`'))
        .filter(|k| !k.contains('-'))
        .collect();
    format!("{head}; the keys are {}", keys.join(", "))
}
