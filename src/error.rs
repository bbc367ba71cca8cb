//! The crate's one error type. Every variant names the problem; [`Error::hint`]
//! names the fix, so the CLI can print both on two short lines.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, from a missing file to a NaN loss.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 { path: PathBuf, offset: usize },
    #[error("{path}: the text is empty")]
    EmptyText { path: PathBuf },
    #[error("the text has {chars} characters, fewer than one window needs ({needed} = maxlen + 1)")]
    TextTooShort { chars: usize, needed: usize },
    #[error("{path}: not a valid prepared corpus file: {what}")]
    CorpusFormat { path: PathBuf, what: String },
    #[error("{path}: not a valid checkpoint: {what}")]
    Checkpoint { path: PathBuf, what: String },
    #[error("invalid value for {name}: {what}")]
    InvalidArgument { name: &'static str, what: String },
    #[error("character {ch:?} is not in the model's vocabulary")]
    UnknownChar { ch: char },
    #[error("the loss became {value} at epoch {epoch}, batch {batch}")]
    NonFiniteLoss {
        epoch: usize,
        batch: usize,
        value: f32,
    },
    #[error("training diverged: {what}")]
    Diverged { what: String },
    #[error("could not download {url}: {what}")]
    Download { url: String, what: String },
    #[error("the {backend} backend is not available: {what}")]
    BackendUnavailable { backend: &'static str, what: String },
    #[error("{path}: looks like a binary file (NUL byte at offset {offset}), not text")]
    BinaryText { path: PathBuf, offset: usize },
    #[error("the model's prediction is unusable: {what}")]
    BadPrediction { what: String },
    #[error(transparent)]
    Device(#[from] crate::gpu::device::DeviceError),
    #[error("PTX simulator, kernel {kernel}: {what}")]
    Sim { kernel: String, what: String },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// One line telling the user how to fix the problem.
    pub fn hint(&self) -> String {
        match self {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                "check the path; pass an existing file".into()
            }
            Error::Io { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::StorageFull
                        | std::io::ErrorKind::QuotaExceeded
                        | std::io::ErrorKind::FileTooLarge
                ) =>
            {
                "free disk space (or write elsewhere with --out) and resume; files are written to a \
                 temporary file and renamed into place, so the ones written before are intact"
                    .into()
            }
            Error::Io { .. } => "check the path, its permissions and the free disk space".into(),
            Error::InvalidUtf8 { .. } => {
                "pass a UTF-8 text file (convert it with `iconv -t UTF-8`)".into()
            }
            Error::EmptyText { .. } => "pass a file that contains text".into(),
            Error::TextTooShort { .. } => {
                "pass a longer text or a smaller --maxlen".into()
            }
            Error::CorpusFormat { .. } => {
                "recreate it with `charlstm-cuda prepare TEXT -o FILE`, or pass the text file itself".into()
            }
            Error::Checkpoint { .. } => {
                "pass a .safetensors checkpoint written by `charlstm-cuda train` (an earlier epoch's file may still be good)".into()
            }
            Error::InvalidArgument { .. } => "see `charlstm-cuda help` for the allowed values".into(),
            Error::UnknownChar { .. } => {
                "use only characters of the training text (see the checkpoint's vocab)".into()
            }
            Error::NonFiniteLoss { .. } => {
                "the last good checkpoint is kept; resume from it with a smaller --lr".into()
            }
            Error::Diverged { .. } => {
                "the checkpoints of the good epochs are kept; resume from last.safetensors with a \
                 smaller --lr, or train with --on-divergence rollback"
                    .into()
            }
            Error::Download { .. } => {
                "when offline, pass the text with --corpus FILE".into()
            }
            // Without kernels the fix is a rebuild, which the message says.
            Error::BackendUnavailable { backend: "cuda", .. } if crate::gpu::ptx::BUILT_WITH_KERNELS => {
                "install or update the NVIDIA driver (580 or newer; `nvidia-smi` should list the GPU), \
                 or use --device cpu (or --device sim to run the kernels on the simulator)"
                    .into()
            }
            Error::BackendUnavailable { .. } => "use --device cpu".into(),
            Error::BinaryText { .. } => {
                "pass a UTF-8 text file (UTF-16 text converts with `iconv -f UTF-16 -t UTF-8`)".into()
            }
            Error::BadPrediction { .. } => {
                "the checkpoint may hold NaN weights (use an earlier epoch's file), or try --device cpu".into()
            }
            Error::Device(e) => e.hint().into(),
            Error::Sim { .. } => {
                "the kernel (or its launch) has a bug the simulator caught: fix it at the PTX line named (compare `nvcc --ptx` output with the .cu source)".into()
            }
        }
    }
}
