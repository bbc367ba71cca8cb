//! PyTorch: a safetensors state dict of
//! `lstm = nn.LSTM(V, H, num_layers=N, batch_first=True)` and
//! `fc = nn.Linear(H, V)`, loadable with
//! `model.load_state_dict(safetensors.torch.load_file(path))`.
//!
//! PyTorch stores `x @ W^T`-style weights: `weight_ih_l{k}` is layer k's
//! `kernel^T` (`lstm.kernel` for k = 0, `lstm_{k}.kernel` above it),
//! `weight_hh_l{k}` its `recurrent_kernel^T`, `fc.weight` is
//! `dense.kernel^T`. Its gates are i, f, g, o along the 4H axis, the same
//! order as Keras'. Between layers `nn.LSTM(dropout=p)` drops as
//! `ops::dropout` does, in training only, so a model's predictions match.
//!
//! Import accepts any module names as long as the LSTM is found by its
//! suffixes (`weight_ih_l0`, ..., and `_l1`, `_l2`, ... for more layers,
//! taken while `weight_ih_l{k}` exists) and the linear layer is `fc`, or
//! the one other `*.weight` / `*.bias` pair. Bidirectional and projected
//! LSTMs are refused by name: this model has none of them.

use crate::model::{LayerTensor, ParamLayout, Tensor};
use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{Found, dims, expect_shape, transpose, words};
use crate::inference::Model;
use crate::model::Params;

const FC_W: &str = "fc.weight";
const FC_B: &str = "fc.bias";

pub(super) fn to_bytes(model: &Model) -> Result<Vec<u8>, String> {
    let p = model.params();
    let (v, h) = (p.vocab, p.hidden);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for k in 0..p.layers {
        let w = p.lstm_weights(k);
        let input = if k == 0 { v } else { h };
        tensors.extend([
            (
                format!("lstm.weight_ih_l{k}"),
                vec![4 * h, input],
                transpose(w.kernel, input, 4 * h),
            ),
            (
                format!("lstm.weight_hh_l{k}"),
                vec![4 * h, h],
                transpose(w.recurrent_kernel, h, 4 * h),
            ),
            (format!("lstm.bias_ih_l{k}"), vec![4 * h], w.bias.to_vec()),
            // PyTorch adds both biases; one carries Keras' bias, the other nothing.
            (format!("lstm.bias_hh_l{k}"), vec![4 * h], vec![0.0; 4 * h]),
        ]);
    }
    tensors.extend([
        (
            FC_W.to_string(),
            vec![v, h],
            transpose(&p[Tensor::DenseKernel], h, v),
        ),
        (FC_B.to_string(), vec![v], p[Tensor::DenseBias].to_vec()),
    ]);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, data)| data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), data) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, shape.clone(), data).map_err(|e| e.to_string())?;
        views.push((name.to_string(), view));
    }
    let symbols: Vec<String> = model
        .vocab()
        .chars()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let mut meta = HashMap::new();
    // `format: pt` is what safetensors.torch.save_file writes; tools check it.
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert(
        "vocab".to_string(),
        serde_json::to_string(&symbols).map_err(|e| e.to_string())?,
    );
    meta.insert("maxlen".to_string(), model.maxlen().to_string());
    meta.insert("lowercase".to_string(), model.lowercase().to_string());
    meta.insert("num_layers".to_string(), p.layers.to_string());
    safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

