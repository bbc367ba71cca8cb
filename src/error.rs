//! The crate's one error type. Every variant names the problem; [`Error::hint`]
//! names the fix, so the CLI can print both on two short lines.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, from a missing file to a NaN loss.
///
/// `path` fields name the file concerned; `what` fields say what is wrong
/// in words meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A text file is not UTF-8.
    #[error("{path}: not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A text file holds no characters.
    #[error("{path}: the text is empty")]
    EmptyText {
        /// The file.
        path: PathBuf,
    },
    /// The text cannot make one window.
    #[error("the text has {chars} characters, fewer than one window needs ({needed} = maxlen + 1)")]
    TextTooShort {
        /// Characters in the text.
        chars: usize,
        /// Characters one window and its target need.
        needed: usize,
    },
    /// A prepared corpus file is malformed.
    #[error("{path}: not a valid prepared corpus file: {what}")]
    CorpusFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A checkpoint file is malformed or corrupt.
    #[error("{path}: not a valid checkpoint: {what}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A zip archive (a Keras `.npz` weight file) given where a checkpoint
    /// was expected.
    #[error(
        "{path}: is a zip archive, as a Keras .npz weight file is, not a safetensors checkpoint"
    )]
    NotACheckpoint {
        /// The file.
        path: PathBuf,
    },
    /// An argument is out of range.
    ///
    /// `name` is the value as the library calls it (`hyper.lr`,
    /// `config.temperatures`, `temperature`, `device`), never a command-line
    /// flag: the `charlstm-cuda` binary shows its own flag instead
    /// (`--lr`, `--temperatures`), from one table of its own.
    #[error("invalid value for {name}: {what}")]
    InvalidArgument {
        /// The field or parameter.
        name: &'static str,
        /// The value and what is allowed.
        what: String,
    },
    /// Text to encode holds a character the model does not know.
    #[error("character {ch:?} is not in the model's vocabulary")]
    UnknownChar {
        /// The character.
        ch: char,
    },
    /// A batch's loss was NaN or infinite.
    #[error("the loss became {value} at epoch {epoch}, batch {batch}")]
    NonFiniteLoss {
        /// Epoch, 1-based.
        epoch: usize,
        /// Batch within the epoch, 1-based.
        batch: usize,
        /// The loss.
        value: f32,
    },
    /// The divergence guard stopped the run.
    #[error("training diverged: {what}")]
    Diverged {
        /// What diverged, and how often the run was rolled back.
        what: String,
    },
    /// A backend cannot run in this build or on this machine.
    #[error("the {backend} backend is not available: {what}")]
    BackendUnavailable {
        /// `cpu`, `cuda` or `sim`.
        backend: &'static str,
        /// Why not.
        what: String,
    },
    /// A GPU backend asked of a build compiled without nvcc.
    #[error(
        "the {backend} backend is not available: this build has no CUDA kernels (nvcc was not \
         found at build time); run `bash scripts/setup-cuda.sh` and rebuild"
    )]
    NoKernels {
        /// `cuda` or `sim`.
        backend: &'static str,
    },
    /// A "text" file looks binary.
    #[error("{path}: looks like a binary file (NUL byte at offset {offset}), not text")]
    BinaryText {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first NUL.
        offset: usize,
    },
    /// Probabilities that cannot be sampled (NaN, negative, all zero).
    #[error("the model's prediction is unusable: {what}")]
    BadPrediction {
        /// Which row and value.
        what: String,
    },
    /// The GPU (or the simulated one) failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The PTX simulator caught a kernel bug.
    #[error("PTX simulator, kernel {kernel}: {what}")]
    Sim {
        /// The kernel.
        kernel: String,
        /// The bug, with block, thread, PTX line and address.
        what: String,
    },
    /// A Keras or PyTorch weight file cannot be imported (or exported).
    #[error("{path}: not a usable {format} weight file: {what}")]
    Interop {
        /// The file.
        path: PathBuf,
        /// `keras` or `pytorch`.
        format: &'static str,
        /// What is wrong with it.
        what: String,
    },
    /// Another run holds the run directory (its `.lock`).
    #[error("{} is in use by another training run ({holder}; lock file {})", .lock.parent().unwrap_or(.lock).display(), .lock.display())]
    RunLocked {
        /// The lock file.
        lock: PathBuf,
        /// Who holds it: the pid and start, as far as known.
        holder: String,
    },
    /// `--resume` (or [`TrainerBuilder::resume`](crate::train::TrainerBuilder::resume))
    /// cannot continue the saved run as asked.
    #[error("cannot resume: {what}")]
    Resume {
        /// What does not match.
        what: String,
        /// What to do instead.
        fix: String,
    },
    /// An input holds more than its kind of file may (or never ends).
    #[error("{path}: more than {limit} bytes, the most {what} may hold")]
    InputTooLarge {
        /// The file.
        path: PathBuf,
        /// What it is meant to be ("a text corpus").
        what: &'static str,
        /// The limit in bytes.
        limit: u64,
        /// The hint.
        fix: &'static str,
    },
    /// A command's output file is one of its inputs.
    #[error(
        "{output}: is the same file as {role} {input}; writing it would replace the input \
         before anything else could read it"
    )]
    OutputIsInput {
        /// The output path as given.
        output: PathBuf,
        /// The input path as given.
        input: PathBuf,
        /// Which input ("the text", "--checkpoint").
        role: &'static str,
    },
    /// A command's output would replace a file a training run depends on.
    #[error("{path}: is {what}; replacing it would lose it")]
    OutputProtected {
        /// The output path.
        path: PathBuf,
        /// What the file is ("a training checkpoint (epoch 1, step 9, ...)").
        what: String,
    },
    /// Arguments that do not fit together (one would be ignored, two ask
    /// for different things, or a run asked for is already done).
    #[error("{what}")]
    Conflict {
        /// What does not fit.
        what: String,
        /// What to do instead.
        fix: String,
    },
    /// The PyTorch numbers given to `bench --pytorch` cannot be used.
    #[error("{path}: not a usable PyTorch bench result: {what}")]
    BenchInput {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// More characters asked of one generation than any generator makes.
    #[error("invalid value for {name}: {value} characters; at most {max} are generated at once")]
    TooLong {
        /// The parameter (`length`, `config.gen_length`); the CLI shows its flag.
        name: &'static str,
        /// The length asked for.
        value: usize,
        /// [`crate::sample::MAX_LENGTH`].
        max: usize,
    },
    /// A tensor handed to an op ([`crate::ops::Lstm`]) does not have the
    /// length its declared shape needs.
    #[error("{name} holds {got} values, but its shape {shape} needs {want}")]
    Shape {
        /// The argument (`x`, `h0`, `weights[1].kernel`, ...).
        name: String,
        /// The shape in letters and in numbers (`[T, B, In] = [60, 128, 57]`).
        shape: String,
        /// Its length.
        got: usize,
        /// The length the shape needs.
        want: usize,
    },
    /// A model's weights hold NaN or infinity: found when a checkpoint is
    /// read or a [`Model`](crate::Model) is made, so every backend and
    /// command refuses it alike.
    #[error(
        "{origin}: weight {tensor}[{index}] is {value}; a model with non-finite weights cannot predict"
    )]
    NonFiniteWeights {
        /// The checkpoint file, or "the model" for weights given in memory.
        origin: String,
        /// The first tensor holding one (`lstm.kernel`, `lstm_1.bias`, ...).
        tensor: String,
        /// Its position in that tensor (`row, column`).
        index: String,
        /// The value.
        value: f32,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// One line telling the user how to fix the problem, in the library's
    /// terms (fields and types, never a command-line flag: the CLI words
    /// its own hints in `cli::flags`).
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
                "free disk space (or write to another output directory) and resume; files are \
                 written to a temporary file and renamed into place, so the ones written before \
                 are intact"
                    .into()
            }
            Error::Io { .. } => "check the path, its permissions and the free disk space".into(),
            Error::InvalidUtf8 { .. } => {
                "pass a UTF-8 text file (convert it with `iconv -t UTF-8`)".into()
            }
            Error::EmptyText { .. } => "pass a file that contains text".into(),
            Error::TextTooShort { .. } => {
                "pass a longer text, or train with a smaller hyper.maxlen".into()
            }
            Error::CorpusFormat { .. } => {
                "recreate it with `charlstm-cuda prepare TEXT -o FILE`, or pass the text file itself".into()
            }
            Error::Checkpoint { .. } => {
                "pass a .safetensors checkpoint written by `charlstm-cuda train` (an earlier epoch's file may still be good)".into()
            }
            Error::NotACheckpoint { path } => format!(
                "turn the weights into a checkpoint first: charlstm-cuda import {} -o {}",
                path.display(),
                path.with_extension("safetensors").display()
            ),
            Error::InvalidArgument { name, .. } => match example(name) {
                Some(e) => format!("give {name} an allowed value, e.g. {e}"),
                None => format!("give {name} a value the message above allows"),
            },
            Error::UnknownChar { .. } => {
                "use only characters of the training text (`charlstm-cuda inspect CHECKPOINT` lists them)".into()
            }
            Error::NonFiniteLoss { .. } => {
                "the last good checkpoint is kept; resume from it with a smaller learning rate \
                 (Hyper::lr)"
                    .into()
            }
            Error::Diverged { .. } => {
                "the checkpoints of the good epochs, if any, are kept: resume from last.safetensors \
                 with a smaller learning rate (with none, start again with one), or roll back on \
                 divergence (DivergenceGuard::action = OnDivergence::Rollback)"
                    .into()
            }
            Error::BackendUnavailable { backend: "cuda", .. } => {
                "install or update the NVIDIA driver (580 or newer; `nvidia-smi` should list the GPU), \
                 or use the CPU backend (Backend::Cpu; Backend::Sim runs the kernels on the simulator)"
                    .into()
            }
            // The fix for the build is in the message (rebuild with nvcc);
            // what works now is the CPU.
            Error::BackendUnavailable { .. } | Error::NoKernels { .. } => {
                "use the CPU backend (Backend::Cpu)".into()
            }
            Error::BinaryText { .. } => {
                "pass a UTF-8 text file (UTF-16 text converts with `iconv -f UTF-16 -t UTF-8`)".into()
            }
            Error::BadPrediction { .. } => {
                "the checkpoint may hold NaN weights (use an earlier epoch's file), or try the CPU \
                 backend"
                    .into()
            }
            Error::Device(e) => e.hint().into(),
            Error::Interop { format: "keras", .. } => {
                "pass an .npz from `charlstm-cuda export --format keras`, or from Keras with \
                 np.savez(path, *model.get_weights())"
                    .into()
            }
            Error::Interop { .. } => {
                "pass a .safetensors from `charlstm-cuda export --format pytorch`, or from PyTorch \
                 with safetensors.torch.save_file(model.state_dict(), path)"
                    .into()
            }
            Error::InputTooLarge { fix, .. } => (*fix).into(),
            Error::OutputIsInput { .. } => {
                "write the output to another file; nothing overrides this, since writing would \
                 destroy what is read"
                    .into()
            }
            Error::OutputProtected { .. } => {
                "write to another file, or replace it on purpose (a resumed run cannot continue \
                 from what replaces it)"
                    .into()
            }
            Error::BenchInput { .. } => {
                "make it with scripts/bench_pytorch.py on the same text and shapes (hidden, batch, \
                 maxlen, generation length) as this bench, or compare without PyTorch's numbers"
                    .into()
            }
            Error::RunLocked { lock, .. } => format!(
                "wait for that run to end or stop it (Ctrl-C writes a checkpoint), or train into \
                 another directory; if no run is using it, delete {}",
                lock.display()
            ),
            Error::Resume { fix, .. } | Error::Conflict { fix, .. } => fix.clone(),
            Error::Sim { .. } => {
                "the kernel (or its launch) has a bug the simulator caught: fix it at the PTX line named (compare `nvcc --ptx` output with the .cu source)".into()
            }
            Error::TooLong { max, .. } => format!(
                "ask for at most {max} characters; for a longer text, generate again with the \
                 end of this one as the seed text"
            ),
            Error::Shape { name, shape, .. } => format!(
                "pass {name} laid out as {shape}, row-major (the last axis fastest), or declare \
                 the sizes it has (T and B with the input, N, In and H with the Lstm)"
            ),
            Error::NonFiniteWeights { .. } => {
                "the run had diverged when this was saved: use an earlier epoch's checkpoint \
                 (epoch-NNN.safetensors in its run directory), or train again with a smaller \
                 learning rate"
                    .into()
            }
        }
    }
}

