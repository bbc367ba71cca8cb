//! Keras (.npz) and PyTorch (.safetensors) export and import: exact round
//! trips, files shaped the way the frameworks write them, every refusal, the
//! CLI, and — when a Python with torch is around — the frameworks themselves
//! predicting with the exported weights, against the CPU reference.
//!
//! Python: `CHARLSTM_PYTHON` (default `python3`) with torch, safetensors and
//! numpy (`bash scripts/setup-interop.sh` makes one); Keras is used when it
//! imports too. Without torch the framework test says SKIPPED, unless
//! `CHARLSTM_REQUIRE_INTEROP=1` (CI) makes that a failure.

mod common;

use charlstm_cuda::model::{ParamLayout, Params, Tensor};
use std::path::Path;
use std::process::{Command, Stdio};

use charlstm_cuda::interop::{self, ImportOptions};
use charlstm_cuda::{Error, Format, Model, Vocab};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Value, json};

/// Probabilities from the frameworks (float32) against the CPU reference.
const TOL: f64 = 1e-5;

fn model(keep_case: bool, maxlen: usize, hidden: usize, seed: u64) -> Model {
    let text = "The Will to Power; truth, and a free spirit? 0123";
    let vocab = Vocab::from_text(&if keep_case {
        text.to_string()
    } else {
        text.to_lowercase()
    });
    let params = common::random_params(vocab.len(), hidden, 0.5, seed).map(|x| x as f32);
    Model::new(params, vocab, maxlen, !keep_case).unwrap()
}

#[test]
fn export_import_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for (keep_case, maxlen) in [(false, 60), (true, 17)] {
        let m = model(keep_case, maxlen, 8, 11);
        for (format, name) in [(Format::Keras, "w.npz"), (Format::Pytorch, "w.safetensors")] {
            let path = dir.path().join(name);
            interop::export(&m, format, &path).unwrap();
            let back = interop::import(&path, format, &ImportOptions::default()).unwrap();
            // Bit for bit: transposes move values, `bias + 0.0` keeps them.
            assert_eq!(back.params(), m.params(), "{format}");
            assert_eq!(back.vocab(), m.vocab(), "{format}");
            assert_eq!(back.maxlen(), maxlen, "{format}");
            assert_eq!(back.lowercase(), !keep_case, "{format}");
        }
    }
}

/// Raw little-endian f64 bytes of f32 values.
fn le_f64(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect()
}

