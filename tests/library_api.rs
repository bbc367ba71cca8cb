//! The API other crates use: `Trainer::builder` (fresh, resumed, from given
//! weights, stopped by a callback) and `Model` (predict, generate, files).

use charlstm_cuda::model::init_params;
use charlstm_cuda::{
    Backend, BatchEvent, Control, Error, Hyper, Model, Observer, OneHotCorpus, Silent, Strategy,
    TrainConfig, Trainer, Vocab,
};

fn corpus() -> OneHotCorpus {
    let text = "The will to power is the will to truth; a free spirit. ".repeat(12);
    OneHotCorpus::from_text(&text, true).unwrap()
}

fn small() -> Hyper {
    Hyper {
        maxlen: 10,
        step: 3,
        hidden: 12,
        batch: 16,
        epochs: 2,
        ..Hyper::default()
    }
}

fn quiet() -> TrainConfig {
    TrainConfig {
        gen_length: 0,
        ..TrainConfig::default()
    }
}

#[test]
fn builder_trains_like_the_constructor() {
    let c = corpus();
    let mut built = Trainer::builder(&c)
        .hyper(small())
        .config(quiet())
        .backend(Backend::Cpu)
        .build()
        .unwrap();
    assert_eq!(built.backend(), Backend::Cpu);
    // The same run on an engine opened by hand.
    let params = init_params(c.vocab().len(), small().hidden, small().seed);
    let rmsprop = charlstm_cuda::Params::zeros(params.vocab, params.hidden);
    let (engine, _) = charlstm_cuda::Device::Exact(Backend::Cpu)
        .open_engine(&c, &small(), params, rmsprop)
        .unwrap();
    let mut direct = Trainer::builder(&c)
        .hyper(small())
        .config(quiet())
        .engine(engine, Default::default())
        .build()
        .unwrap();
    let a = built.run(&mut Silent).unwrap();
    let b = direct.run(&mut Silent).unwrap();
    assert_eq!(a.state.epoch_losses, b.state.epoch_losses);
    assert_eq!(built.model().unwrap(), direct.model().unwrap());
}

/// Stops after `after` batches, counting what it saw.
struct StopAfter {
    after: usize,
    seen: usize,
}

impl Observer for StopAfter {
    fn on_batch(&mut self, _: &BatchEvent) -> Control {
        self.seen += 1;
        if self.seen == self.after {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

#[test]
fn a_callback_stops_and_resume_continues() {
    let c = corpus();
    let mut t = Trainer::builder(&c)
        .hyper(small())
        .config(quiet())
        .backend(Backend::Cpu)
        .build()
        .unwrap();
    let mut stop = StopAfter { after: 3, seen: 0 };
    let summary = t.run(&mut stop).unwrap();
    assert!(summary.stopped);
    assert_eq!((summary.state.epochs_done, summary.state.batch), (0, 3));

    // Resumed with more epochs: allowed. With another H: refused.
    let ckpt = t.checkpoint().unwrap();
    let mut more = Trainer::builder(&c)
        .resume(ckpt.clone())
        .epochs(3)
        .config(quiet())
        .backend(Backend::Cpu)
        .build()
        .unwrap();
    assert_eq!(more.hyper().epochs, 3);
    let done = more.run(&mut Silent).unwrap();
    assert_eq!(done.state.epochs_done, 3);
    let err = Trainer::builder(&c)
        .resume(ckpt)
        .hyper(Hyper {
            hidden: 13,
            ..small()
        })
        .backend(Backend::Cpu)
        .build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("hidden = 13"), "{err}");
}

#[test]
fn training_starts_from_given_weights() {
    let c = corpus();
    let v = c.vocab().len();
    let model = Model::new(init_params(v, 12, 99), c.vocab().clone(), 10, true).unwrap();
    let mut t = Trainer::builder(&c)
        .weights(model.clone())
        .config(quiet())
        .backend(Backend::Cpu)
        .build()
        .unwrap();
    assert_eq!(t.model().unwrap().params(), model.params());
    t.run(&mut StopAfter { after: 2, seen: 0 }).unwrap();
    assert_ne!(t.model().unwrap().params(), model.params());

    let other = Model::new(init_params(3, 12, 1), Vocab::from_text("xyz"), 10, true).unwrap();
    let err = Trainer::builder(&c)
        .weights(other)
        .backend(Backend::Cpu)
        .build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("vocabulary"), "{err}");
    let err = Trainer::builder(&c)
        .weights(model)
        .hyper(Hyper {
            hidden: 8,
            ..small()
        })
        .backend(Backend::Cpu)
        .build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("H=12"), "{err}");
}

