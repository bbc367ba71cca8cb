//! The training loop as a library: NaN handling, stopping mid-epoch and
//! resuming bit for bit, observers.

mod common;
use charlstm_cuda::model::Tensor;
use common::NanAt;

use charlstm_cuda::model::{Checkpoint, Hyper, TrainState};
use charlstm_cuda::rundir::{EpochRow, LAST_CHECKPOINT, epoch_checkpoint_name};
use charlstm_cuda::train::{BatchEvent, Control, Observer, Silent, TrainConfig, Trainer};
use charlstm_cuda::{Backend, Device};
use charlstm_cuda::{Error, OneHotCorpus};

fn text() -> String {
    let mut s = String::new();
    let mut x: u32 = 7;
    for _ in 0..2500 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        s.push(b"abcdefgh ."[(x >> 24) as usize % 10] as char);
    }
    s
}

fn hyper() -> Hyper {
    Hyper {
        maxlen: 8,
        step: 2,
        hidden: 12,
        batch: 40,
        epochs: 3,
        seed: 9,
        ..Hyper::default()
    }
}

fn config(out: Option<std::path::PathBuf>) -> TrainConfig {
    TrainConfig {
        gen_length: 5,
        out,
        ..TrainConfig::default()
    }
}

#[test]
fn nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint() {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let dir = tempfile::tempdir().expect("dir");
    let h = hyper();
    let (engine, per_epoch) = NanAt::in_epoch_2(&corpus, &h);
    let out = Some(dir.path().into());
    let mut trainer = Trainer::builder(&corpus)
        .hyper(h)
        .config(config(out))
        .engine(Box::new(engine), TrainState::default())
        .build()
        .expect("trainer");
    assert_eq!(trainer.batches_per_epoch(), per_epoch);
    match trainer.run(&mut Silent) {
        Err(
            e @ Error::NonFiniteLoss {
                epoch: 2, batch: 3, ..
            },
        ) => {
            assert!(e.to_string().contains("NaN"), "{e}");
            assert!(e.hint().contains("last good checkpoint"), "{}", e.hint());
        }
        other => panic!("expected NonFiniteLoss at epoch 2 batch 3, got {other:?}"),
    }
    let last = Checkpoint::load(&dir.path().join(LAST_CHECKPOINT)).expect("last good checkpoint");
    assert_eq!(
        last.state.epochs_done, 1,
        "the last checkpoint is the end of epoch 1"
    );
    assert!(dir.path().join(epoch_checkpoint_name(1)).exists());
    assert!(!dir.path().join(epoch_checkpoint_name(2)).exists());
    assert!(last.params[Tensor::Kernel].iter().all(|x| x.is_finite()));
}

/// Stops after a given number of batches in total.
struct StopAfter {
    batches: usize,
    seen: usize,
    epochs: Vec<f64>,
}

impl Observer for StopAfter {
    fn on_batch(&mut self, e: &BatchEvent) -> Control {
        self.seen += 1;
        assert!(e.running_loss.is_finite() && e.batch <= e.batches);
        if self.seen == self.batches {
            Control::Stop
        } else {
            Control::Continue
        }
    }
    fn on_epoch(&mut self, e: &EpochRow) -> Control {
        assert_eq!(e.samples.len(), 4);
        assert!(
            e.samples
                .iter()
                .all(|s| s.text.chars().count() == 5 && s.seed.chars().count() == 8)
        );
        self.epochs.push(e.loss);
        Control::Continue
    }
}

/// A fresh run of `hyper()` on the CPU writing to `dir`.
fn fresh<'c>(corpus: &'c OneHotCorpus, dir: &std::path::Path) -> Trainer<'c> {
    Trainer::builder(corpus)
        .hyper(hyper())
        .config(config(Some(dir.into())))
        .backend(Backend::Cpu)
        .build()
        .expect("trainer")
}

#[test]
fn stopped_mid_epoch_and_resumed_equals_uninterrupted() {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let cpu = Device::Exact(Backend::Cpu);

    let straight_dir = tempfile::tempdir().expect("dir");
    let mut straight = fresh(&corpus, straight_dir.path());
    let per_epoch = straight.batches_per_epoch();
    let mut obs = StopAfter {
        batches: usize::MAX,
        seen: 0,
        epochs: vec![],
    };
    let summary = straight.run(&mut obs).expect("run");
    assert!(!summary.stopped);
    assert_eq!(obs.epochs.len(), 3);

    let dir = tempfile::tempdir().expect("dir");
    let mut first = fresh(&corpus, dir.path());
    let mut stopper = StopAfter {
        batches: per_epoch + 2,
        seen: 0,
        epochs: vec![],
    };
    let summary = first.run(&mut stopper).expect("run");
    assert!(summary.stopped);
    assert_eq!((summary.state.epochs_done, summary.state.batch), (1, 2));
    drop(first);

    let ckpt = Checkpoint::load(&dir.path().join(LAST_CHECKPOINT)).expect("checkpoint");
    assert_eq!((ckpt.state.epochs_done, ckpt.state.batch), (1, 2));
    let mut resumed = Trainer::builder(&corpus)
        .resume(ckpt)
        .config(config(Some(dir.path().into())))
        .device(cpu)
        .build()
        .expect("resume");
    let mut obs2 = StopAfter {
        batches: usize::MAX,
        seen: 0,
        epochs: vec![],
    };
    resumed.run(&mut obs2).expect("resumed run");

    let a = Checkpoint::load(&straight_dir.path().join(LAST_CHECKPOINT)).expect("a");
    let b = Checkpoint::load(&dir.path().join(LAST_CHECKPOINT)).expect("b");
    assert_eq!(
        a.params, b.params,
        "weights differ after an interrupted + resumed run"
    );
    assert_eq!(a.rmsprop, b.rmsprop);
    assert_eq!(a.state, b.state, "progress and per-epoch losses differ");
    // The observer of the resumed run saw epochs 2 and 3 with the same losses.
    assert_eq!(obs2.epochs, obs.epochs[1..].to_vec());
}

#[test]
fn keep_checkpoints_keeps_the_newest_n_and_last() {
    let corpus = OneHotCorpus::from_text(&text(), true).expect("corpus");
    let dir = tempfile::tempdir().expect("dir");
    let cfg = TrainConfig {
        keep_checkpoints: Some(2),
        ..config(Some(dir.path().into()))
    };
    let h = Hyper {
        epochs: 4,
        ..hyper()
    };
    let mut t = Trainer::builder(&corpus)
        .hyper(h.clone())
        .config(cfg.clone())
        .backend(Backend::Cpu)
        .build()
        .expect("trainer");
    t.run(&mut Silent).expect("run");
    let exists = |e: usize| dir.path().join(epoch_checkpoint_name(e)).exists();
    assert_eq!(
        (1..=4).map(exists).collect::<Vec<_>>(),
        [false, false, true, true]
    );
    assert!(dir.path().join(LAST_CHECKPOINT).exists());
    // The newest kept one is the same model as last.safetensors.
    let last = Checkpoint::load(&dir.path().join(LAST_CHECKPOINT)).expect("last");
    let newest = Checkpoint::load(&dir.path().join(epoch_checkpoint_name(4))).expect("4");
    assert_eq!(last.params, newest.params);

    let zero = TrainConfig {
        keep_checkpoints: Some(0),
        ..cfg
    };
    let err = Trainer::builder(&corpus)
        .hyper(h)
        .config(zero)
        .backend(Backend::Cpu)
        .build()
        .err()
        .expect("0 is refused")
        .to_string();
    assert!(err.contains("config.keep_checkpoints"), "{err}");
}
