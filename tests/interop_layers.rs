//! Interop of stacked models (issue 17): PyTorch's `nn.LSTM(num_layers=N)`
//! names (`weight_ih_l{k}`, ...) and Keras' `set_weights` order out and
//! back, and checked in the frameworks themselves
//! (`tests/fixtures/torch_layers_check.py` with `CHARLSTM_PYTHON`,
//! `tests/fixtures/keras_layers_check.py` with `CHARLSTM_KERAS_PYTHON`,
//! else `CHARLSTM_PYTHON` (scripts/setup-interop.sh installs Keras, run on
//! the PyTorch backend without TensorFlow), else
//! `.venv-peers/bin/python`, see scripts/peers/README.md):
//! next-character probabilities of 2- and 3-layer models within 1e-5 of
//! the CPU reference, of our export and of the framework's own file
//! imported.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use charlstm_cuda::interop::{self, ImportOptions};
use charlstm_cuda::model::{ParamLayout, Params};
use charlstm_cuda::{Format, Model, Vocab};
use serde_json::{Value, json};

const TOL: f64 = 1e-5;

fn model(layers: usize, hidden: usize, seed: u64) -> Model {
    let vocab = Vocab::from_text("the will to power; truth, and a free spirit? 0123");
    let mut rng = charlstm_cuda::rng::RngStream::new(seed, charlstm_cuda::rng::Purpose::Sample, 3);
    let mut params = Params::<f32>::zeros_for(ParamLayout::stacked(vocab.len(), hidden, layers));
    params
        .flat_mut()
        .iter_mut()
        .for_each(|x| *x = (0.5 * (2.0 * rng.next_f64() - 1.0)) as f32);
    Model::new(params, vocab, 12, true).expect("model")
}

#[test]
fn a_stack_exports_and_imports_exactly_in_pytorch_names() {
    let dir = tempfile::tempdir().expect("dir");
    let m = model(3, 6, 1);
    let path = dir.path().join("w.safetensors");
    interop::export(&m, Format::Pytorch, &path).expect("export");
    let bytes = std::fs::read(&path).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut names: Vec<&str> = st.names();
    names.sort();
    for k in 0..3 {
        for t in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
            let name = format!("lstm.{t}_l{k}");
            assert!(names.contains(&name.as_str()), "{name} in {names:?}");
        }
    }
    assert_eq!(
        st.tensor("lstm.weight_ih_l1").expect("l1").shape(),
        [24, 6],
        "layer 1 reads H values"
    );
    let back = interop::import(&path, Format::Pytorch, &ImportOptions::default()).expect("import");
    assert_eq!(back.params(), m.params());
    assert_eq!(back.layers(), 3);
}

/// The Python in `var` (or `default`) when it can import `modules`.
fn python_with(var: &str, default: &str, modules: &str) -> Option<String> {
    let python = std::env::var(var).unwrap_or_else(|_| default.into());
    // Keras' backend chosen as the check scripts choose it.
    let probe = format!(
        "import importlib.util, os; os.environ.setdefault('KERAS_BACKEND', \
         'tensorflow' if importlib.util.find_spec('tensorflow') else 'torch'); import {modules}"
    );
    let ok = Command::new(&python)
        .args(["-c", &probe])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let msg = format!("no {modules} in {python}; set {var}");
    if std::env::var("CHARLSTM_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
        panic!("CHARLSTM_REQUIRE_INTEROP=1 but {msg}");
    }
    println!("SKIPPED: {msg}");
    None
}