#[test]
fn model_predicts_batches_of_any_lengths() {
    let vocab = Vocab::from_text("abc de");
    let model = Model::new(init_params(vocab.len(), 8, 4), vocab, 6, true).unwrap();
    let windows = ["abc", "Dea", "e", "abcdeab", "ABC"];
    let probs = model.predict(&windows).unwrap();
    for (w, p) in windows.iter().zip(&probs) {
        let x = model.encode(w).unwrap();
        assert_eq!(p, &model.predict_indices(&x, x.len()).unwrap(), "{w}");
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Lower-cased like the training text.
    assert_eq!(probs[0], probs[4]);
    assert!(matches!(
        model.predict(&["abz"]),
        Err(Error::UnknownChar { ch: 'z' })
    ));
    assert!(model.predict(&[""]).is_err());
    assert!(model.predict(&[]).unwrap().is_empty());

    let a = model
        .generate("Ab", 30, Strategy::Temperature(1.0), 5)
        .unwrap();
    assert_eq!(
        a,
        model
            .generate("ab", 30, Strategy::Temperature(1.0), 5)
            .unwrap()
    );
    assert_eq!(a.chars().count(), 30);
    let wrong = Model::new(init_params(4, 8, 4), Vocab::from_text("abc"), 6, true);
    assert!(wrong.unwrap_err().to_string().contains("V=4"));
}

// Issue 15, item 10: the library as another crate sees it.

#[test]
fn library_errors_name_fields_not_command_line_flags() {
    let bad = Hyper {
        lr: -1.0,
        ..small()
    };
    let e = bad.validate().unwrap_err();
    assert!(
        e.to_string().contains("invalid value for hyper.lr: -1"),
        "{e}"
    );
    assert!(
        e.hint().contains("hyper.lr") && e.hint().contains("0.01"),
        "{}",
        e.hint()
    );
    let e = Strategy::temperature(-1.0).unwrap_err();
    assert!(
        e.to_string().contains("invalid value for temperature:"),
        "{e}"
    );
    let c = corpus();
    let e = Trainer::builder(&c)
        .hyper(small())
        .config(TrainConfig {
            temperatures: vec![0.5, 0.0],
            ..quiet()
        })
        .backend(Backend::Cpu)
        .build()
        .err()
        .unwrap();
    assert!(e.to_string().contains("config.temperatures"), "{e}");
    for e in [
        e,
        "gpu".parse::<charlstm_cuda::Device>().unwrap_err(),
        "onnx".parse::<charlstm_cuda::Format>().unwrap_err(),
    ] {
        assert!(!e.to_string().contains("--"), "{e}");
        assert!(!e.hint().contains("--"), "{}", e.hint());
    }
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn a_trainer_moves_to_a_worker_thread() {
    let c = corpus();
    let mut t = Trainer::builder(&c)
        .hyper(small())
        .config(quiet())
        .backend(Backend::Cpu)
        .build()
        .unwrap();
    assert_send(&t);
    let done = std::thread::scope(|s| s.spawn(move || t.run(&mut Silent)).join().unwrap()).unwrap();
    assert_eq!(done.state.epochs_done, 2);
}

#[test]
fn the_library_trainer_owns_its_output_directory() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Trainer::builder(&c)
            .hyper(small())
            .config(quiet())
            .out(dir.path())
            .backend(Backend::Cpu)
            .build()
    };
    let first = open().unwrap();
    match open() {
        Err(e @ Error::RunLocked { .. }) => assert!(e.to_string().contains("in use"), "{e}"),
        other => panic!("expected RunLocked, got {:?}", other.err()),
    }
    drop(first);
    open().unwrap();
}

#[test]
fn model_debug_shows_shapes_not_weights() {
    let vocab = Vocab::from_text("abc de");
    let model = Model::new(init_params(vocab.len(), 64, 4), vocab, 6, true).unwrap();
    let shown = format!("{model:?}");
    assert!(shown.len() < 400, "{} characters: {shown}", shown.len());
    assert!(
        shown.contains("6 symbols") && shown.contains("hidden: 64") && shown.contains("crc32"),
        "{shown}"
    );
}

