//! The per-step path of the LSTM: one launch of `kernels/lstm.cu` per time
//! step, forward (`lstm_cell_fwd_f32`) and backward (`lstm_cell_bwd_f32`
//! once, then `lstm_dh_cell_bwd_f32`; `bwd_step`'s two-launch form uses
//! `lstm_dh_bwd_f32`), and the reference weight gradients
//! (`lstm_wgrad_bwd_f32`). The persistent kernels are checked against it;
//! where they do not fit (H > 128), it is the recurrence.

use super::{LstmBuffers, LstmDims, LstmLauncher, Sizes};
use crate::error::Result;
use crate::gpu::contract::lstm::{
    LS_BLOCK_ROWS, LS_THREADS, LS_UNITS, LstmCellBwdF32, LstmCellDenseFwdF32, LstmCellFwdF32,
    LstmDhBwdF32, LstmDhCellBwdF32, LstmWgradBwdF32,
};
use crate::gpu::device::{DeviceError, DevicePtr, GpuDevice, LaunchConfig, blocks_for};

impl LstmLauncher {
    fn step_grid(&self, dims: LstmDims) -> LaunchConfig {
        let n = dims.batch * dims.hidden;
        LaunchConfig::linear(blocks_for(n, self.block, self.max_blocks), self.block, 0)
    }

    /// The tiled recurrent products (`lstm_cell_fwd_f32`,
    /// `lstm_cell_dense_fwd_f32`, `lstm_dh_bwd_f32`,
    /// `lstm_dh_cell_bwd_f32`): a block per
    /// `LS_UNITS` units and `LS_BLOCK_ROWS` batch rows, `LS_THREADS`
    /// threads, no grid-stride (the grid covers B x H).
    fn tile_grid(kernel: &'static str, dims: LstmDims) -> Result<LaunchConfig> {
        let rows = dims.batch.div_ceil(LS_BLOCK_ROWS as usize);
        if rows > 65_535 {
            let what = format!(
                "B = {} needs {rows} blocks along y, more than 65535 (B <= {})",
                dims.batch,
                65_535 * LS_BLOCK_ROWS
            );
            return Err(DeviceError::BadArguments { kernel, what }.into());
        }
        let units = dims.hidden.div_ceil(LS_UNITS as usize);
        Ok(LaunchConfig {
            grid: [units as u32, rows as u32, 1],
            block: [LS_THREADS, 1, 1],
            shared_bytes: 0,
        })
    }

    /// The sizes for step `t` of `kernel`, which must lie inside the
    /// sequence; `None` when B or H is zero (nothing to run).
    fn step_sizes(&self, kernel: &'static str, dims: LstmDims, t: usize) -> Result<Option<Sizes>> {
        let s = self.sizes(kernel, dims)?;
        if t >= dims.seq_len {
            let what = format!("step {t} of T = {}", dims.seq_len);
            return Err(DeviceError::BadArguments { kernel, what }.into());
        }
        Ok((s.b != 0 && s.h != 0).then_some(s))
    }

