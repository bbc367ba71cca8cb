//! GPU side: the embedded kernels and (to come) the device seam, launchers and trainer.

pub mod ptx;