#[test]
fn an_export_import_round_trip_compares_equal() {
    let c = corpus();
    let mut t = Trainer::builder(&c)
        .hyper(small())
        .config(quiet())
        .backend(Backend::Cpu)
        .build()
        .unwrap();
    t.run(&mut Silent).unwrap();
    let model = t.model().unwrap();
    assert_eq!(model.hyper().epochs, 2);
    let dir = tempfile::tempdir().unwrap();
    for (format, file) in [
        (charlstm_cuda::Format::Keras, "m.npz"),
        (charlstm_cuda::Format::Pytorch, "m.safetensors"),
    ] {
        let path = dir.path().join(file);
        charlstm_cuda::interop::export(&model, format, &path).unwrap();
        let back = charlstm_cuda::interop::import(&path, format, &Default::default()).unwrap();
        assert_ne!(
            back.hyper(),
            model.hyper(),
            "the run's record is not exported"
        );
        assert_eq!(back, model, "{format}");
    }
    // What the model computes still counts.
    let other = Model::new(model.params().clone(), model.vocab().clone(), 11, true).unwrap();
    assert_ne!(other, model);
}

/// Stops after one batch, keeping the event.
#[derive(Default)]
struct FirstBatch(Option<BatchEvent>);
impl Observer for FirstBatch {
    fn on_batch(&mut self, e: &BatchEvent) -> Control {
        self.0 = Some(e.clone());
        Control::Stop
    }
}

#[test]
fn train_state_counts_epochs_done_in_the_events_numbering() {
    let c = corpus();
    let mut t = Trainer::builder(&c)
        .hyper(small())
        .config(quiet())
        .backend(Backend::Cpu)
        .build()
        .unwrap();
    let mut first = FirstBatch::default();
    let s = t.run(&mut first).unwrap();
    let event = first.0.unwrap();
    assert_eq!((event.epoch, s.state.epochs_done), (1, 0));
    assert_eq!(s.state.epoch_in_progress(), event.epoch);
    let done = t.run(&mut Silent).unwrap();
    assert_eq!(done.state.epochs_done, 2);
}

#[test]
fn model_predicts_on_a_chosen_backend() {
    let vocab = Vocab::from_text("abc de");
    let model = Model::new(init_params(vocab.len(), 8, 4), vocab, 6, true).unwrap();
    let windows = ["abc", "dea", "e", "abcdea"];
    let cpu = model.predict(&windows).unwrap();
    let sim = model.predict_on(Backend::Sim, &windows).unwrap();
    for (a, b) in cpu.iter().zip(&sim) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 + 1e-4 * x.abs(), "{x} vs {y}");
        }
    }
    let x = model.encode("abcdea").unwrap();
    assert_eq!(
        model.predict_indices_on(Backend::Sim, &x, 6).unwrap(),
        sim[3]
    );
}

/// A library user reads hints in the library's terms: none of them names a
/// command-line flag (`--lr`, `--device cpu`, `-o`); the CLI words its own
/// (issue 15, item 10).
#[test]
fn library_hints_name_no_command_line_flag() {
    use charlstm_cuda::error::DeviceError;
    use std::path::PathBuf;
    let p = || PathBuf::from("x");
    let s = || "why".to_string();
    let device = || "gpu0".to_string();
    let errors = [
        Error::Io {
            path: p(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        },
        Error::TextTooShort {
            chars: 1,
            needed: 61,
        },
        Error::NonFiniteLoss {
            epoch: 1,
            batch: 2,
            value: f32::NAN,
        },
        Error::Diverged { what: s() },
        Error::BackendUnavailable {
            backend: "cuda",
            what: s(),
        },
        Error::NoKernels { backend: "sim" },
        Error::BadPrediction { what: s() },
        Error::RunLocked {
            lock: p(),
            holder: s(),
        },
        Error::OutputIsInput {
            output: p(),
            input: p(),
            role: "text",
        },
        Error::OutputProtected {
            path: p(),
            what: s(),
        },
        Error::BenchInput {
            path: p(),
            what: s(),
        },
        Error::TooLong {
            name: "length",
            value: 2,
            max: 1,
        },
        Error::NonFiniteWeights {
            origin: s(),
            tensor: "lstm.kernel".into(),
            index: "[0, 0]".into(),
            value: f32::NAN,
        },
        Error::Device(DeviceError::SharedMemory {
            kernel: "k",
            requested: 1,
            limit: 0,
        }),
        Error::Device(DeviceError::OutOfMemory {
            device: device(),
            requested: 1,
            free: 0,
        }),
        Error::Device(DeviceError::CorpusTooLarge {
            device: device(),
            bytes: 1,
            free: 0,
        }),
        Error::Device(DeviceError::VocabTooLarge {
            device: device(),
            vocab: 1,
            hidden: 1,
            what: s(),
        }),
        Error::Device(DeviceError::Backend {
            device: device(),
            what: s(),
        }),
    ];
    for e in errors {
        let hint = e.hint();
        let flag = hint
            .split_whitespace()
            .find(|w| w.starts_with('-') && w.len() > 1 && !w.starts_with("--format"));
        assert!(flag.is_none(), "{e:?}: the hint names {flag:?}: {hint}");
    }
}
