//! What a command may write over: never one of its own inputs, and not a
//! file a training run depends on unless `--force` says so.
//!
//! Why two rules: `cp a a` refuses ("are the same file") even with `-f`,
//! because the copy would destroy what it reads, and so does every command
//! here (there is never a reason to; write elsewhere, then `mv`). Replacing
//! some other existing file is what `cp`, Keras' `model.save` and
//! `torch.save` do without asking, and so do `prepare`, `export` and
//! `import`, except over a training checkpoint (RMSprop state and a
//! position, which `train --resume` continues from and nothing can
//! recreate) or any existing file in a run directory: those need `--force`,
//! like `cp -i` answered with yes.

use std::path::Path;

use charlstm_cuda::model::TrainState;
use charlstm_cuda::rundir::{LAST_CHECKPOINT, METRICS_FILE};
use charlstm_cuda::{Error, Result};

/// Refuses `output` when it is one of `inputs` (the same file, through any
/// symlink or hard link), or, without `force`, a file a run depends on.
pub fn check(output: &Path, inputs: &[(&'static str, &Path)], force: bool) -> Result<()> {
    for &(role, input) in inputs {
        if same_file(output, input) {
            return Err(Error::OutputIsInput {
                output: output.into(),
                input: input.into(),
                role,
            });
        }
    }
    match run_file(output) {
        Some(what) if !force => Err(Error::OutputProtected {
            path: output.into(),
            what,
        }),
        _ => Ok(()),
    }
}

/// Whether two paths name one file (device and inode; any link resolved).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// What the existing file `path` is to a training run, if anything: a
/// training checkpoint, or a file in a run directory (one with
/// `metrics.jsonl` or a training `last.safetensors`).
fn run_file(path: &Path) -> Option<String> {
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    if let Some(s) = training_state(path) {
        return Some(format!(
            "a training checkpoint (epoch {}, batch {}, step {}) with the optimizer's state, \
             which `train --resume` continues from",
            s.epochs_done, s.batch, s.step
        ));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let run =
        dir.join(METRICS_FILE).is_file() || training_state(&dir.join(LAST_CHECKPOINT)).is_some();
    run.then(|| format!("a file of the training run in {}", dir.display()))
}

/// The position of a checkpoint that has trained (a step, or an epoch or
/// batch done), read from its header alone; `None` for anything else,
/// including an imported checkpoint (no training to lose).
fn training_state(path: &Path) -> Option<TrainState> {
    let meta = charlstm_cuda::io::safetensors_metadata(path)?;
    let state: TrainState = serde_json::from_str(meta.get("state")?.as_str()?).ok()?;
    (state.step > 0 || state.epochs_done > 0 || state.batch > 0).then_some(state)
}
