//! Operations on the caller's tensors, for crates that bring their own data,
//! loss and optimizer and want a fast LSTM layer, the way PyTorch code
//! calls cuDNN: [`Lstm`] runs forward and backward of a stack of LSTM
//! layers over plain slices on the CPU (f32, or f64 for gradient checks).
//! The character trainer is one user of the same math, not the only one.
//!
//! ```
//! use charlstm_cuda::ops::{LayerParams, Lstm, LstmInput, Mode};
//!
//! let (t, b, input, hidden) = (5, 2, 3, 4);
//! let lstm = Lstm::new(2, input, hidden)?.with_dropout(0.1)?;
//! let params: Vec<LayerParams<f32>> = (0..2)
//!     .map(|l| {
//!         let mut p = LayerParams::zeros(lstm.layer_input(l), hidden);
//!         p.kernel.iter_mut().enumerate().for_each(|(i, w)| *w = (i as f32 * 0.37).sin() * 0.3);
//!         p
//!     })
//!     .collect();
//! let weights: Vec<_> = params.iter().map(LayerParams::weights).collect();
//! let x = vec![0.5f32; t * b * input];
//! let mode = Mode::Train { seed: 7, step: 0 };
//! let out = lstm.forward(&weights, LstmInput::dense(&x, t, b), None, None, mode)?;
//! assert_eq!(out.y().len(), t * b * hidden);
//! // Loss = sum of the outputs: dL/dy = 1 at every step.
//! let dy = vec![1.0f32; t * b * hidden];
//! let grads = lstm.backward(&weights, out, &dy, None, None)?;
//! assert_eq!(grads.dx.map(|d| d.len()), Some(t * b * input));
//! assert_eq!(grads.layers[1].recurrent_kernel.len(), hidden * 4 * hidden);
//! # Ok::<(), charlstm_cuda::Error>(())
//! ```
//!
//! Shapes, layouts (Keras and PyTorch), the dropout counter and measured
//! speed: `docs/lstm-op.md`.

pub(crate) mod check;
pub mod dropout;
mod lstm;

pub use crate::gpu::op::{DeviceGrads, DeviceLayer, DeviceOutput, DeviceSlice, LstmDevice};
pub use crate::gpu::op_cuda::{CudaLayer, CudaLayerGrads, LstmCuda};
pub use dropout::Mode;
pub use lstm::{LayerGrads, LayerParams, LayerWeights, Lstm, LstmGrads, LstmInput, LstmOutput};
