//! `export` and `import`: a checkpoint's weights to and from Keras / PyTorch.

use std::path::Path;
use std::process::ExitCode;

use charlstm_cuda::corpus::{CorpusFile, Vocab, normalize};
use charlstm_cuda::interop::{self, ImportOptions};
use charlstm_cuda::{Checkpoint, Error, Format, Model, Result};

use super::args::{ExportArgs, FormatArg, ImportArgs};

/// `--format`, else what the file name says.
fn format_of(arg: Option<FormatArg>, path: &Path) -> Result<Format> {
    if let Some(f) = arg {
        return Ok(match f {
            FormatArg::Keras => Format::Keras,
            FormatArg::Pytorch => Format::Pytorch,
        });
    }
    Format::from_path(path).ok_or_else(|| Error::InvalidArgument {
        name: "--format",
        what: format!(
            "missing, and {} does not end in .npz (keras) or .safetensors (pytorch)",
            path.display()
        ),
    })
}

pub fn export(a: ExportArgs) -> Result<ExitCode> {
    let format = format_of(a.format, &a.output)?;
    super::output::check(&a.output, &[("--checkpoint", &a.checkpoint)], a.force)?;
    let model = Model::load(&a.checkpoint)?;
    create_parent(&a.output)?;
    interop::export(&model, format, &a.output)?;
    println!(
        "{}: {format} weights, {}{}",
        a.output.display(),
        sizes(&model),
        if model.lowercase() {
            ", lower-cased input"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn import(a: ImportArgs) -> Result<ExitCode> {
    let format = format_of(a.format, &a.file)?;
    let mut inputs = vec![("the weight file", a.file.as_path())];
    if let Some(from) = &a.vocab_from {
        inputs.push(("--vocab-from", from.as_path()));
    }
    super::output::check(&a.output, &inputs, a.force)?;
    let mut options = ImportOptions {
        maxlen: a.maxlen,
        lowercase: a.keep_case.then_some(false),
        ..ImportOptions::default()
    };
    if let Some(from) = &a.vocab_from {
        let (vocab, maxlen, lowercase) = vocab_from(from, !a.keep_case)?;
        options.vocab = Some(vocab);
        options.maxlen = options.maxlen.or(maxlen);
        options.lowercase = options.lowercase.or(Some(lowercase));
    }
    let model = interop::import(&a.file, format, &options)?;
    create_parent(&a.output)?;
    model.save(&a.output)?;
    println!(
        "{}: checkpoint from {format} weights {}, {}",
        a.output.display(),
        a.file.display(),
        sizes(&model)
    );
    Ok(ExitCode::SUCCESS)
}

/// What `export` and `import` say of the model: vocabulary, units, layers
/// and window length.
fn sizes(model: &Model) -> String {
    format!(
        "V={} H={} N={} maxlen={}",
        model.vocab().len(),
        model.hidden(),
        model.layers(),
        model.maxlen()
    )
}

/// The vocabulary (and, from a checkpoint, maxlen) of a checkpoint, a
/// prepared corpus or a text; lower-casing as the source says, or as asked
/// for a text.
fn vocab_from(path: &Path, lowercase: bool) -> Result<(Vocab, Option<usize>, bool)> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        let c = Checkpoint::load(path)?;
        let lowercase = c.hyper.lowercase;
        return Ok((Vocab::from_chars(c.vocab)?, Some(c.hyper.maxlen), lowercase));
    }
    match CorpusFile::read(path)? {
        CorpusFile::Prepared(c) => Ok((c.vocab().clone(), None, c.lowercase())),
        CorpusFile::Text(text) => {
            let text = normalize(&text, lowercase);
            Ok((Vocab::from_text(&text), None, lowercase))
        }
    }
}

/// `import -o runs/new/last.safetensors` should not need a `mkdir` first.
fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
        }
        _ => Ok(()),
    }
}
