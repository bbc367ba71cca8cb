//! The PTX that build.rs compiled from `kernels/*.cu`, embedded in the crate.

use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// The PTX of module `name` (a `kernels/NAME.cu`), or a typed error naming
/// what is missing: a build without nvcc, or an unknown module.
pub fn module(name: &str) -> Result<&'static str> {
    lookup(MODULES, name)
}

/// The PTX of one of the simulator's test kernels (`tests/kernels/NAME.cu`).
pub fn test_module(name: &str) -> Result<&'static str> {
    lookup(TEST_MODULES, name)
}

fn lookup(list: &[(&str, &'static str)], name: &str) -> Result<&'static str> {
    if !BUILT_WITH_KERNELS {
        return Err(Error::BackendUnavailable {
            backend: "gpu",
            what: "this build has no CUDA kernels (nvcc was not found at build time); \
                   run `bash scripts/setup-cuda.sh` and rebuild"
                .into(),
        });
    }
    list.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, ptx)| *ptx)
        .ok_or_else(|| Error::BackendUnavailable {
            backend: "gpu",
            what: format!("no kernel module named {name:?}"),
        })
}
