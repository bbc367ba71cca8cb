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
    assert_eq!((summary.state.epoch, summary.state.batch), (0, 3));

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
    assert_eq!(done.state.epoch, 3);
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
