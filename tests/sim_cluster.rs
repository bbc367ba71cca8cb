//! Thread-block clusters on the simulator (`tests/kernels/cluster_forms_sm90.cu`,
//! `kernels/cluster.cuh`): the cluster special registers, another block's
//! shared memory through `mapa` + `ld/st.shared::cluster` and through
//! generic addresses, the cluster barrier, the launch checks the driver
//! makes, and the bugs the simulator must name (a race across blocks, a rank
//! outside the cluster, a block that exits while another reads its shared
//! memory, a wait without an arrive). `tests/sim_vs_hardware.rs` runs the
//! race-free kernels on a GPU against the simulator.

mod common;

use charlstm_cuda::gpu::ptx;
use charlstm_cuda::sim::{ParamValue as P, Simulator};

fn sim(seed: u64) -> Option<Simulator> {
    if !common::kernels() {
        return None;
    }
    let mut s = Simulator::new(seed);
    let m = "cluster_forms_sm90";
    s.load_module(m, ptx::test_module(m).expect("test module"))
        .expect("parse");
    Some(s)
}

/// A simulator with one hand-written kernel `k`: `directives` between its
/// (empty) parameter list and its body.
fn hand(directives: &str, body: &str) -> charlstm_cuda::Result<Simulator> {
    let mut s = Simulator::new(0);
    let ptx = format!(
        ".version 8.0\n.target sm_90\n.address_size 64\n.visible .entry k(\n\t.param .u64 k_param_0\n)\n{directives}\n{{\n\t.reg .pred %p<4>;\n\t.reg .b32 %r<16>;\n\t.reg .f32 %f<8>;\n\t.reg .b64 %rd<8>;\n\t.shared .align 4 .b8 buf[128];\n{body}\n\tret;\n}}\n"
    );
    s.load_module("hand", &ptx)?;
    Ok(s)
}

fn up(s: &mut Simulator, v: &[f32]) -> u64 {
    let a = s.alloc(v.len() * 4).unwrap();
    s.write(a, bytemuck::cast_slice(v)).unwrap();
    a
}

fn down<T: bytemuck::Pod + Default + Clone>(s: &Simulator, a: u64, n: usize) -> Vec<T> {
    let mut v = vec![T::default(); n];
    s.read(a, bytemuck::cast_slice_mut(&mut v)).unwrap();
    v
}

fn err_of<T>(r: charlstm_cuda::Result<T>) -> String {
    let e = match r {
        Ok(_) => panic!("the simulator must catch this"),
        Err(e) => e.to_string(),
    };
    eprintln!("caught: {e}");
    e
}

fn input(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.125)
        .collect()
}

#[test]
fn cluster_registers_are_what_a_gpu_gives() {
    let Some(mut s) = sim(0) else { return };
    let out = s.alloc(8 * 8 * 4).unwrap();
    s.launch("cluster_regs", [8, 1, 1], [32, 1, 1], 0, &[P::Ptr(out)])
        .unwrap();
    let got: Vec<u32> = down(&s, out, 64);
    for b in 0..8u32 {
        // rank, blocks, cluster id, clusters, ctaid in cluster, its extent, explicit, block
        let want = [b % 4, 4, b / 4, 2, b % 4, 4, 1, b];
        assert_eq!(&got[b as usize * 8..][..8], &want, "block {b}");
    }
}

#[test]
fn blocks_read_each_others_shared_memory() {
    for seed in [0, 7, 19] {
        let Some(mut s) = sim(seed) else { return };
        let nb = 8;
        let x = input(nb * 64);
        let dx = up(&mut s, &x);
        let out = s.alloc(nb * 128 * 4).unwrap();
        s.launch(
            "cluster_pull",
            [nb as u32, 1, 1],
            [64, 1, 1],
            0,
            &[P::Ptr(dx), P::Ptr(out)],
        )
        .unwrap();
        let got: Vec<f32> = down(&s, out, nb * 128);
        for b in 0..nb {
            let (c0, r) = (b - b % 4, b % 4);
            let (next, prev) = (c0 + (r + 1) % 4, c0 + (r + 3) % 4);
            for t in 0..64 {
                assert_eq!(got[b * 128 + t], x[next * 64 + t], "seed {seed} block {b}");
                assert_eq!(
                    got[b * 128 + 64 + t],
                    x[prev * 64 + t],
                    "seed {seed} block {b}"
                );
            }
        }
    }
}

