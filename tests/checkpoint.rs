//! Checkpoint files: round trip, atomic writes, and every malformed file refused.

use charlstm_cuda::model::Tensor;
use std::collections::HashMap;
use std::path::Path;

use charlstm_cuda::Error;
use charlstm_cuda::model::{Checkpoint, Hyper, Params, TrainState, init_params};
use safetensors::tensor::{Dtype, TensorView};

fn sample() -> Checkpoint {
    let vocab: Vec<char> = " .abcdeé".chars().collect();
    let hyper = Hyper {
        hidden: 6,
        maxlen: 10,
        ..Hyper::default()
    };
    let params = init_params(vocab.len(), hyper.hidden, 3);
    let mut rmsprop = Params::zeros(vocab.len(), hyper.hidden);
    rmsprop[Tensor::Bias]
        .iter_mut()
        .enumerate()
        .for_each(|(i, x)| *x = i as f32 * 0.25);
    let state = TrainState {
        epochs_done: 3,
        batch: 2,
        step: 99,
        loss_sum: 1.5,
        seen: 7,
        epoch_losses: vec![2.0, 1.8, 1.7],
        val_losses: Vec::new(),
        stream: None,
    };
    Checkpoint {
        vocab,
        hyper,
        params,
        rmsprop,
        state,
        run: None,
    }
}

fn expect_refused(bytes: &[u8], needle: &str) {
    match Checkpoint::from_bytes(bytes, Path::new("x.safetensors")) {
        Err(e @ Error::Checkpoint { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
            assert!(
                msg.contains("x.safetensors"),
                "message {msg:?} does not name the file"
            );
        }
        other => panic!("expected a checkpoint error mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn round_trip_is_exact() {
    let c = sample();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.safetensors");
    c.save(&path).expect("save");
    assert_eq!(Checkpoint::load(&path).expect("load"), c);
    // Saving again over it leaves no temporary files behind.
    c.save(&path).expect("save again");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("c.safetensors")]);
}

#[test]
fn readable_as_plain_safetensors_with_keras_names_and_shapes() {
    let c = sample();
    let bytes = c.to_bytes().expect("bytes");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let (v, h) = (c.vocab.len(), c.hyper.hidden);
    for (name, shape) in [
        ("lstm.kernel", vec![v, 4 * h]),
        ("lstm.recurrent_kernel", vec![h, 4 * h]),
        ("lstm.bias", vec![4 * h]),
        ("dense.kernel", vec![h, v]),
        ("dense.bias", vec![v]),
        ("rmsprop.lstm.bias", vec![4 * h]),
    ] {
        let t = st.tensor(name).expect(name);
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        assert_eq!(t.dtype(), Dtype::F32);
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("meta");
    let meta = meta.metadata().clone().expect("metadata");
    let vocab: Vec<String> = serde_json::from_str(&meta["vocab"]).expect("vocab json");
    assert_eq!(vocab.concat(), " .abcdeé");
    assert_eq!(meta["maxlen"], "10");
    assert_eq!(meta["hidden"], "6");
    assert_eq!(meta["lowercase"], "true");
}

#[test]
fn truncation_at_any_length_is_refused() {
    let bytes = sample().to_bytes().expect("bytes");
    for cut in (0..bytes.len()).step_by(37).chain([bytes.len() - 1]) {
        assert!(
            Checkpoint::from_bytes(&bytes[..cut], Path::new("x.safetensors")).is_err(),
            "cut at {cut} accepted"
        );
    }
}

#[test]
fn bit_flips_in_the_data_fail_the_checksum() {
    let bytes = sample().to_bytes().expect("bytes");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8")) as usize;
    for pos in [8 + n, 8 + n + 100, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[pos] ^= 0x01;
        expect_refused(&b, "checksum");
    }
}

/// Builds a file with chosen tensors and metadata, for the malformed cases.
fn custom(
    c: &Checkpoint,
    edit: impl Fn(&mut HashMap<String, String>, &mut Vec<(String, Vec<usize>, Dtype, Vec<u8>)>),
) -> Vec<u8> {
    let good = c.to_bytes().expect("bytes");
    let st = safetensors::SafeTensors::deserialize(&good).expect("st");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&good).expect("meta");
    let mut meta = meta.metadata().clone().expect("metadata");
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec(), t.dtype(), t.data().to_vec()))
        .collect();
    edit(&mut meta, &mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, d, b)| (n.clone(), TensorView::new(*d, s.clone(), b).expect("view")))
        .collect();
    safetensors::serialize(views, Some(meta)).expect("serialize")
}

#[test]
fn malformed_metadata_and_tensors_are_named() {
    let c = sample();
    expect_refused(
        &custom(&c, |m, _| {
            m.remove("vocab");
        }),
        "`vocab` is missing",
    );
    expect_refused(
        &custom(&c, |m, _| {
            m.insert("format".into(), "other".into());
        }),
        "format",
    );
    expect_refused(
        &custom(&c, |m, _| {
            m.insert("format_version".into(), "9".into());
        }),
        "version 9",
    );
    expect_refused(
        &custom(&c, |m, _| {
            m.insert("vocab".into(), "[\"ab\"]".into());
        }),
        "not one character",
    );
    expect_refused(
        &custom(&c, |m, _| {
            m.insert("vocab".into(), "[\"b\",\"a\"]".into());
        }),
        "sorted",
    );
    expect_refused(
        &custom(&c, |m, _| {
            m.insert("vocab".into(), "nope".into());
        }),
        "vocab",
    );
    expect_refused(
        &custom(&c, |m, _| {
            m.insert("hidden".into(), "7".into());
        }),
        "`hidden` disagrees",
    );
    expect_refused(
        &custom(&c, |m, _| {
            m.insert("state".into(), "{}".into());
        }),
        "state",
    );
    // Counters no run reaches would overflow when training continues.
    for (field, value) in [
        ("batch", "18446744073709551615"),
        ("seen", "4294967296"),
        ("epoch", "4294967296"),
        ("step", "18446744073709551615"),
    ] {
        let mut state = serde_json::to_value(&c.state).expect("state json");
        state[field] = serde_json::from_str(value).expect("number");
        expect_refused(
            &custom(&c, |m, _| {
                m.insert("state".into(), state.to_string());
            }),
            &format!("`{field}` is {value}"),
        );
    }
    expect_refused(
        &custom(&c, |_, t| t.retain(|x| x.0 != "dense.bias")),
        "`dense.bias` is missing",
    );
    expect_refused(
        &custom(&c, |_, t| {
            let b = t.iter_mut().find(|x| x.0 == "lstm.bias").expect("bias");
            b.1 = vec![2, b.1[0] / 2];
        }),
        "shape",
    );
    expect_refused(
        &custom(&c, |_, t| {
            let b = t.iter_mut().find(|x| x.0 == "dense.bias").expect("bias");
            b.2 = Dtype::I32;
        }),
        "not F32",
    );
}

#[test]
fn weights_without_optimizer_state_load_with_zero_state() {
    let c = sample();
    let bytes = custom(&c, |m, t| {
        t.retain(|x| !x.0.starts_with("rmsprop."));
        // The checksum covers what is in the file.
        let mut names: Vec<_> = t.iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut crc = crc32fast::Hasher::new();
        names.iter().for_each(|x| crc.update(&x.3));
        m.insert("checksum".into(), format!("{:08x}", crc.finalize()));
    });
    let back = Checkpoint::from_bytes(&bytes, Path::new("x.safetensors")).expect("loads");
    assert_eq!(back.params, c.params);
    assert_eq!(back.rmsprop, Params::zeros(c.vocab.len(), c.hyper.hidden));
}