/// A state dict as PyTorch's `save_file` writes it (no vocabulary),
/// under other module names and in float64.
fn foreign_torch_file(path: &Path, m: &Model, extra: Option<&str>) {
    let p = m.params();
    let (v, h) = (p.vocab, p.hidden);
    let t = |x: &[f32], r: usize, c: usize| -> Vec<f32> {
        (0..c)
            .flat_map(|j| (0..r).map(move |i| x[i * c + j]))
            .collect()
    };
    let half: Vec<f32> = p[Tensor::Bias].iter().map(|b| b * 0.25).collect();
    let rest: Vec<f32> = p[Tensor::Bias].iter().map(|b| b * 0.75).collect();
    let mut named = vec![
        (
            "rnn.weight_ih_l0",
            vec![4 * h, v],
            le_f64(&t(&p[Tensor::Kernel], v, 4 * h)),
        ),
        (
            "rnn.weight_hh_l0",
            vec![4 * h, h],
            le_f64(&t(&p[Tensor::RecurrentKernel], h, 4 * h)),
        ),
        ("rnn.bias_ih_l0", vec![4 * h], le_f64(&half)),
        ("rnn.bias_hh_l0", vec![4 * h], le_f64(&rest)),
        (
            "decoder.weight",
            vec![v, h],
            le_f64(&t(&p[Tensor::DenseKernel], h, v)),
        ),
        ("decoder.bias", vec![v], le_f64(&p[Tensor::DenseBias])),
    ];
    if let Some(name) = extra {
        named.push((name, vec![4 * h], le_f64(&half)));
    }
    let views: Vec<(String, TensorView)> = named
        .iter()
        .map(|(n, s, b)| {
            (
                n.to_string(),
                TensorView::new(Dtype::F64, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn pytorch_import_reads_state_dicts_and_sums_the_biases() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(false, 60, 6, 5);
    let path = dir.path().join("torch.safetensors");
    foreign_torch_file(&path, &m, None);

    let err = interop::import(&path, Format::Pytorch, &ImportOptions::default()).unwrap_err();
    assert!(err.to_string().contains("--vocab-from"), "{err}");
    assert!(err.hint().contains("state_dict"), "{}", err.hint());

    let options = ImportOptions {
        vocab: Some(m.vocab().clone()),
        ..ImportOptions::default()
    };
    let back = interop::import(&path, Format::Pytorch, &options).unwrap();
    assert_eq!(back.maxlen(), 60);
    assert!(back.lowercase());
    // bias = 0.25 b + 0.75 b, in f32: equal to rounding.
    assert!(close(
        &back.params()[Tensor::Bias],
        &m.params()[Tensor::Bias],
        1e-6
    ));
    assert_eq!(back.params()[Tensor::Kernel], m.params()[Tensor::Kernel]);
    assert_eq!(
        back.params()[Tensor::DenseKernel],
        m.params()[Tensor::DenseKernel]
    );

    foreign_torch_file(&path, &m, Some("rnn.bias_ih_l1"));
    let err = interop::import(&path, Format::Pytorch, &options).unwrap_err();
    // A second layer's bias alone: its weights are named as missing.
    assert!(
        err.to_string().contains("no tensor `*weight_ih_l1`"),
        "{err}"
    );
}

#[test]
fn imports_refuse_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(false, 60, 4, 9);
    let npz = dir.path().join("w.npz");
    let st = dir.path().join("w.safetensors");
    interop::export(&m, Format::Keras, &npz).unwrap();
    interop::export(&m, Format::Pytorch, &st).unwrap();

    let expect =
        |path: &Path, format: Format, options: &ImportOptions, needle: &str| match interop::import(
            path, format, options,
        ) {
            Err(e @ Error::Interop { .. }) => {
                assert!(e.to_string().contains(needle), "{e} lacks {needle:?}")
            }
            other => panic!(
                "{}: expected an interop error, got {other:?}",
                path.display()
            ),
        };
    let none = ImportOptions::default();
    expect(&npz, Format::Pytorch, &none, "not a safetensors file");
    expect(&st, Format::Keras, &none, "not a zip archive");
    let other_vocab = ImportOptions {
        vocab: Some(Vocab::from_text("abc")),
        ..ImportOptions::default()
    };
    expect(
        &npz,
        Format::Keras,
        &other_vocab,
        "differs from the one given",
    );

    let h5 = dir.path().join("model.weights.h5");
    std::fs::write(&h5, b"\x89HDF\r\n\x1a\n rest of an HDF5 file").unwrap();
    expect(
        &h5,
        Format::Keras,
        &none,
        "np.savez(path, *model.get_weights())",
    );

    // A PyTorch file whose vocabulary is one symbol short of its weights.
    let short = ImportOptions {
        vocab: Some(Vocab::from_chars(m.vocab().chars()[1..].to_vec()).unwrap()),
        ..ImportOptions::default()
    };
    let foreign = dir.path().join("foreign.safetensors");
    foreign_torch_file(&foreign, &m, None);
    expect(&foreign, Format::Pytorch, &short, "the vocabulary has");

    assert_eq!("torch".parse::<Format>().unwrap(), Format::Pytorch);
    assert!("onnx".parse::<Format>().is_err());
    assert_eq!(Format::from_path(&npz), Some(Format::Keras));
    assert_eq!(Format::from_path(Path::new("x.h5")), None);
}

fn bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_charlstm-cuda"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary starts")
}

#[test]
fn cli_export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let m = model(false, 30, 8, 3);
    let ckpt = dir.path().join("model.safetensors");
    m.save(&ckpt).unwrap();

    for (format, file) in [(None, "k.npz"), (Some("pytorch"), "t.bin")] {
        let out = dir.path().join(file);
        let mut args = vec!["export".into(), "--checkpoint".into(), s(&ckpt)];
        if let Some(f) = format {
            args.extend(["--format".into(), f.into()]);
        }
        args.extend(["-o".into(), s(&out)]);
        let o = bin(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("maxlen=30"));

        let back = dir.path().join(format!("{file}.ckpt.safetensors"));
        let mut args = vec!["import".into(), s(&out)];
        if let Some(f) = format {
            args.extend(["--format".into(), f.into()]);
        }
        args.extend(["-o".into(), s(&back)]);
        let o = bin(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let loaded = Model::load(&back).unwrap();
        assert_eq!(loaded.params(), m.params());
        assert_eq!((loaded.vocab(), loaded.maxlen()), (m.vocab(), 30));
    }

    // A foreign file needs --vocab-from; the checkpoint gives vocab and maxlen.
    let foreign = dir.path().join("foreign.safetensors");
    foreign_torch_file(&foreign, &m, None);
    let out = dir.path().join("runs/new/last.safetensors");
    let o = bin(&["import", &s(&foreign), "-o", &s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--vocab-from") && err.contains("hint: "));
    let o = bin(&[
        "import",
        &s(&foreign),
        "--vocab-from",
        &s(&ckpt),
        "-o",
        &s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(Model::load(&out).unwrap().maxlen(), 30);

    let o = bin(&["export", "--checkpoint", &s(&ckpt), "-o", "weights.h5"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--format"));
}

/// `export` and `import` say how many layers the weights hold, in both
/// formats (a stack's file is not the notebook's).
#[test]
fn cli_export_and_import_name_the_layers() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let vocab = Vocab::from_text("the will to power; truth, and a free spirit? 0123");
    let mut rng = common::Rng(5);
    let mut params = Params::<f32>::zeros_for(ParamLayout::stacked(vocab.len(), 6, 3));
    params.flat_mut().iter_mut().for_each(|x| *x = rng.f32(0.5));
    let ckpt = dir.path().join("stack.safetensors");
    Model::new(params, vocab, 12, true)
        .unwrap()
        .save(&ckpt)
        .unwrap();
    for file in ["w.safetensors", "w.npz"] {
        let weights = dir.path().join(file);
        let o = bin(&["export", "--checkpoint", &s(&ckpt), "-o", &s(&weights)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(" H=6 N=3 "), "export of {file}: {out}");
        let back = dir.path().join(format!("back-{file}.safetensors"));
        let o = bin(&["import", &s(&weights), "-o", &s(&back)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(" H=6 N=3 "), "import of {file}: {out}");
        assert_eq!(Model::load(&back).unwrap().layers(), 3);
    }
}

/// `CHARLSTM_PYTHON` (or python3) when it can import torch; otherwise says
/// SKIPPED, or fails when `CHARLSTM_REQUIRE_INTEROP=1`.
fn python_with_torch() -> Option<String> {
    let python = std::env::var("CHARLSTM_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import torch, safetensors, numpy"])
        .output();
    let why = match probe {
        Ok(o) if o.status.success() => return Some(python),
        Ok(o) => String::from_utf8_lossy(&o.stderr)
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .to_string(),
        Err(e) => format!("{python} does not run: {e}"),
    };
    let msg = format!(
        "no torch in {python} ({why}); set CHARLSTM_PYTHON, or run bash scripts/setup-interop.sh"
    );
    if std::env::var("CHARLSTM_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
        panic!("CHARLSTM_REQUIRE_INTEROP=1 but {msg}");
    }
    println!("SKIPPED: {msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

/// Largest |a - b| over rows of probabilities, and the check of their count.
fn max_error(ours: &[Vec<f32>], theirs: &Value, what: &str) -> f64 {
    let rows = theirs
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no probs"));
    assert_eq!(rows.len(), ours.len(), "{what}: row count");
    let mut worst = 0.0f64;
    for (o, t) in ours.iter().zip(rows) {
        let t: Vec<f64> = t
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(t.len(), o.len(), "{what}: row length");
        for (a, b) in o.iter().zip(t) {
            worst = worst.max((f64::from(*a) - b).abs());
        }
    }
    println!(
        "{what}: max |ours - theirs| = {worst:.3e} over {} windows",
        ours.len()
    );
    assert!(worst <= TOL, "{what}: max error {worst:.3e} > {TOL:e}");
    worst
}

#[test]
fn frameworks_predict_like_the_cpu_reference() {
    let Some(python) = python_with_torch() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let m = model(false, 12, 16, 21);
    let (v, h) = (m.vocab().len(), m.hidden());
    let torch_file = dir.path().join("ours.safetensors");
    let keras_file = dir.path().join("ours.npz");
    interop::export(&m, Format::Pytorch, &torch_file).unwrap();
    interop::export(&m, Format::Keras, &keras_file).unwrap();
    let make_torch = dir.path().join("native.safetensors");
    let make_keras = dir.path().join("native.npz");

    let mut rng = common::Rng(7);
    let windows: Vec<Vec<u32>> = [12, 12, 12, 5, 1, 30]
        .iter()
        .map(|&len| (0..len).map(|_| rng.range(0, v) as u32).collect())
        .collect();
    let request = json!({
        "windows": windows, "vocab": v, "hidden": h, "seed": 3,
        "torch_file": torch_file, "keras_file": keras_file,
        "make_torch": make_torch, "make_keras": make_keras,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop_check.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &request).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("versions: {}", got["versions"]);

    let predict = |model: &Model| -> Vec<Vec<f32>> {
        windows
            .iter()
            .map(|w| model.predict_indices(w, w.len()).unwrap())
            .collect()
    };
    let ours = predict(&m);
    let symbols: Vec<String> = m.vocab().chars().iter().map(|c| c.to_string()).collect();

    max_error(&ours, &got["torch"]["probs"], "PyTorch, our export");
    assert_eq!(got["torch"]["vocab"], json!(symbols));
    assert_eq!(got["torch"]["maxlen"], 12);
    let with_vocab = ImportOptions {
        vocab: Some(m.vocab().clone()),
        ..ImportOptions::default()
    };
    let native = interop::import(&make_torch, Format::Pytorch, &with_vocab).unwrap();
    max_error(
        &predict(&native),
        &got["torch_native"]["probs"],
        "PyTorch's own file, imported",
    );

    if let Some(why) = got["keras"]["skipped"].as_str() {
        println!("SKIPPED (Keras part): {why}");
        return;
    }
    max_error(&ours, &got["keras"]["probs"], "Keras, our export");
    assert_eq!(got["keras"]["vocab"], json!(symbols));
    assert_eq!(got["keras"]["maxlen"], 12);
    let native = interop::import(&make_keras, Format::Keras, &with_vocab).unwrap();
    max_error(
        &predict(&native),
        &got["keras_native"]["probs"],
        "Keras' own np.savez, imported",
    );
}