#[test]
fn blocks_write_into_each_others_shared_memory() {
    for seed in [0, 3, 11] {
        let Some(mut s) = sim(seed) else { return };
        let nb = 8;
        let x = input(nb * 32);
        let dx = up(&mut s, &x);
        let out = s.alloc(nb * 32 * 4).unwrap();
        s.launch(
            "cluster_gather",
            [nb as u32, 1, 1],
            [32, 1, 1],
            0,
            &[P::Ptr(dx), P::Ptr(out)],
        )
        .unwrap();
        let got: Vec<f32> = down(&s, out, nb * 32);
        for b in 0..nb {
            let (c0, q) = (b - b % 4, (b % 4 + 1) as f32);
            for t in 0..32 {
                let mut want = 0.0f32;
                for r in 0..4 {
                    want += x[(c0 + r) * 32 + t] * q;
                }
                assert_eq!(
                    got[b * 32 + t].to_bits(),
                    want.to_bits(),
                    "seed {seed} block {b}"
                );
            }
        }
    }
}

#[test]
fn a_race_across_blocks_is_named() {
    let Some(mut s) = sim(0) else { return };
    let x = s.alloc_zeroed(32 * 4).unwrap();
    let out = s.alloc(2 * 32 * 4).unwrap();
    let e = err_of(s.launch(
        "bug_cluster_no_barrier",
        [2, 1, 1],
        [32, 1, 1],
        0,
        &[P::Ptr(x), P::Ptr(out)],
    ));
    assert!(e.contains("data race") && e.contains("block rank"), "{e}");
}

#[test]
fn a_rank_outside_the_cluster_is_named() {
    let Some(mut s) = sim(0) else { return };
    let out = s.alloc(2 * 32 * 4).unwrap();
    let e = err_of(s.launch("bug_cluster_rank", [2, 1, 1], [32, 1, 1], 0, &[P::Ptr(out)]));
    assert!(
        e.contains("mapa") && e.contains("to rank 2") && e.contains("has 2 blocks"),
        "{e}"
    );
}

#[test]
fn reading_an_exited_blocks_shared_memory_is_named() {
    let Some(mut s) = sim(0) else { return };
    let out = s.alloc(32 * 4).unwrap();
    let e = err_of(s.launch(
        "bug_cluster_early_exit",
        [2, 1, 1],
        [32, 1, 1],
        0,
        &[P::Ptr(out), P::I32(100_000)],
    ));
    assert!(
        e.contains("has exited") && e.contains("block rank 0"),
        "{e}"
    );
}

#[test]
fn a_wait_without_an_arrive_is_named() {
    let Some(mut s) = sim(0) else { return };
    let out = s.alloc(2 * 32 * 4).unwrap();
    let e = err_of(s.launch(
        "bug_cluster_wait_only",
        [2, 1, 1],
        [32, 1, 1],
        0,
        &[P::Ptr(out)],
    ));
    assert!(e.contains("without a barrier.cluster.arrive"), "{e}");
}

#[test]
fn launches_the_driver_refuses_are_refused() {
    let Some(mut s) = sim(0) else { return };
    let out = s.alloc(8 * 8 * 4).unwrap();
    let e = err_of(s.launch("cluster_regs", [6, 1, 1], [32, 1, 1], 0, &[P::Ptr(out)]));
    assert!(e.contains("not a whole number of clusters"), "{e}");
    let mut big = hand(".reqnctapercluster 16, 1, 1", "").unwrap();
    let e = err_of(big.launch("k", [16, 1, 1], [32, 1, 1], 0, &[P::U64(0)]));
    assert!(e.contains("more than the portable 8"), "{e}");
    let mut flat = hand(".reqnctapercluster 2, 2, 1", "").unwrap();
    let e = err_of(flat.launch("k", [2, 2, 1], [32, 1, 1], 0, &[P::U64(0)]));
    assert!(e.contains("along x only"), "{e}");
    let e = err_of(hand(".maxclusterrank 8", ""));
    assert!(e.contains("__cluster_dims__"), "{e}");
    let e = err_of(hand("", "\tbarrier.cluster.arrive.relaxed.aligned;"));
    assert!(e.contains("unsupported instruction"), "{e}");
}

