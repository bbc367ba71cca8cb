//! The PTX simulator on `call` to `.func` (tests/kernels/calls.cu) and on
//! f16/bf16 arithmetic (tests/kernels/half_ops.cu), against Rust.

use charlstm_cuda::gpu::ptx;
use charlstm_cuda::sim::{ParamValue as P, Simulator};

fn sim(module: &str) -> Option<Simulator> {
    if !ptx::BUILT_WITH_KERNELS {
        eprintln!("SKIPPED: built without kernels");
        return None;
    }
    let mut s = Simulator::new(0);
    s.load_module(module, ptx::test_module(module).expect("test module"))
        .expect("parse");
    Some(s)
}

fn up<T: bytemuck::Pod>(s: &mut Simulator, v: &[T]) -> u64 {
    let bytes: &[u8] = bytemuck::cast_slice(v);
    let a = s.alloc(bytes.len()).unwrap();
    s.write(a, bytes).unwrap();
    a
}

fn down<T: bytemuck::Pod + Default + Clone>(s: &Simulator, a: u64, n: usize) -> Vec<T> {
    let mut v = vec![T::default(); n];
    s.read(a, bytemuck::cast_slice_mut(&mut v)).unwrap();
    v
}

#[test]
fn calls_to_device_functions() {
    let Some(mut s) = sim("calls") else { return };
    assert!(
        ptx::test_module("calls").unwrap().contains("call.uni"),
        "the test kernel must really call (nvcc inlined it)"
    );
    let n = 300usize;
    let a: Vec<u32> = (0..n as u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    let da = up(&mut s, &a);
    let out = s.alloc(n * 3 * 4).unwrap();
    s.launch(
        "calls",
        [2, 1, 1],
        [160, 1, 1],
        0,
        &[P::Ptr(da), P::Ptr(out), P::U32(n as u32)],
    )
    .unwrap();
    let got: Vec<u32> = down(&s, out, n * 3);
    for i in 0..n {
        let m = a[i].wrapping_mul(3).wrapping_add(i as u32 ^ 5);
        let want = [m, m.wrapping_mul(4).wrapping_add(1), i as u32 + 100];
        assert_eq!(&got[3 * i..3 * i + 3], &want, "thread {i}");
    }
}
