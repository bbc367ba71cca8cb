//! The CPU engine's large buffers in transparent huge pages.
//!
//! Why: a training step of the stacked model (2 x 256 units, batch 128, 60
//! steps) writes and reads back about 110 MB of tapes and products: some
//! 27,000 pages of 4 KB against a second-level TLB of about 2,000 entries,
//! so the GEMMs and cells walking them miss the TLB page after page. Linux
//! backs memory with 2 MB pages where it is asked to (`madvise` with
//! `MADV_HUGEPAGE`), and many systems do so only where asked
//! (`/sys/kernel/mm/transparent_hugepage/enabled` = `[madvise]`, as on the
//! machine the measurements in docs/measured.md come from). Asked for every
//! buffer of 4 MB or more: the step 2-5 % faster (docs/measured.md,
//! "2026-12-06 (20:08 UTC on)").
//!
//! The advice is a hint: where the kernel declines it, or elsewhere than
//! Linux, the buffers are ordinary ones and every result is the same.

/// Buffers smaller than this are left as the allocator gives them.
const MIN_BYTES: usize = 4 << 20;

/// `v.resize(len, value)`, its buffer advised into huge pages where it is
/// (re)allocated for `len` values of [`MIN_BYTES`] or more. The advice comes
/// before the first write, while no page of the new buffer is mapped yet.
pub(crate) fn resize<T: Clone>(v: &mut Vec<T>, len: usize, value: T) {
    if len > v.capacity() && len.saturating_mul(size_of::<T>()) >= MIN_BYTES {
        let mut fresh: Vec<T> = Vec::with_capacity(len);
        advise(fresh.as_mut_ptr().cast::<u8>(), len * size_of::<T>());
        fresh.extend_from_slice(v);
        *v = fresh;
    }
    v.resize(len, value);
}

/// Asks for huge pages over the 2 MB-aligned part of `bytes` bytes at `ptr`.
#[cfg(target_os = "linux")]
fn advise(ptr: *mut u8, bytes: usize) {
    const HUGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + bytes) / HUGE * HUGE;
    if end > start {
        // SAFETY: [start, end) lies inside the caller's allocation, and
        // MADV_HUGEPAGE changes how it is backed, never what it holds. A
        // failure (a kernel without transparent huge pages) leaves it as
        // it was, which is what ignoring the result means.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_ptr: *mut u8, _bytes: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes and values as `Vec::resize` leaves them, large or small, grown
    /// or shrunk, the old values kept.
    #[test]
    fn resizes_as_vec_does() {
        let mut v: Vec<f32> = vec![1.0, 2.0];
        resize(&mut v, 3 << 20, 7.0);
        assert_eq!(v.len(), 3 << 20);
        assert_eq!(&v[..3], &[1.0, 2.0, 7.0]);
        assert_eq!(v[(3 << 20) - 1], 7.0);
        resize(&mut v, 5, 0.0);
        assert_eq!(v, [1.0, 2.0, 7.0, 7.0, 7.0]);
        let mut small: Vec<u32> = Vec::new();
        resize(&mut small, 10, 3);
        assert_eq!(small, [3; 10]);
    }
}
