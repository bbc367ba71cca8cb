//! Keras: `.npz` arrays in `model.set_weights()` order.
//!
//! Our layout *is* Keras' (DESIGN §1), so the weights go out as they are.
//! A model of N LSTM layers is Keras' `Sequential([LSTM(H,
//! return_sequences=True), ..., LSTM(H), Dense(V, softmax)])`, whose
//! `get_weights()` order is every LSTM layer's kernel, recurrent kernel and
//! bias, bottom layer first, then the Dense kernel and bias: the arrays go
//! out in that order, under our names (`lstm.*`, `lstm_1.*`, ..., `dense.*`).
//! Read back: our own names, or `arr_0` .. `arr_{3N+1}`, which is what
//! `np.savez(path, *model.get_weights())` writes from a Keras model.

use super::npz::{Array, Data, read_npz, write_npz};
use super::{Found, expect_shape};
use crate::inference::Model;
use crate::model::{LayerTensor, MAX_LAYERS, ParamLayout, Params, TENSOR_NAMES};

/// Names of the metadata arrays next to the weights.
const VOCAB: &str = "vocab";
const MAXLEN: &str = "maxlen";
const LOWERCASE: &str = "lowercase";

pub(super) fn to_bytes(model: &Model) -> Result<Vec<u8>, String> {
    let p = model.params();
    let mut tensors = p.layout().named();
    // Layout order has the Dense layer after layer 0; Keras' has it last.
    let dense = tensors.drain(3..5).collect::<Vec<_>>();
    tensors.extend(dense);
    let mut arrays: Vec<Array> = tensors
        .into_iter()
        .map(|t| Array {
            data: Data::F32(p.flat()[t.range].to_vec()),
            name: t.name,
            shape: t.shape,
        })
        .collect();
    let chars = model.vocab().chars().to_vec();
    arrays.push(Array {
        name: VOCAB.into(),
        shape: vec![chars.len()],
        data: Data::Chars(chars),
    });
    arrays.push(Array {
        name: MAXLEN.into(),
        shape: vec![],
        data: Data::Int(vec![model.maxlen() as i64]),
    });
    arrays.push(Array {
        name: LOWERCASE.into(),
        shape: vec![],
        data: Data::Bool(vec![model.lowercase()]),
    });
    write_npz(&arrays)
}