#[test]
fn misuses_of_the_cluster_barrier_are_named() {
    let twice = "\tbarrier.cluster.arrive.aligned;\n\tbarrier.cluster.arrive.aligned;";
    let mut s = hand(".reqnctapercluster 2, 1, 1", twice).unwrap();
    let e = err_of(s.launch("k", [2, 1, 1], [32, 1, 1], 0, &[P::U64(0)]));
    assert!(e.contains("arrive again"), "{e}");
    // A shared access between arrive and wait: its order against the other
    // blocks' is not what the race check models, so it is refused.
    let limbo = "\tbarrier.cluster.arrive.aligned;\n\tld.shared.f32 %f1, [buf];\n\tbarrier.cluster.wait.aligned;";
    let mut s = hand(".reqnctapercluster 2, 1, 1", limbo).unwrap();
    let e = err_of(s.launch("k", [2, 1, 1], [32, 1, 1], 0, &[P::U64(0)]));
    assert!(
        e.contains("between barrier.cluster.arrive and barrier.cluster.wait"),
        "{e}"
    );
}

#[test]
fn without_cluster_dims_a_block_is_a_cluster_of_one() {
    // The cluster barrier orders the block's own threads; rank 0 is the
    // block itself, rank 1 is outside; the registers say so.
    let body = "\tmov.u32 %r1, %tid.x;\n\tshl.b32 %r2, %r1, 2;\n\tmov.u32 %r3, buf;\n\tadd.s32 %r4, %r3, %r2;\n\tst.shared.f32 [%r4], 0f3F800000;\n\tbarrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;\n\txor.b32 %r5, %r2, 4;\n\tadd.s32 %r6, %r3, %r5;\n\tmov.u32 %r7, 0;\n\tmapa.shared::cluster.u32 %r8, %r6, %r7;\n\tld.shared::cluster.f32 %f1, [%r8];\n\tmov.u32 %r9, %cluster_nctarank;\n\tmov.u32 %r10, %cluster_ctarank;\n\tld.param.u64 %rd1, [k_param_0];\n\tcvta.to.global.u64 %rd2, %rd1;\n\tmul.wide.u32 %rd3, %r1, 12;\n\tadd.s64 %rd4, %rd2, %rd3;\n\tst.global.f32 [%rd4], %f1;\n\tst.global.u32 [%rd4+4], %r9;\n\tst.global.u32 [%rd4+8], %r10;";
    let mut s = hand("", body).unwrap();
    let out = s.alloc(32 * 12).unwrap();
    s.launch("k", [1, 1, 1], [32, 1, 1], 0, &[P::Ptr(out)])
        .unwrap();
    let got: Vec<u32> = down(&s, out, 96);
    for t in 0..32 {
        assert_eq!(
            got[t * 3..t * 3 + 3],
            [1.0f32.to_bits(), 1, 0],
            "thread {t}"
        );
    }
    let far = body.replace("mov.u32 %r7, 0;", "mov.u32 %r7, 1;");
    let mut s = hand("", &far).unwrap();
    let out = s.alloc(32 * 12).unwrap();
    let e = err_of(s.launch("k", [1, 1, 1], [32, 1, 1], 0, &[P::Ptr(out)]));
    assert!(e.contains("to rank 1") && e.contains("has 1 blocks"), "{e}");
    // Without the barrier, the read of the neighbour's word races.
    let racy = body.replace(
        "\tbarrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;\n",
        "",
    );
    let mut s = hand("", &racy).unwrap();
    let out = s.alloc(32 * 12).unwrap();
    let e = err_of(s.launch("k", [1, 1, 1], [32, 1, 1], 0, &[P::Ptr(out)]));
    assert!(
        e.contains("data race") || e.contains("never-written"),
        "{e}"
    );
}
