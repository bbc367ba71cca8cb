//! Hyper-parameters, parameter layout, initialisation, checkpoints and the
//! trained [`Model`](crate::Model).

mod checkpoint;
mod hyper;
mod init;
mod mode;
mod params;
mod run;

pub use checkpoint::{Checkpoint, StreamState, TrainState};
pub use hyper::{Hyper, MAX_HIDDEN, MAX_LAYERS};
pub use init::{init_params, init_stacked};
pub use mode::{DEFAULT_SEQ_LEN, TrainMode};
pub use params::{
    GATE_C, GATE_F, GATE_I, GATE_O, Grads, LayerTensor, NamedRange, ParamLayout, Params,
    TENSOR_NAMES, Tensor,
};
pub use run::{BUILT_IN_SOURCE, CorpusRecord, DivergenceRecord, Fingerprint, RunRecord};
