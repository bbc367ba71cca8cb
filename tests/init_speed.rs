//! Initialisation stays instant at the largest hidden size (issue 17): the
//! orthogonal recurrent kernel by blocked Householder QR, where the textbook
//! column-wise loop took 84-187 s at H = 1024 before the first line was
//! printed. A timing, so it means something in release only: `.ci/run`'s
//! release set runs it (`bash scripts/test.sh --release --test init_speed`);
//! a debug build says SKIPPED. The distribution and the sign convention are
//! tested in `src/model/init.rs`. A stack takes one QR a layer, timed
//! after the single layer.

use std::time::{Duration, Instant};

use charlstm_cuda::model::{LayerTensor, Tensor, init_params, init_stacked};

#[test]
fn init_at_h_1024_takes_seconds_not_minutes_for_one_layer_and_three() {
    if cfg!(debug_assertions) {
        println!(
            "SKIPPED: a timing, meaningful in release only \
             (`cargo test --release --test init_speed`)"
        );
        return;
    }
    // Under 1 s idle (0.74 s, docs/measured.md) and up to 2 s with both
    // cores busy: 10 s cannot flake on a loaded 2-core machine and still
    // catches a return to column-strided sweeps (84 s at the least).
    let start = Instant::now();
    let p = init_params(57, 1024, 1);
    let took = start.elapsed();
    println!("init_params(57, 1024): {took:?}");
    let k = &p[Tensor::RecurrentKernel];
    assert_eq!(k.len(), 1024 * 4096);
    assert!(k.iter().all(|x| x.is_finite()));
    assert!(
        took < Duration::from_secs(10),
        "init_params(57, 1024) took {took:?}"
    );

    // A stack draws one orthogonal recurrent kernel a layer, each its own
    // QR (its own Philox stream): N layers take N times as long, and so
    // does the bound. Timed after the one layer, not beside it.
    let start = Instant::now();
    let p = init_stacked(57, 1024, 3, 1);
    let took = start.elapsed();
    println!("init_stacked(57, 1024, 3 layers): {took:?}");
    for l in 1..3 {
        let k = p.layer(l, LayerTensor::RecurrentKernel);
        assert_eq!(k.len(), 1024 * 4096);
        assert!(k.iter().all(|x| x.is_finite()));
    }
    assert!(
        took < Duration::from_secs(30),
        "init_stacked(57, 1024, 3) took {took:?}"
    );
}
