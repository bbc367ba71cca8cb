//! The kernels build.rs compiled from `kernels/*.cu` (and the simulator's
//! test kernels from `tests/kernels/*.cu`), embedded in the crate: each
//! module's PTX (what the simulator runs) and, where the build had ptxas
//! and fatbinary, a fatbin of sm_90 SASS plus that same PTX (what a GPU
//! loads).

use crate::error::{Error, Result};

/// One embedded `.cu` file.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// The file stem (`lstm` for `kernels/lstm.cu`).
    pub name: &'static str,
    /// compute_80 PTX (compute_90 for `*_sm90.cu`), as nvcc emitted it.
    pub ptx: &'static str,
    /// sm_90 SASS assembled from `ptx` by ptxas, plus `ptx` itself.
    pub fatbin: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// Module names with this prefix name the simulator's test kernels
/// (`tests/NAME` is `tests/kernels/NAME.cu`): the GPU check runs them on a
/// GPU and on the simulator through the same device seam to validate the
/// simulator against hardware.
pub const TEST_PREFIX: &str = "tests/";

/// The PTX of module `name` (a `kernels/NAME.cu`), or a typed error naming
/// what is missing: a build without nvcc, or an unknown module.
pub fn module(name: &str) -> Result<&'static str> {
    lookup(MODULES, name).map(|m| m.ptx)
}

/// The PTX of one of the simulator's test kernels (`tests/kernels/NAME.cu`).
pub fn test_module(name: &str) -> Result<&'static str> {
    lookup(TEST_MODULES, name).map(|m| m.ptx)
}

/// The module a device loads for `name`: `kernels/NAME.cu`, or
/// `tests/kernels/REST.cu` for `tests/REST` ([`TEST_PREFIX`]).
pub fn resolve(name: &str) -> Result<Module> {
    match name.strip_prefix(TEST_PREFIX) {
        Some(test) => lookup(TEST_MODULES, test),
        None => lookup(MODULES, name),
    }
}

fn lookup(list: &[Module], name: &str) -> Result<Module> {
    if !BUILT_WITH_KERNELS {
        return Err(Error::NoKernels { backend: "gpu" });
    }
    list.iter()
        .find(|m| m.name == name)
        .copied()
        .ok_or_else(|| Error::BackendUnavailable {
            backend: "gpu",
            what: format!("no kernel module named {name:?}"),
        })
}