pub(super) fn from_bytes(bytes: &[u8]) -> Result<Found, String> {
    if bytes.starts_with(b"\x89HDF") {
        return Err("this is HDF5 (Keras' .weights.h5), not .npz: in Python, \
             np.savez(path, *model.get_weights()) writes what this reads"
            .into());
    }
    let arrays = read_npz(bytes)?;
    let find = |name: &str| arrays.iter().find(|a| a.name == name);
    // Our names, else np.savez's positional ones; either way in layout
    // order (layer 0, the Dense layer, layers 1 ..), and N.
    let upper_names = |k: usize| LayerTensor::ALL.map(|t| t.name(k));
    let positional = (0..)
        .take_while(|i| find(&format!("arr_{i}")).is_some())
        .count();
    let (weights, layers): (Vec<&Array>, usize) = if TENSOR_NAMES.iter().all(|n| find(n).is_some())
    {
        let mut w: Vec<&Array> = TENSOR_NAMES.iter().filter_map(|n| find(n)).collect();
        let mut k = 1;
        while let Some(kernel) = find(&LayerTensor::Kernel.name(k)) {
            w.push(kernel);
            for name in &upper_names(k)[1..] {
                w.push(find(name).ok_or_else(|| {
                    format!("`{}` is there but `{name}` is missing", kernel.name)
                })?);
            }
            k += 1;
        }
        (w, k)
    } else if positional >= 5 && (positional - 2).is_multiple_of(3) {
        let n = (positional - 2) / 3;
        let arr = |i: usize| find(&format!("arr_{i}")).expect("counted above");
        // get_weights(): LSTM layers bottom first, then the Dense layer.
        let mut w = vec![arr(0), arr(1), arr(2), arr(3 * n), arr(3 * n + 1)];
        w.extend((3..3 * n).map(arr));
        (w, n)
    } else {
        let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
        return Err(format!(
            "expected arrays {} (and lstm_1.*, ... for more LSTM layers), or arr_0 .. arr_{{3N+1}} \
             from np.savez(path, *model.get_weights()) of N LSTM layers and a Dense layer; it \
             has {names:?}",
            TENSOR_NAMES.join(", ")
        ));
    };
    if layers > MAX_LAYERS {
        return Err(format!(
            "{layers} LSTM layers; this model has at most {MAX_LAYERS}"
        ));
    }
    // Arrays the model does not have would be dropped without a word: a
    // two-layer model's .npz, or an optimizer's state saved alongside.
    let known = |name: &str| {
        weights.iter().any(|w| w.name == name) || [VOCAB, MAXLEN, LOWERCASE].contains(&name)
    };
    let extra: Vec<&str> = arrays
        .iter()
        .map(|a| a.name.as_str())
        .filter(|n| !known(n))
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "it has arrays this model ({layers} LSTM layer(s), one Dense layer) does not: {}; \
             the weights are {} and lstm_1.*, ... for more LSTM layers (or arr_0 .. arr_{{3N+1}})",
            extra.join(", "),
            TENSOR_NAMES.join(", ")
        ));
    }
    let (v, h) = agreed_dims(&weights)?;
    let mut params = Params::<f32>::zeros_for(ParamLayout::stacked(v, h, layers));
    let named = params.layout().named();
    let shapes: Vec<Vec<usize>> = named.iter().map(|t| t.shape.clone()).collect();
    let wrong: Vec<String> = weights
        .iter()
        .zip(&shapes)
        .filter(|(a, shape)| &a.shape != *shape)
        .map(|(a, shape)| format!("`{}` has shape {:?}, expected {shape:?}", a.name, a.shape))
        .collect();
    if !wrong.is_empty() {
        return Err(format!(
            "{} (V={v}, H={h}, as the other arrays say)",
            wrong.join("; ")
        ));
    }
    for (a, t) in weights.iter().zip(&named) {
        expect_shape(&a.name, &a.shape, &t.shape)?;
        let data = a.to_f32();
        params.flat_mut()[t.range.clone()].copy_from_slice(
            &data.ok_or_else(|| format!("`{}` is not float32 or float64", a.name))?,
        );
    }
    let vocab = match find(VOCAB).map(|a| &a.data) {
        Some(Data::Chars(c)) => Some(c.clone()),
        Some(_) => return Err(format!("`{VOCAB}` is not an array of characters (<U1)")),
        None => None,
    };
    let maxlen = match find(MAXLEN).map(|a| &a.data) {
        Some(Data::Int(n)) if n.len() == 1 && n[0] > 0 => Some(n[0] as usize),
        Some(_) => return Err(format!("`{MAXLEN}` is not one positive integer")),
        None => None,
    };
    let lowercase = match find(LOWERCASE).map(|a| &a.data) {
        Some(Data::Bool(b)) if b.len() == 1 => Some(b[0]),
        Some(_) => return Err(format!("`{LOWERCASE}` is not one boolean")),
        None => None,
    };
    Ok(Found {
        params,
        vocab,
        maxlen,
        lowercase,
    })
}

/// V and H as most of the five arrays give them (each of `lstm.kernel`
/// [V, 4H], `lstm.recurrent_kernel` [H, 4H], `lstm.bias` [4H],
/// `dense.kernel` [H, V], `dense.bias` [V] says what it can), so that one
/// array of the wrong shape is the one blamed, not the four that agree with
/// each other; a tie goes to `lstm.kernel`.
fn agreed_dims(w: &[&Array]) -> Result<(usize, usize), String> {
    let mut vs = Vec::new();
    let mut hs = Vec::new();
    let quarter = |n: usize| n.is_multiple_of(4).then_some(n / 4);
    match w[0].shape.as_slice() {
        [v, h4] => {
            vs.push(*v);
            hs.extend(quarter(*h4));
        }
        other => {
            return Err(format!(
                "`{}` has shape {other:?}, expected [V, 4H]",
                w[0].name
            ));
        }
    }
    if let [h, h4] = w[1].shape.as_slice() {
        hs.push(*h);
        hs.extend(quarter(*h4));
    }
    if let [h4] = w[2].shape.as_slice() {
        hs.extend(quarter(*h4));
    }
    if let [h, v] = w[3].shape.as_slice() {
        hs.push(*h);
        vs.push(*v);
    }
    if let [v] = w[4].shape.as_slice() {
        vs.push(*v);
    }
    let most = |xs: &[usize]| {
        let mut best: Option<(usize, usize)> = None;
        for &x in xs {
            let n = xs.iter().filter(|&&y| y == x).count();
            if best.is_none_or(|(_, m)| n > m) {
                best = Some((x, n));
            }
        }
        best.map(|(x, _)| x)
    };
    match (most(&vs), most(&hs)) {
        (Some(v), Some(h)) if v > 0 && h > 0 => Ok((v, h)),
        _ => Err(format!(
            "`{}` has shape {:?}, which implies no V > 0 and 4H a positive multiple of 4",
            w[0].name, w[0].shape
        )),
    }
}
