//! GPU side: the embedded kernels, their generated contract, the device seam
//! and one launcher per kernel file (`kernels/NAME.cu` <-> `src/gpu/NAME.rs`;
//! the LSTM's three, `lstm.cu`, `lstm_persistent.cu` and `wgrad.cu`, under
//! `src/gpu/lstm/` as `cell.rs`, `persistent.rs` and `wgrad.rs`; the stack of
//! layers over them, `lstm/stack.rs`, also runs `gemm.cu` and `dropout.cu`);
//! the public LSTM op over that stack, `ops::LstmDevice` (`op.rs`, any
//! device) and `ops::LstmCuda` (`op_cuda.rs`, the caller's cudarc stream).

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
pub mod op;
pub mod op_cuda;
pub mod ptx;
pub mod rmsprop;
pub mod selftest;
pub mod sim_device;

pub use cuda_device::CudaDevice;
pub use device::{DeviceError, DevicePtr, GpuDevice, GraphId, KernelArg, LaunchConfig};
pub use engine::{GPU_PATH_NOTICE, GpuEngine};
pub use model::GpuModel;
pub use sim_device::SimDevice;
