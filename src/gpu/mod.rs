//! GPU side: the embedded kernels, their generated contract, the device seam
//! and one launcher per kernel file (`kernels/NAME.cu` <-> `src/gpu/NAME.rs`;
//! the LSTM's three, `lstm.cu`, `lstm_persistent.cu` and `wgrad.cu`, under
//! `src/gpu/lstm/` as `cell.rs`, `persistent.rs` and `wgrad.rs`; the stack of
//! layers over them, `lstm/stack.rs`, also runs `gemm.cu` and `dropout.cu`).

pub mod batch;
mod buffers;
pub mod contract;
pub mod cuda_device;
pub mod device;
pub mod dropout;
pub mod engine;
pub mod gemm;
pub mod generate;
pub mod head;
pub mod lstm;
pub mod model;
pub mod ptx;
pub mod rmsprop;
pub mod selftest;
pub mod sim_device;

pub use cuda_device::CudaDevice;
pub use device::{DeviceError, DevicePtr, GpuDevice, GraphId, KernelArg, LaunchConfig};
pub use engine::{GPU_PATH_NOTICE, GpuEngine};
pub use model::GpuModel;
pub use sim_device::SimDevice;

/// Refuses a model of more than one LSTM layer on `backend` (sim or cuda):
/// the kernels run the notebook's one layer over one-hot input with the
/// loss at the last step only (issue 17's next step), so a stack trains
/// and generates on the CPU for now.
pub fn one_layer_only(backend: crate::engine::Backend, layers: usize) -> crate::Result<()> {
    if layers <= 1 {
        return Ok(());
    }
    Err(crate::Error::Conflict {
        what: format!(
            "--layers {layers} runs on the CPU only for now, not on --device {}: the GPU \
             kernels for a dense input and a gradient at every step are not in this build",
            backend.name()
        ),
        fix: "use --device cpu (or train with --layers 1)".into(),
    })
}
