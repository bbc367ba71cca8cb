//! The LSTM op on a device, used the way another crate would use it: its
//! own data, head, loss and optimizer on the host, the LSTM's forward and
//! backward on the device (`ops::LstmDevice`), no `Trainer`. The task and
//! the host side are `lstm_op`'s (examples/shared/op_task.rs): the loss
//! falls from ln 4 ≈ 1.39 towards 0, and the program fails if it has not
//! fallen below a third of that.
//!
//! ```text
//! cargo run --release --example lstm_op_gpu -- --device sim    # the PTX simulator
//! cargo run --release --example lstm_op_gpu -- --device cuda   # a GPU
//! cargo run --release --example lstm_op_gpu                    # cuda if there is one, else sim
//! cargo run --release --example lstm_op_gpu -- --steps 100      # fewer steps (default 300)
//! ```
//!
//! At 300 steps the simulator prints the very losses `lstm_op` prints on
//! the CPU (same weights, data and dropout masks, 4 decimals), in about
//! 90 s on one core; the CI runs 100 steps.
//!
//! The device buffers are the caller's (allocated here, once); every step
//! uploads the batch and the updated weights, runs forward, downloads y
//! for the head, uploads dL/dy, runs backward and downloads the gradients.
//! A crate that keeps its tensors in cudarc `CudaSlice`s calls
//! `ops::LstmCuda` on its own stream instead (docs/lstm-op.md).

#[path = "shared/op_task.rs"]
mod op_task;

use charlstm_cuda::gpu::{CudaDevice, GpuDevice, SimDevice};
use charlstm_cuda::ops::{
    DeviceGrads, DeviceLayer, DeviceOutput, DeviceSlice, LayerParams, Lstm, LstmDevice, Mode,
};
use charlstm_cuda::rng::{Purpose, RngStream};
use op_task::{B, H, LAYERS, LossLog, Model, SYMBOLS, T, batch};

const STEPS: u32 = 300;

const USAGE: &str = "usage: lstm_op_gpu [--device sim|cuda|auto] [--steps N]";

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// `len` f32s on the device.
fn alloc<D: GpuDevice>(dev: &mut D, len: usize) -> Res<DeviceSlice> {
    Ok(DeviceSlice::new(dev.alloc(len * 4)?, len))
}

/// One layer's three tensors on the device, shaped as `p`.
fn alloc_layer<D: GpuDevice>(dev: &mut D, p: &LayerParams<f32>) -> Res<DeviceLayer> {
    Ok(DeviceLayer {
        kernel: alloc(dev, p.kernel.len())?,
        recurrent_kernel: alloc(dev, p.recurrent_kernel.len())?,
        bias: alloc(dev, p.bias.len())?,
    })
}

fn train<D: GpuDevice>(dev: &mut D, steps: u32) -> Res<()> {
    println!("device: {}", dev.name());
    let lstm = Lstm::new(LAYERS, SYMBOLS, H)?.with_dropout(0.1)?;
    let mut model = Model::new(&lstm);
    let mut op = LstmDevice::new(&lstm);
    let weights = model
        .layers
        .iter()
        .map(|p| alloc_layer(dev, p))
        .collect::<Res<Vec<_>>>()?;
    let grads_d = model
        .layers
        .iter()
        .map(|p| alloc_layer(dev, p))
        .collect::<Res<Vec<_>>>()?;
    let state = LAYERS * B * H;
    let x = alloc(dev, T * B * SYMBOLS)?;
    let out = DeviceOutput {
        y: alloc(dev, T * B * H)?,
        h_n: alloc(dev, state)?,
        c_n: alloc(dev, state)?,
    };
    let dy_d = alloc(dev, T * B * H)?;
    let grads = DeviceGrads {
        dx: None,
        dh0: alloc(dev, state)?,
        dc0: alloc(dev, state)?,
        layers: &grads_d,
    };
    let mut host_grads: Vec<LayerParams<f32>> = model.layers.clone();
    let mut y = vec![0.0f32; T * B * H];
    let mut data = RngStream::new(2, Purpose::Shuffle, 0);
    let mut log = LossLog::new(steps);
    for step in 0..steps {
        let (sym, xs) = batch(&mut data);
        dev.upload_f32(x.ptr, &xs)?;
        for (d, p) in weights.iter().zip(&model.layers) {
            dev.upload_f32(d.kernel.ptr, &p.kernel)?;
            dev.upload_f32(d.recurrent_kernel.ptr, &p.recurrent_kernel)?;
            dev.upload_f32(d.bias.ptr, &p.bias)?;
        }
        let mode = Mode::Train { seed: 7, step };
        op.forward(dev, &weights, x, (T, B), None, None, mode, &out)?;
        dev.download_f32(out.y.ptr, &mut y)?;
        let (loss, dy, d_head_w, d_head_b) = model.head(&y, &sym);
        dev.upload_f32(dy_d.ptr, &dy)?;
        op.backward(dev, &weights, dy_d, None, None, &grads)?;
        for (d, g) in grads_d.iter().zip(&mut host_grads) {
            dev.download_f32(d.kernel.ptr, &mut g.kernel)?;
            dev.download_f32(d.recurrent_kernel.ptr, &mut g.recurrent_kernel)?;
            dev.download_f32(d.bias.ptr, &mut g.bias)?;
        }
        model.update(step, &host_grads, &d_head_w, &d_head_b);
        log.record(step, loss);
    }
    op.free(dev)?;
    log.check()
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut device, mut steps) = ("auto".to_string(), STEPS);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--device" => device = value.clone(),
            "--steps" => {
                steps = value.parse().ok().filter(|&s| s > 0).ok_or(format!(
                    "--steps {value:?}: pass a whole number of steps, at least 1"
                ))?
            }
            _ => return Err(format!("unknown argument {flag:?}; {USAGE}").into()),
        }
    }
    match device.as_str() {
        "sim" => train(&mut SimDevice::new(7), steps),
        "cuda" => train(&mut CudaDevice::new(0)?, steps),
        "auto" => match CudaDevice::probe() {
            Ok(_) => train(&mut CudaDevice::new(0)?, steps),
            Err(why) => {
                println!("no GPU ({why}): on the simulator");
                train(&mut SimDevice::new(7), steps)
            }
        },
        other => Err(format!("--device {other:?}: pass sim, cuda or auto").into()),
    }
}
