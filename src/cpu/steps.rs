//! `Steps`: one thread's rows of a time-major buffer.
//!
//! A buffer of shape [S, B, W] (slot, batch row, width) is split by batch
//! rows: a `Steps` owns rows `[b0, b0 + n)` of *every* slot, that is S
//! separate runs of `n * W` contiguous elements, `B * W` apart. Time-major
//! storage keeps one time step of a chunk contiguous (what the per-step GEMM
//! and the cell loops stream through), while the threads still own disjoint
//! row ranges. Slices cannot express "every S-th run", hence the raw pointer;
//! this file is the only place that touches it.

use std::marker::PhantomData;

/// Rows `[b0, b0 + n)` of all S slots of a [S, B, W] buffer, borrowed mutably.
pub(super) struct Steps<'a, F> {
    ptr: *mut F,
    slots: usize,
    batch: usize,
    width: usize,
    b0: usize,
    n: usize,
    _borrow: PhantomData<&'a mut [F]>,
}

// SAFETY: a `Steps` is a unique borrow of its elements (those of rows
// b0..b0+n in each slot), exactly like a `&mut [F]` of them, so it may move
// to another thread when `F` may.
unsafe impl<F: Send> Send for Steps<'_, F> {}

impl<'a, F> Steps<'a, F> {
    /// All rows of `buf`, viewed as [slots, batch, width].
    pub fn new(buf: &'a mut [F], slots: usize, batch: usize, width: usize) -> Self {
        assert_eq!(
            buf.len(),
            slots * batch * width,
            "Steps: buffer is not [{slots}, {batch}, {width}]"
        );
        Steps {
            ptr: buf.as_mut_ptr(),
            slots,
            batch,
            width,
            b0: 0,
            n: batch,
            _borrow: PhantomData,
        }
    }

    /// The first `k` rows and the rest: disjoint, so each may go to a thread.
    pub fn split_at(self, k: usize) -> (Self, Self) {
        assert!(k <= self.n, "Steps::split_at({k}) of {} rows", self.n);
        let tail = Steps {
            b0: self.b0 + k,
            n: self.n - k,
            ..self
        };
        (Steps { n: k, ..self }, tail)
    }

    /// Offset of this view's run in slot `s`.
    fn start(&self, s: usize) -> usize {
        assert!(s < self.slots, "slot {s} of {}", self.slots);
        (s * self.batch + self.b0) * self.width
    }

    /// Slot `s`: rows [b0, b0+n) as `n * W` contiguous elements.
    pub fn get(&self, s: usize) -> &[F] {
        // SAFETY: `start(s) + n*W <= (s+1)*B*W <= len` of the buffer `new`
        // borrowed for 'a; these elements belong to this view alone (views
        // are created only by `new` and `split_at`, which never overlap), and
        // `&self` keeps them from being borrowed mutably meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.add(self.start(s)), self.n * self.width) }
    }

    /// Slot `s`, mutably.
    pub fn get_mut(&mut self, s: usize) -> &mut [F] {
        // SAFETY: as in `get`; `&mut self` makes this the only live borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(self.start(s)), self.n * self.width) }
    }

    /// Slot `prev` to read and slot `s` to write (`prev != s`).
    pub fn pair_mut(&mut self, prev: usize, s: usize) -> (&[F], &mut [F]) {
        assert_ne!(prev, s, "Steps::pair_mut of one slot");
        let (a, b) = (self.start(prev), self.start(s));
        let len = self.n * self.width;
        // SAFETY: as in `get_mut`; the two runs are in different slots, so
        // they do not overlap.
        unsafe {
            (
                std::slice::from_raw_parts(self.ptr.add(a), len),
                std::slice::from_raw_parts_mut(self.ptr.add(b), len),
            )
        }
    }
}

/// Read access to every row of the buffer a [`Steps`] and its splits view,
/// for threads that read rows other threads have finished writing (the
/// weight gradients of [`super::step_grads`]): raw, so the writers' views
/// stay valid; the caller synchronises.
pub(crate) struct StepsReader<'a, F> {
    ptr: *const F,
    slots: usize,
    batch: usize,
    width: usize,
    _borrow: PhantomData<&'a [F]>,
}

impl<F> Clone for StepsReader<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for StepsReader<'_, F> {}

// SAFETY: reading goes only through `row`, whose caller vouches that no
// thread writes the row meanwhile and that its writes happened before.
unsafe impl<F: Sync> Send for StepsReader<'_, F> {}
unsafe impl<F: Sync> Sync for StepsReader<'_, F> {}

impl<'a, F> StepsReader<'a, F> {
    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Row `b` of slot `s`, `width` elements.
    ///
    /// # Safety
    /// No thread writes the row while the slice lives, and the writes
    /// before happened-before this call (a release / acquire pair).
    pub unsafe fn row(&self, s: usize, b: usize) -> &'a [F] {
        assert!(
            s < self.slots && b < self.batch,
            "StepsReader::row({s}, {b})"
        );
        // SAFETY: the row lies in the buffer `Steps::new` borrowed for 'a
        // (asserted above); the caller vouches for the rest.
        unsafe {
            std::slice::from_raw_parts(self.ptr.add((s * self.batch + b) * self.width), self.width)
        }
    }
}

impl<'a, F> Steps<'a, F> {
    /// A reader of the whole buffer (every row, whichever view writes it),
    /// made before the views are split off.
    pub fn reader(&self) -> StepsReader<'a, F> {
        assert!(
            self.b0 == 0 && self.n == self.batch,
            "Steps::reader of a split view"
        );
        StepsReader {
            ptr: self.ptr,
            slots: self.slots,
            batch: self.batch,
            width: self.width,
            _borrow: PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_cover_their_rows_of_every_slot() {
        let mut buf: Vec<u32> = (0..2 * 5 * 3).collect(); // [S=2, B=5, W=3]
        let all = Steps::new(&mut buf, 2, 5, 3);
        let (mut a, mut b) = all.split_at(2);
        assert_eq!(a.get(0), &[0, 1, 2, 3, 4, 5]);
        assert_eq!(a.get(1), &[15, 16, 17, 18, 19, 20]);
        assert_eq!(b.get(1), &[21, 22, 23, 24, 25, 26, 27, 28, 29]);
        let (prev, cur) = b.pair_mut(0, 1);
        cur.copy_from_slice(prev);
        a.get_mut(1).fill(0);
        assert_eq!(
            &buf[15..],
            &[0, 0, 0, 0, 0, 0, 6, 7, 8, 9, 10, 11, 12, 13, 14]
        );
    }
}
