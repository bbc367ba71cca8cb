//! The device buffers of one batch (activations the backward needs, the
//! head's scratch), allocated once for the largest batch and window seen and
//! grown, never shrunk, when a caller asks for more.

use super::device::{DevicePtr, GpuDevice};
use super::lstm::LstmDims;
use super::lstm::wgrad::WgradLauncher;
use crate::error::Result;

const F32: usize = std::mem::size_of::<f32>();
const U32: usize = std::mem::size_of::<u32>();

/// Activations and scratch for up to `batch` rows of `seq_len` steps.
/// Shapes as in [`super::lstm::LstmBuffers`] and [`super::head::HeadBuffers`].
///
/// One allocation per buffer rather than one carved into thirteen: the
/// simulator checks bounds per allocation, so an overrun from `gates` into
/// `c` is an error there instead of a silent write.
#[derive(Debug, Default)]
pub(crate) struct BatchBuffers {
    pub batch: usize,
    pub seq_len: usize,
    pub starts: DevicePtr, // [B] u32, staging for starts not in the epoch order
    pub targets: DevicePtr, // [B] u32
    pub gates: DevicePtr,  // [T, B, 4H]
    pub c: DevicePtr,      // [T, B, H]
    pub h: DevicePtr,      // [T, B, H]
    pub cls: DevicePtr,    // [T, B] u32
    pub dz: DevicePtr,     // [T, B, 4H]
    pub dh: DevicePtr,     // [B, H]
    pub dc: DevicePtr,     // [B, H]
    pub dlogits: DevicePtr, // [B, V]
    pub probs: DevicePtr,  // [B, V]
    pub loss: DevicePtr,   // one f32
    /// The fast weight gradients' split partials, `WgradLauncher::scratch_len` f32s.
    pub wgrad_scratch: DevicePtr,
}

impl BatchBuffers {
    /// The buffers, in field order (the order of the sizes in `ensure`).
    fn slots(&mut self) -> [&mut DevicePtr; 13] {
        [
            &mut self.starts,
            &mut self.targets,
            &mut self.gates,
            &mut self.c,
            &mut self.h,
            &mut self.cls,
            &mut self.dz,
            &mut self.dh,
            &mut self.dc,
            &mut self.dlogits,
            &mut self.probs,
            &mut self.loss,
            &mut self.wgrad_scratch,
        ]
    }

    /// Every buffer's address, in field order.
    pub fn all(&self) -> [DevicePtr; 13] {
        let mut copy = BatchBuffers { ..*self };
        copy.slots().map(|p| *p)
    }

    /// Makes room for `batch` rows of `seq_len` steps of a V x H model.
    pub fn ensure<D: GpuDevice>(
        &mut self,
        dev: &mut D,
        batch: usize,
        seq_len: usize,
        hidden: usize,
        vocab: usize,
    ) -> Result<()> {
        if batch <= self.batch && seq_len <= self.seq_len {
            return Ok(());
        }
        let (b, t) = (batch.max(self.batch), seq_len.max(self.seq_len));
        self.free(dev)?;
        let g = 4 * hidden;
        let scratch = WgradLauncher::scratch_len(LstmDims {
            batch: b,
            seq_len: t,
            hidden,
            vocab,
            words_per_row: vocab.div_ceil(64),
        });
        // Every size is checked: a corrupt caller must get an error, not a wrap.
        let bytes = |parts: &[usize]| {
            parts
                .iter()
                .try_fold(1usize, |acc, &p| acc.checked_mul(p))
                .ok_or_else(|| crate::Error::InvalidArgument {
                    name: "hyper.batch",
                    what: format!("{b} rows x {t} steps x {hidden} units overflow memory sizes"),
                })
        };
        // Allocate before overwriting any field, so a failure leaves `self`
        // consistently empty (freed above) rather than half-filled. In
        // field order:
        let sizes = [
            bytes(&[b, U32])?,
            bytes(&[b, U32])?,
            bytes(&[t, b, g, F32])?,
            bytes(&[t, b, hidden, F32])?,
            bytes(&[t, b, hidden, F32])?,
            bytes(&[t, b, U32])?,
            bytes(&[t, b, g, F32])?,
            bytes(&[b, hidden, F32])?,
            bytes(&[b, hidden, F32])?,
            bytes(&[b, vocab, F32])?,
            bytes(&[b, vocab, F32])?,
            F32,
            bytes(&[scratch, F32])?,
        ];
        let mut got = Vec::with_capacity(sizes.len());
        for size in sizes {
            match dev.alloc(size.max(1)) {
                Ok(p) => got.push(p),
                Err(e) => {
                    for p in got {
                        let _ = dev.free(p);
                    }
                    return Err(e);
                }
            }
        }
        for (slot, p) in self.slots().into_iter().zip(got) {
            *slot = p;
        }
        (self.batch, self.seq_len) = (b, t);
        Ok(())
    }

    /// Releases everything; `self` becomes empty.
    pub fn free<D: GpuDevice>(&mut self, dev: &mut D) -> Result<()> {
        (self.batch, self.seq_len) = (0, 0);
        for slot in self.slots() {
            let p = std::mem::take(slot);
            if p != DevicePtr::NULL {
                dev.free(p)?;
            }
        }
        Ok(())
    }
}