pub(super) fn from_bytes(bytes: &[u8]) -> Result<Found, String> {
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let names: Vec<String> = st.names().into_iter().map(String::from).collect();
    let listed = || {
        let mut n = names.clone();
        n.sort();
        format!("it has {n:?}")
    };
    for bad in ["_reverse", "weight_hr_l"] {
        if let Some(n) = names.iter().find(|n| n.contains(bad)) {
            return Err(format!(
                "`{n}`: only a unidirectional nn.LSTM without proj_size fits this model"
            ));
        }
    }
    let one = |suffix: &str| -> Result<String, String> {
        let found: Vec<&String> = names.iter().filter(|n| n.ends_with(suffix)).collect();
        match found.as_slice() {
            [n] => Ok((*n).clone()),
            [] => Err(format!("no tensor `*{suffix}`; {}", listed())),
            _ => Err(format!("several tensors `*{suffix}`: {found:?}")),
        }
    };
    // Layer k's four names, for k = 0, 1, ... while any of them exists
    // (one alone is an error naming the others).
    let mut layers: Vec<[String; 4]> = Vec::new();
    loop {
        let k = layers.len();
        let suffixes =
            ["weight_ih", "weight_hh", "bias_ih", "bias_hh"].map(|t| format!("{t}_l{k}"));
        if k > 0
            && !names
                .iter()
                .any(|n| suffixes.iter().any(|s| n.ends_with(s)))
        {
            break;
        }
        let [a, b, c, d] = &suffixes;
        layers.push([one(a)?, one(b)?, one(c)?, one(d)?]);
    }
    if layers.len() > crate::model::MAX_LAYERS {
        return Err(format!(
            "{} LSTM layers; this model has at most {}",
            layers.len(),
            crate::model::MAX_LAYERS
        ));
    }
    let lstm: Vec<&String> = layers.iter().flatten().collect();
    let [w_ih, ..] = &layers[0];
    let (fc_w, fc_b) = if names.iter().any(|n| n == FC_W) {
        (FC_W.to_string(), FC_B.to_string())
    } else {
        let rest: Vec<&String> = names.iter().filter(|n| !lstm.contains(n)).collect();
        let w: Vec<&&String> = rest.iter().filter(|n| n.ends_with(".weight")).collect();
        match w.as_slice() {
            [w] => (
                w.to_string(),
                format!("{}.bias", w.trim_end_matches(".weight")),
            ),
            _ => {
                return Err(format!(
                    "cannot tell the linear layer (`fc.weight`); {}",
                    listed()
                ));
            }
        }
    };
    let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>), String> {
        let t = st
            .tensor(name)
            .map_err(|_| format!("no tensor `{name}`; {}", listed()))?;
        Ok((t.shape().to_vec(), floats(name, t.dtype(), t.data())?))
    };
    let (shape, _) = get(w_ih)?;
    let (v, h) = match shape.as_slice() {
        [h4, v] => dims(w_ih, *v, *h4)?,
        other => return Err(format!("`{w_ih}` has shape {other:?}, expected [4H, V]")),
    };
    let mut params = Params::<f32>::zeros_for(ParamLayout::stacked(v, h, layers.len()));
    for (k, [w_ih, w_hh, b_ih, b_hh]) in layers.iter().enumerate() {
        let input = if k == 0 { v } else { h };
        let (shape, w_ih_data) = get(w_ih)?;
        expect_shape(w_ih, &shape, &[4 * h, input])?;
        let kernel = transpose(&w_ih_data, 4 * h, input);
        let (shape, data) = get(w_hh)?;
        expect_shape(w_hh, &shape, &[4 * h, h])?;
        let recurrent = transpose(&data, 4 * h, h);
        let (shape, ih) = get(b_ih)?;
        expect_shape(b_ih, &shape, &[4 * h])?;
        let (shape, hh) = get(b_hh)?;
        expect_shape(b_hh, &shape, &[4 * h])?;
        // The cell computes x W_ih^T + b_ih + h W_hh^T + b_hh: one bias is their sum.
        let bias: Vec<f32> = ih.iter().zip(&hh).map(|(a, b)| a + b).collect();
        let [kt, rt, bt] = if k == 0 {
            [Tensor::Kernel, Tensor::RecurrentKernel, Tensor::Bias]
                .map(|t| params.layout().range(t))
        } else {
            LayerTensor::ALL.map(|t| params.layout().layer_range(k, t))
        };
        params.flat_mut()[kt].copy_from_slice(&kernel);
        params.flat_mut()[rt].copy_from_slice(&recurrent);
        params.flat_mut()[bt].copy_from_slice(&bias);
    }
    let (shape, data) = get(&fc_w)?;
    expect_shape(&fc_w, &shape, &[v, h])?;
    params[Tensor::DenseKernel].copy_from_slice(&transpose(&data, v, h));
    let (shape, data) = get(&fc_b)?;
    expect_shape(&fc_b, &shape, &[v])?;
    params[Tensor::DenseBias].copy_from_slice(&data);

    let meta = header.metadata().clone().unwrap_or_default();
    let vocab = match meta.get("vocab") {
        Some(json) => {
            let symbols: Vec<String> = serde_json::from_str(json)
                .map_err(|e| format!("metadata `vocab` is not a JSON array of strings ({e})"))?;
            let mut chars = Vec::with_capacity(symbols.len());
            for s in symbols {
                let mut it = s.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) => chars.push(c),
                    _ => return Err(format!("metadata `vocab` entry {s:?} is not one character")),
                }
            }
            Some(chars)
        }
        None => None,
    };
    let maxlen = match meta.get("maxlen") {
        Some(s) => Some(
            s.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("metadata `maxlen` = {s:?} is not a positive integer"))?,
        ),
        None => None,
    };
    let lowercase = match meta.get("lowercase").map(String::as_str) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(s) => return Err(format!("metadata `lowercase` = {s:?} is not true or false")),
        None => None,
    };
    Ok(Found {
        params,
        vocab,
        maxlen,
        lowercase,
    })
}

/// A tensor's elements as f32: float32 as is, float64 / float16 / bfloat16
/// converted (a model saved with `.double()` or `.half()` still imports).
fn floats(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>, String> {
    Ok(match dtype {
        Dtype::F32 => words(data).map(f32::from_le_bytes).collect(),
        Dtype::F64 => words(data).map(|w| f64::from_le_bytes(w) as f32).collect(),
        Dtype::F16 => words(data)
            .map(|w| half::f16::from_le_bytes(w).to_f32())
            .collect(),
        Dtype::BF16 => words(data)
            .map(|w| half::bf16::from_le_bytes(w).to_f32())
            .collect(),
        other => return Err(format!("`{name}` is {other:?}, not a float type")),
    })
}