/// A value that `name` (a field of [`Error::InvalidArgument`]) accepts, as
/// an example for the hint: the notebook's default where there is one.
pub fn example(name: &str) -> Option<&'static str> {
    Some(match name {
        "hyper.maxlen" => "60",
        "hyper.step" => "3",
        "hyper.hidden" => "128",
        "hyper.batch" => "128",
        "hyper.lr" => "0.01",
        "hyper.rho" => "0.9",
        "hyper.eps" => "1e-7",
        "hyper.clip_norm" => "1.0",
        "hyper.layers" => "2",
        "hyper.dropout" => "0.2",
        "hyper.epochs" => "60",
        "temperature" | "config.temperatures" => "0.5",
        "config.steps_per_epoch" => "100",
        "config.keep_checkpoints" => "3",
        "config.val_fraction" => "0.1",
        "config.patience" => "5",
        "divergence.factor" => "2",
        "divergence.action" => "stop",
        "device" => "auto",
        "--recurrence" => "auto",
        "format" => "keras",
        "lstm.layers" => "2",
        "lstm.input" => "57",
        "lstm.hidden" => "128",
        "lstm.dropout" => "0.2",
        _ => return None,
    })
}

/// What a device backend (the simulator or a GPU) reports; converted into
/// [`Error::Device`]. Defined here, not in `gpu`, so that the crate's error
/// type depends on nothing above it; `gpu::device` re-exports it.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A launch asks for more shared memory per block than the device has.
    #[error(
        "kernel {kernel} needs {requested} bytes of shared memory per block (static + dynamic), \
         the device allows {limit}"
    )]
    SharedMemory {
        /// The kernel.
        kernel: &'static str,
        /// Bytes asked for, static and dynamic together.
        requested: usize,
        /// The device's opt-in limit per block.
        limit: u32,
    },
    /// A launcher was called with arguments its kernel cannot take (a bug).
    #[error("kernel {kernel}: bad launch arguments: {what}")]
    BadArguments {
        /// The kernel (or device operation).
        kernel: &'static str,
        /// What is wrong.
        what: String,
    },
    /// An allocation failed.
    #[error("device {device}: out of memory allocating {requested} bytes ({free} bytes free)")]
    OutOfMemory {
        /// The device's name.
        device: String,
        /// Bytes asked for.
        requested: usize,
        /// Bytes the device said were free.
        free: usize,
    },
    /// The packed corpus does not fit in device memory.
    #[error(
        "device {device}: the one-hot corpus ({bytes} bytes) does not fit in device memory \
         ({free} bytes free); the GPU engine uploads the whole corpus (streaming it in chunks \
         is not implemented)"
    )]
    CorpusTooLarge {
        /// The device's name.
        device: String,
        /// The packed corpus's size.
        bytes: usize,
        /// Bytes the device said were free.
        free: usize,
    },
    /// The model's shape exceeds what the kernels can run on this device.
    #[error(
        "a vocabulary of {vocab} symbols with {hidden} units is too large for the kernels on \
         device {device}: {what}"
    )]
    VocabTooLarge {
        /// The device's name.
        device: String,
        /// V.
        vocab: usize,
        /// H.
        hidden: usize,
        /// Which limit, and the largest V that fits.
        what: String,
    },
    /// The driver (or the simulator) failed an operation.
    #[error("device {device}: {what}")]
    Backend {
        /// The device's name.
        device: String,
        /// The operation and the driver's error.
        what: String,
    },
    /// A graph capture was misused: a host transfer, a synchronisation or
    /// a free while capturing, a replay of an unknown graph, or a device
    /// that cannot capture at all.
    #[error("device {device}: graph capture: {what}")]
    Capture {
        /// The device's name.
        device: String,
        /// The misuse.
        what: String,
    },
}

impl DeviceError {
    /// One line telling the user how to fix it, in the library's terms.
    pub fn hint(&self) -> &'static str {
        match self {
            DeviceError::SharedMemory { .. } => {
                "the model is too large for this kernel on this device; use a smaller hidden size or the CPU backend"
            }
            DeviceError::BadArguments { .. } => "this is a bug in charlstm-cuda; please report it",
            DeviceError::OutOfMemory { .. } => {
                "use a smaller batch or hidden size, free the GPU of other work, or use the CPU backend"
            }
            DeviceError::CorpusTooLarge { .. } => {
                "use the CPU backend (it maps the corpus file and reads only each batch's rows), or a shorter text"
            }
            DeviceError::VocabTooLarge { .. } => {
                "use the CPU backend (no limit on the vocabulary), a smaller hidden size, or a text with \
                 fewer distinct characters (lower-cased, rare symbols removed)"
            }
            DeviceError::Backend { .. } => "check the GPU driver, or use the CPU backend",
            DeviceError::Capture { .. } => "this is a bug in charlstm-cuda; please report it",
        }
    }
}