    /// Forward step `t` (0-based, `< T`): reads corpus rows `starts[b] + t`
    /// (a dense layer: `zx[t]`), `h[t-1]`, `c[t-1]` (at t = 0 `h0`, `c0`,
    /// zeros where NULL); overwrites `gates[t]`, `c[t]`, `h[t]`, `cls[t]`
    /// (not for a dense layer).
    pub fn fwd_step<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
        t: usize,
    ) -> Result<()> {
        let name = if bufs.is_dense() {
            Self::DENSE_FWD
        } else {
            Self::FWD
        };
        let Some(s) = self.step_sizes(name, dims, t)? else {
            return Ok(());
        };
        let (h, g) = (dims.hidden, 4 * dims.hidden);
        if bufs.is_dense() {
            // As below, with zx step t [B, 4H] of the t-major [T, B, 4H] input term in place of
            // the corpus, kernel and bias; no cls. One tile a block.
            let args = LstmCellDenseFwdF32 {
                zx: dims.at(bufs.zx, t, g),
                recurrent_kernel: bufs.recurrent_kernel,
                B: s.b,
                H: s.h,
                h_prev: dims.before(bufs.h, t, h, bufs.h0),
                c_prev: dims.before(bufs.c, t, h, bufs.c0),
                gates: dims.at(bufs.gates, t, g),
                c: dims.at(bufs.c, t, h),
                h: dims.at(bufs.h, t, h),
            };
            return args.launch(dev, name, Self::tile_grid(name, dims)?);
        }
        // The per-step pointers are step t (t-1 for the previous state, h0 / c0 [B, H] or null at
        // t = 0) of the t-major buffers of LstmBuffers; the caller guarantees every starts[b] + t
        // is a row of the corpus. One tile a block.
        let args = LstmCellFwdF32 {
            corpus_words: bufs.corpus_words,
            words_per_row: s.wpr,
            starts: bufs.starts,
            t: t as u32,
            kernel: bufs.kernel,
            recurrent_kernel: bufs.recurrent_kernel,
            bias: bufs.bias,
            B: s.b,
            H: s.h,
            V: s.v,
            h_prev: dims.before(bufs.h, t, h, bufs.h0),
            c_prev: dims.before(bufs.c, t, h, bufs.c0),
            gates: dims.at(bufs.gates, t, g),
            c: dims.at(bufs.c, t, h),
            h: dims.at(bufs.h, t, h),
            cls: bufs.cls.offset(t * dims.batch * 4),
        };
        args.launch(dev, Self::FWD, Self::tile_grid(Self::FWD, dims)?)
    }

    /// Backward step `t`, called for t = T-1 down to 0. Window form: given
    /// `dh` = dh_t and `dc` = dc_{t+1} (ignored, taken as zero, at t =
    /// T-1), overwrites `dz[t]`, `dc` with dc_t-1 and, for t > 0, `dh` with
    /// dh_{t-1}. Sequence form (`dy` set): `dh` is the recurrent part of
    /// dh_t (dh_T at t = T-1), to which the cell adds `dy[t]`; `dc` is read
    /// at every step (dc_T at t = T-1); at t = 0 `dh` and `dc` become dh_{-1}
    /// and dc_{-1}. Two launches a step; [`bwd_steps`](Self::bwd_steps) runs
    /// all T steps with the same results in T - 1 fewer.
    pub fn bwd_step<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
        t: usize,
    ) -> Result<()> {
        let Some(s) = self.step_sizes(Self::BWD, dims, t)? else {
            return Ok(());
        };
        // Checked before the first launch, so a bad shape launches nothing.
        let dh_grid = Self::tile_grid(Self::DH, dims)?;
        self.cell_bwd(dev, dims, bufs, t, s)?;
        if t == 0 && bufs.dy == DevicePtr::NULL {
            return Ok(()); // dh_{-1} is not needed in the window form
        }
        self.dh_bwd(dev, dims, bufs, t, s, dh_grid)
    }

    /// The whole per-step backward, steps T-1 down to 0, with
    /// [`bwd_step`](Self::bwd_step)'s inputs and results (the same bits)
    /// in T launches (T + 1 in the sequence form) instead of 2T: after step
    /// T-1's cell backward, each `lstm_dh_cell_bwd_f32` launch sums dh_{t-1}
    /// and runs step t-1's cell backward on it in the same threads; the
    /// sequence form's dh_{-1} is one `lstm_dh_bwd_f32` at the end. `dh` is
    /// read at T-1 and written only at t = 0 of the sequence form.
    pub fn bwd_steps<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
    ) -> Result<()> {
        let Some(last) = dims.seq_len.checked_sub(1) else {
            return Ok(());
        };
        let Some(s) = self.step_sizes(Self::BWD, dims, last)? else {
            return Ok(());
        };
        let grid = Self::tile_grid(Self::DH_CELL, dims)?;
        self.cell_bwd(dev, dims, bufs, last, s)?;
        let (h, g) = (dims.hidden, 4 * dims.hidden);
        for t in (1..dims.seq_len).rev() {
            // dz step t (whole, from the launch before), recurrent_kernel; then step t-1's
            // gates, c, c_prev (c0 or null at t-1 = 0), dy (null in the window form), dc in-out
            // element-wise, dz of step t-1 written. One tile a block.
            let args = LstmDhCellBwdF32 {
                dz: dims.at(bufs.dz, t, g),
                recurrent_kernel: bufs.recurrent_kernel,
                B: s.b,
                H: s.h,
                gates: dims.at(bufs.gates, t - 1, g),
                c: dims.at(bufs.c, t - 1, h),
                c_prev: dims.before(bufs.c, t - 1, h, bufs.c0),
                dy: dims.at_or_null(bufs.dy, t - 1, h),
                dc: bufs.dc,
                dz_prev: dims.at(bufs.dz, t - 1, g),
            };
            args.launch(dev, Self::DH_CELL, grid)?;
        }
        if bufs.dy == DevicePtr::NULL {
            return Ok(()); // dh_{-1} is not needed in the window form
        }
        self.dh_bwd(dev, dims, bufs, 0, s, grid)
    }

    /// The kernels [`bwd_steps`](Self::bwd_steps) runs, as report rows name
    /// them: the sequence form (`seq`, dy set) adds the final dh_{-1}.
    pub fn per_step_backward_kernels(seq: bool) -> &'static str {
        match seq {
            true => "lstm_cell_bwd_f32 + lstm_dh_cell_bwd_f32 + lstm_dh_bwd_f32",
            false => "lstm_cell_bwd_f32 + lstm_dh_cell_bwd_f32",
        }
    }

    /// `lstm_cell_bwd_f32` at step `t`: dz[t] and dc from `dh` (+ dy[t]).
    fn cell_bwd<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
        t: usize,
        s: Sizes,
    ) -> Result<()> {
        let (h, g) = (dims.hidden, 4 * dims.hidden);
        let dc_next = if t + 1 == dims.seq_len && bufs.dy == DevicePtr::NULL {
            DevicePtr::NULL
        } else {
            bufs.dc
        };
        // `gates` / `c` / `dz` / `dy` are step t of the t-major buffers (dy null in the window
        // form), c_prev step t-1 (c0 or null at t = 0); dc is read and written in place by the
        // same thread. Grid-stride over B*H.
        let args = LstmCellBwdF32 {
            gates: dims.at(bufs.gates, t, g),
            c: dims.at(bufs.c, t, h),
            c_prev: dims.before(bufs.c, t, h, bufs.c0),
            dh: bufs.dh,
            dy: dims.at_or_null(bufs.dy, t, h),
            dc_next,
            B: s.b,
            H: s.h,
            dz: dims.at(bufs.dz, t, g),
            dc_prev: bufs.dc,
        };
        args.launch(dev, Self::BWD, self.step_grid(dims))
    }

    /// `lstm_dh_bwd_f32` at step `t`: `dh` = dz[t] @ recurrent_kernel^T.
    fn dh_bwd<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
        t: usize,
        s: Sizes,
        grid: LaunchConfig,
    ) -> Result<()> {
        // Reads dz[t], written by the launch before (same stream, so ordered), and overwrites dh,
        // which that launch has finished reading. One tile a block.
        let args = LstmDhBwdF32 {
            dz: dims.at(bufs.dz, t, 4 * dims.hidden),
            recurrent_kernel: bufs.recurrent_kernel,
            B: s.b,
            H: s.h,
            dh_prev: bufs.dh,
        };
        args.launch(dev, Self::DH, grid)
    }

    /// `lstm_wgrad_bwd_f32`: one thread per output, each summing all T*B
    /// rows in order.
    pub(super) fn reference_wgrad<D: GpuDevice>(
        &self,
        dev: &mut D,
        dims: LstmDims,
        bufs: &LstmBuffers,
        s: Sizes,
    ) -> Result<()> {
        let g = 4 * dims.hidden;
        let n = g * dims.hidden + g * dims.vocab + g;
        if n == 0 {
            return Ok(());
        }
        // `h`, `cls` and `dz` are the whole t-major buffers ([T, B, H], [T, B], [T, B, 4H]), h0
        // [B, H] or null (h_{-1} = 0).
        // Grid-stride over 4H*H + 4H*V + 4H outputs, one thread each, no atomics.
        let args = LstmWgradBwdF32 {
            h: bufs.h,
            h0: bufs.h0,
            cls: bufs.cls,
            dz: bufs.dz,
            T: s.t,
            B: s.b,
            H: s.h,
            V: s.v,
            d_kernel: bufs.d_kernel,
            d_recurrent_kernel: bufs.d_recurrent_kernel,
            d_bias: bufs.d_bias,
        };
        args.launch(
            dev,
            Self::WGRAD,
            LaunchConfig::linear(
                blocks_for(n, self.wgrad_block, self.max_blocks),
                self.wgrad_block,
                0,
            ),
        )
    }
}