/// Runs `tests/fixtures/{script}` with `request` on stdin; its JSON answer.
fn run_script(python: &str, script: &str, request: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(script);
    let mut child = Command::new(python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    serde_json::to_writer(child.stdin.take().expect("stdin"), request).expect("request");
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn max_error(ours: &[Vec<f32>], theirs: &Value, what: &str) -> f64 {
    let rows = theirs.as_array().expect("probs");
    assert_eq!(rows.len(), ours.len(), "{what}: row count");
    let mut worst = 0.0f64;
    for (o, t) in ours.iter().zip(rows) {
        let t = t.as_array().expect("row");
        assert_eq!(t.len(), o.len(), "{what}: row length");
        for (a, b) in o.iter().zip(t) {
            worst = worst.max((f64::from(*a) - b.as_f64().expect("number")).abs());
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
fn stacks_of_two_and_three_layers_predict_in_pytorch_like_the_cpu_reference() {
    let Some(python) = python_with("CHARLSTM_PYTHON", "python3", "torch, safetensors") else {
        return;
    };
    for layers in [2, 3] {
        pytorch_predicts_like_the_cpu(&python, layers);
    }
}

fn pytorch_predicts_like_the_cpu(python: &str, layers: usize) {
    let dir = tempfile::tempdir().expect("dir");
    let m = model(layers, 16, 21 + layers as u64);
    let v = m.vocab().len();
    let torch_file = dir.path().join("ours.safetensors");
    let make_torch = dir.path().join("native.safetensors");
    interop::export(&m, Format::Pytorch, &torch_file).expect("export");
    let mut rng = common::Rng(7);
    let windows: Vec<Vec<u32>> = [12, 12, 5, 1, 30]
        .iter()
        .map(|&len| (0..len).map(|_| rng.range(0, v) as u32).collect())
        .collect();
    let request = json!({
        "windows": windows, "vocab": v, "hidden": 16, "layers": layers, "dropout": 0.3,
        "seed": 3, "torch_file": torch_file, "make_torch": make_torch,
    });
    let got = run_script(python, "torch_layers_check.py", &request);
    println!("{layers} layers, versions: {}", got["versions"]);
    let predict = |model: &Model| -> Vec<Vec<f32>> {
        windows
            .iter()
            .map(|w| model.predict_indices(w, w.len()).expect("predict"))
            .collect()
    };
    max_error(
        &predict(&m),
        &got["torch"]["probs"],
        &format!("PyTorch, our {layers}-layer export"),
    );
    let with_vocab = ImportOptions {
        vocab: Some(m.vocab().clone()),
        ..ImportOptions::default()
    };
    let native = interop::import(&make_torch, Format::Pytorch, &with_vocab).expect("import");
    assert_eq!(native.layers(), layers);
    max_error(
        &predict(&native),
        &got["torch_native"]["probs"],
        &format!("PyTorch's own {layers}-layer file, imported"),
    );
}

#[test]
fn stacks_of_two_and_three_layers_predict_in_keras_like_the_cpu_reference() {
    let peers = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv-peers/bin/python");
    let fallback = std::env::var("CHARLSTM_PYTHON").unwrap_or(peers.into());
    let Some(python) = python_with("CHARLSTM_KERAS_PYTHON", &fallback, "keras") else {
        return;
    };
    for layers in [2, 3] {
        keras_predicts_like_the_cpu(&python, layers);
    }
}

fn keras_predicts_like_the_cpu(python: &str, layers: usize) {
    let dir = tempfile::tempdir().expect("dir");
    let m = model(layers, 8, 21 + layers as u64);
    let v = m.vocab().len();
    let keras_file = dir.path().join("ours.npz");
    let make_keras = dir.path().join("native.npz");
    interop::export(&m, Format::Keras, &keras_file).expect("export");
    let mut rng = common::Rng(9);
    let windows: Vec<Vec<u32>> = [12, 4, 1]
        .iter()
        .map(|&len| (0..len).map(|_| rng.range(0, v) as u32).collect())
        .collect();
    let request = json!({
        "windows": windows, "vocab": v, "hidden": 8, "layers": layers,
        "keras_file": keras_file, "make_keras": make_keras,
    });
    let got = run_script(python, "keras_layers_check.py", &request);
    println!("{layers} layers, versions: {}", got["versions"]);
    let predict = |model: &Model| -> Vec<Vec<f32>> {
        windows
            .iter()
            .map(|w| model.predict_indices(w, w.len()).expect("predict"))
            .collect()
    };
    max_error(
        &predict(&m),
        &got["keras"]["probs"],
        &format!("Keras, our {layers}-layer export"),
    );
    // np.savez's arr_0 .., in get_weights() order.
    let with_vocab = ImportOptions {
        vocab: Some(m.vocab().clone()),
        ..ImportOptions::default()
    };
    let native = interop::import(&make_keras, Format::Keras, &with_vocab).expect("import");
    assert_eq!(native.layers(), layers);
    max_error(
        &predict(&native),
        &got["keras_native"]["probs"],
        &format!("Keras' own {layers}-layer np.savez, imported"),
    );
}

#[test]
fn a_stack_exports_and_imports_exactly_as_keras_arrays() {
    let dir = tempfile::tempdir().expect("dir");
    let m = model(3, 5, 2);
    let path = dir.path().join("w.npz");
    interop::export(&m, Format::Keras, &path).expect("export");
    let back = interop::import(&path, Format::Keras, &ImportOptions::default()).expect("import");
    assert_eq!(back.params(), m.params());
    assert_eq!(back.layers(), 3);
}
