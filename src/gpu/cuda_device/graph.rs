//! Graphs on a GPU: `begin_capture` starts stream capture on the device's stream in
//! *relaxed* mode, `end_capture` instantiates the captured graph, `replay`
//! launches it on the stream. Relaxed, not thread-local or global: this
//! type refuses by itself, before the driver sees them, every call that
//! would break the capture (a copy, a wait, a free, `alloc_zeroed`'s
//! memset; see [`crate::gpu::GpuDevice::begin_capture`]); what the stricter modes add
//! is refusing "potentially unsafe" calls that do not touch the stream,
//! such as `cuMemAlloc` or a lazy module load, which a launcher may make
//! mid-step and which are harmless here. One thread drives the device
//! (`&mut self`), so relaxing it for other threads changes nothing.

use cudarc::driver::{CudaGraph, sys};

use super::CudaDevice;
use crate::error::{Error, Result};
use crate::gpu::device::{DeviceError, GraphId, refused_while_capturing};

/// An instantiated graph that may move to another thread with its device.
///
/// cudarc leaves `CudaGraph` `!Send` because CUDA graph objects are "not
/// internally synchronized and must not be accessed concurrently from
/// multiple threads" (CUDA driver API, graph thread safety): a `Sync`
/// concern. Moving one is not concurrent access. A `Graph` lives in its
/// `CudaDevice`'s map and is only touched through `&mut CudaDevice`, so
/// one thread at a time uses it; `CudaGraph::launch` makes the graph's
/// context current on the calling thread first (`bind_to_thread`), and its
/// drop destroys the exec and graph by handle, which needs no current
/// context. The context, stream and module types it sits beside are
/// `Send` in cudarc already.
pub(super) struct Graph(pub(super) CudaGraph);

// SAFETY: see `Graph`: exclusive use through `&mut CudaDevice` serialises
// every call on the graph, and nothing in it is tied to the creating
// thread (launch binds the context where it runs; destroy takes handles).
unsafe impl Send for Graph {}

impl CudaDevice {
    /// Refuses `op` while capturing (see the module docs).
    pub(super) fn not_capturing(&self, op: &str) -> Result<()> {
        if self.capturing {
            return Err(refused_while_capturing(self.name.clone(), op));
        }
        Ok(())
    }

    fn capture_error(&self, what: String) -> Error {
        DeviceError::Capture {
            device: self.name.clone(),
            what,
        }
        .into()
    }

    pub(super) fn capture_begin(&mut self) -> Result<()> {
        if self.capturing {
            return Err(self.capture_error("begin_capture while already capturing".into()));
        }
        let mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED;
        self.stream
            .begin_capture(mode)
            .map_err(|e| self.backend_error("beginning stream capture", e))?;
        self.capturing = true;
        Ok(())
    }

    pub(super) fn capture_end(&mut self) -> Result<GraphId> {
        if !self.capturing {
            return Err(self.capture_error("end_capture without begin_capture".into()));
        }
        // The stream leaves capture mode whatever instantiation answers.
        self.capturing = false;
        let graph = self
            .stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .map_err(|e| self.backend_error("ending stream capture", e))?
            .ok_or_else(|| self.capture_error("the capture recorded no graph".into()))?;
        let id = self.next_graph;
        self.next_graph += 1;
        self.graphs.insert(id, Graph(graph));
        Ok(GraphId(id))
    }

    pub(super) fn graph_replay(&mut self, graph: GraphId) -> Result<()> {
        self.not_capturing("replay")?;
        let Some(g) = self.graphs.get(&graph.0) else {
            return Err(self.capture_error(format!("replay of unknown graph {}", graph.0)));
        };
        // The graph's kernels took their arguments (device addresses and
        // sizes) at capture time; the engine recaptures whenever one of
        // them would change (GpuEngine's graph key).
        g.0.launch()
            .map_err(|e| self.backend_error(format!("replaying graph {}", graph.0), e))
    }

    pub(super) fn graph_drop(&mut self, graph: GraphId) -> Result<()> {
        self.not_capturing("drop_graph")?;
        // Queued replays may still run it; cuGraphExecDestroy does not wait.
        self.sync_stream()?;
        match self.graphs.remove(&graph.0) {
            Some(_) => Ok(()), // CudaGraph's drop destroys the exec and the graph
            None => Err(self.capture_error(format!("drop of unknown graph {}", graph.0))),
        }
    }
}
