//! Running out of things: disk space while a checkpoint is written, device
//! memory (a `GpuDevice` wrapper with a budget, failing each allocation in
//! turn), a corpus larger than the device, and a vocabulary too large for
//! the kernels' shared memory (a wrapper with a small limit). Each is a
//! clear error, or a working fallback, and leaves nothing behind.

mod common;

use charlstm_cuda::sample::{GenMode, GenerateRequest};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use charlstm_cuda::cpu::CpuEngine;
use charlstm_cuda::device;
use charlstm_cuda::engine::Batch;
use charlstm_cuda::gpu::SimDevice;
use charlstm_cuda::gpu::{
    DeviceError, DevicePtr, GpuDevice, GpuEngine, GpuModel, KernelArg, LaunchConfig,
};
use charlstm_cuda::model::{Checkpoint, Hyper, Params, init_params};
use charlstm_cuda::sample::Strategy;
use charlstm_cuda::{Backend, Engine};
use charlstm_cuda::{Error, OneHotCorpus, Result};

/// Accepts `room` bytes, then answers every write as a full disk does.
struct FullDisk<'w> {
    inner: &'w mut dyn Write,
    room: usize,
}

impl Write for FullDisk<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".charlstm-"))
        .collect()
}

fn checkpoint(seed: u64) -> Checkpoint {
    Checkpoint {
        vocab: "abcd".chars().collect(),
        hyper: Hyper {
            hidden: 8,
            ..Hyper::default()
        },
        params: init_params(4, 8, seed),
        rmsprop: Params::zeros(4, 8),
        state: Default::default(),
        run: None,
    }
}

/// The disk fills up halfway through the new file: the error names the file
/// and the cause, the hint says what to do, the old file is untouched and
/// no temporary file is left.
#[test]
fn a_full_disk_while_saving_names_the_file_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.safetensors");
    let old = checkpoint(1);
    old.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let new = checkpoint(2).to_bytes().unwrap();
    let err = charlstm_cuda::io::write_atomically(&path, |w| {
        FullDisk {
            inner: w,
            room: new.len() / 2,
        }
        .write_all(&new)
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::Io { path: p, .. } if p == &path),
        "{err:?}"
    );
    assert!(
        msg.contains("last.safetensors") && msg.contains("No space left on device"),
        "{msg}"
    );
    assert!(err.hint().contains("free disk space"), "{}", err.hint());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the old checkpoint changed"
    );
    assert_eq!(Checkpoint::load(&path).unwrap(), old);
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
    );
}

/// A real write failure from the kernel: `train --resume` under a file size
/// limit (RLIMIT_FSIZE, SIGXFSZ ignored: writes past it fail with EFBIG, as
/// they fail with ENOSPC on a full disk) cannot write epoch 2's checkpoint.
/// It exits 1 naming the file; last.safetensors is still epoch 1's, no
/// temporary file is left, and resuming without the limit trains on.
#[cfg(unix)]
#[test]
fn a_write_refused_by_the_os_mid_run_keeps_the_last_good_checkpoint() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("t.txt");
    let text: String = (0..1500).map(|i| ["ab ", "cd ", "efg "][i % 3]).collect();
    std::fs::write(&corpus, text).unwrap();
    let out = dir.path().join("run");
    let train = |epochs: &str, resume: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_charlstm-cuda"));
        c.args(["train", "--device", "cpu", "--quiet", "--gen-length", "0"])
            .args(["--steps-per-epoch", "2", "--maxlen", "8", "--hidden", "12"])
            .args(["--epochs", epochs, "--corpus"])
            .arg(&corpus)
            .arg("--out")
            .arg(&out);
        if resume {
            c.arg("--resume");
        }
        c
    };
    assert!(train("1", false).status().unwrap().success());
    let last = out.join("last.safetensors");
    let before = std::fs::read(&last).unwrap();
    assert!(
        before.len() > 4096,
        "the checkpoint must be larger than the limit"
    );
    let mut limited = train("2", true);
    // SAFETY: runs in the child between fork and exec; signal and setrlimit
    // are async-signal-safe and touch only the child's own state.
    unsafe {
        limited.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: 4096,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = limited.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("epoch-002.safetensors") && err.contains("File too large"),
        "{err}"
    );
    assert!(err.contains("hint: free disk space"), "{err}");
    assert_eq!(
        std::fs::read(&last).unwrap(),
        before,
        "last.safetensors changed"
    );
    assert_eq!(Checkpoint::load(&last).unwrap().state.epochs_done, 1);
    assert!(!out.join("epoch-002.safetensors").exists());
    assert!(temp_files(&out).is_empty(), "{:?}", temp_files(&out));
    // Space again: the run goes on from epoch 1.
    assert!(train("2", true).status().unwrap().success());
    assert_eq!(Checkpoint::load(&last).unwrap().state.epochs_done, 2);
}

/// The simulator with a memory budget, a failing allocation on demand, a
/// shared-memory limit, and a record of what is live and what ran.
struct Limited {
    inner: SimDevice,
    budget: usize,
    fail_at: Option<usize>,
    max_shared: u32,
    allocs: usize,
    live: HashMap<DevicePtr, usize>,
    launched: Vec<String>,
}

impl Limited {
    fn new() -> Self {
        Limited {
            inner: SimDevice::new(7),
            budget: usize::MAX,
            fail_at: None,
            max_shared: 227 * 1024,
            allocs: 0,
            live: HashMap::new(),
            launched: Vec::new(),
        }
    }
}

impl GpuDevice for Limited {
    fn name(&self) -> String {
        "limited simulator".into()
    }
    fn alloc(&mut self, bytes: usize) -> Result<DevicePtr> {
        let k = self.allocs;
        self.allocs += 1;
        let used: usize = self.live.values().sum();
        if self.fail_at == Some(k) || bytes > self.budget.saturating_sub(used) {
            return Err(DeviceError::OutOfMemory {
                device: self.name(),
                requested: bytes,
                free: self.budget.saturating_sub(used),
            }
            .into());
        }
        let p = self.inner.alloc(bytes)?;
        self.live.insert(p, bytes);
        Ok(p)
    }
    fn alloc_zeroed(&mut self, bytes: usize) -> Result<DevicePtr> {
        let p = self.alloc(bytes)?;
        self.inner.upload(p, &vec![0; bytes])?;
        Ok(p)
    }
    fn free(&mut self, ptr: DevicePtr) -> Result<()> {
        assert!(
            self.live.remove(&ptr).is_some(),
            "free of {ptr:?}, not live"
        );
        self.inner.free(ptr)
    }
    fn upload(&mut self, dst: DevicePtr, bytes: &[u8]) -> Result<()> {
        self.inner.upload(dst, bytes)
    }
    fn download(&mut self, src: DevicePtr, out: &mut [u8]) -> Result<()> {
        self.inner.download(src, out)
    }
    fn launch(&mut self, m: &str, k: &str, cfg: LaunchConfig, args: &[KernelArg]) -> Result<()> {
        assert!(
            cfg.shared_bytes <= self.max_shared,
            "{k}: launched past the limit"
        );
        self.launched.push(k.to_string());
        self.inner.launch(m, k, cfg, args)
    }
    fn synchronize(&mut self) -> Result<()> {
        self.inner.synchronize()
    }
    fn max_shared_bytes(&self) -> u32 {
        self.max_shared
    }
    fn multiprocessors(&self) -> u32 {
        self.inner.multiprocessors()
    }
    fn time<F: FnOnce(&mut Self) -> Result<()>>(&mut self, f: F) -> Result<f64> {
        f(self).map(|()| 0.0)
    }
}

fn corpus(symbols: usize, len: usize) -> OneHotCorpus {
    let sym = |i: usize| char::from_u32(0xE000 + i as u32).unwrap();
    let mut text: String = (0..symbols).map(sym).collect();
    text.extend((0..len).map(|i| sym((i * 7 + i / 3) % symbols)));
    OneHotCorpus::from_text(&text, false).unwrap()
}

fn hyper(hidden: usize, batch: usize) -> Hyper {
    Hyper {
        maxlen: 3,
        step: 1,
        hidden,
        batch,
        seed: 3,
        ..Hyper::default()
    }
}

/// Everything a run asks of the device: the engine, an epoch order, two
/// steps, a larger eval batch (the batch buffers grow), predict, generate.
fn workflow<D: GpuDevice>(dev: D, corpus: &OneHotCorpus, hy: &Hyper) -> Result<()> {
    let v = corpus.vocab().len();
    let params = init_params(v, hy.hidden, hy.seed);
    let ms = Params::zeros(v, hy.hidden);
    let mut e = GpuEngine::new(dev, Backend::Sim, corpus, hy, params, ms)?;
    let order: Vec<u32> = (0..8).map(|i| i * 3).collect();
    e.begin_epoch(&order, 0)?;
    e.train(Batch::Next(4))?;
    e.train(Batch::Next(order.len() - 4))?;
    e.eval_batch(&[1, 2, 3, 4, 5, 6])?;
    e.predict(&[0, 1, 2, 3, 4, 0, 1, 2], 4)?;
    e.generate(&GenerateRequest {
        seed_indices: &[0, 1, 2],
        maxlen: 3,
        length: 2,
        strategies: &[Strategy::Temperature(1.0)],
        seed: 1,
        stream: 0,
        mode: GenMode::Window,
    })?;
    Ok(())
}

/// Each allocation of a whole run fails in turn: every time the run ends
/// with the out-of-memory error and its hint, no panic, and every
/// allocation made before it is freed.
#[test]
fn out_of_device_memory_at_any_allocation_is_an_error_and_leaks_nothing() {
    if !common::kernels() {
        return;
    }
    let corpus = corpus(12, 60);
    let hy = hyper(8, 4);
    let mut dev = Limited::new();
    workflow(&mut dev, &corpus, &hy).expect("no limit: the run works");
    assert!(dev.live.is_empty(), "the engine leaked {:?}", dev.live);
    let total = dev.allocs;
    println!("{total} allocations in the run");
    assert!(total > 15);
    for k in 0..total {
        let mut dev = Limited {
            fail_at: Some(k),
            ..Limited::new()
        };
        let err = workflow(&mut dev, &corpus, &hy).expect_err("an allocation failed");
        let msg = err.to_string();
        match &err {
            // The first allocation is the corpus.
            Error::Device(DeviceError::CorpusTooLarge { .. }) if k == 0 => {}
            Error::Device(DeviceError::OutOfMemory { .. }) => {
                assert!(msg.contains("out of memory allocating"), "{msg}");
                assert!(err.hint().contains("smaller batch"), "{}", err.hint());
            }
            other => panic!("allocation {k}: {other:?}"),
        }
        assert!(
            dev.live.is_empty(),
            "allocation {k} failed: leaked {:?}",
            dev.live
        );
    }
}

/// A corpus larger than the device's memory: a clear error that says the
/// GPU engine does not stream, pointing to the CPU, before anything else
/// is allocated.
#[test]
fn a_corpus_larger_than_device_memory_is_a_clear_error() {
    if !common::kernels() {
        return;
    }
    let corpus = corpus(100, 3000); // 2 words a row: 49,600 bytes
    let bytes = corpus.words().len() * 8;
    let mut dev = Limited {
        budget: bytes - 1,
        ..Limited::new()
    };
    let err = workflow(&mut dev, &corpus, &hyper(8, 4)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Device(DeviceError::CorpusTooLarge { .. })),
        "{err:?}"
    );
    assert!(
        msg.contains(&format!("one-hot corpus ({bytes} bytes) does not fit")),
        "{msg}"
    );
    assert!(msg.contains("not implemented"), "{msg}");
    assert!(err.hint().contains("the CPU backend"), "{}", err.hint());
    assert!(dev.live.is_empty());
    // The CPU engine trains on it.
    let hy = hyper(8, 4);
    let p = init_params(100, 8, 1);
    let mut cpu = CpuEngine::new(&corpus, &hy, p, Params::zeros(100, 8)).unwrap();
    assert!(cpu.train_batch(&[0, 5, 9, 100]).unwrap().is_finite());
}

/// V = 300, H = 16: the head needs (16 + 300 + 32) x 4 = 1392 bytes of shared
/// memory. On a device allowing 1024 the GPU engine refuses before
/// allocating anything, naming V, the need and the largest V that fits;
/// the CPU engine trains on the same corpus.
#[test]
fn a_vocabulary_too_large_for_the_kernels_is_refused_before_training() {
    let corpus = corpus(300, 400);
    let hy = hyper(16, 4);
    let mut dev = Limited {
        max_shared: 1024,
        ..Limited::new()
    };
    let err = workflow(&mut dev, &corpus, &hy).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Device(DeviceError::VocabTooLarge { .. })),
        "{err:?}"
    );
    for needle in [
        "300 symbols",
        "1392 bytes",
        "allows 1024",
        "at most 208 symbols",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing: {msg}");
    }
    assert!(err.hint().contains("the CPU backend"), "{}", err.hint());
    assert_eq!(dev.allocs, 0, "refused after allocating");
    let p = init_params(300, 16, 1);
    let mut cpu = CpuEngine::new(&corpus, &hy, p, Params::zeros(300, 16)).unwrap();
    assert!(cpu.train_batch(&[0, 50, 100, 300]).unwrap().is_finite());
}

/// On a device whose shared memory holds the head (1264 bytes) but not the
/// generation kernel (12V + 24H + 4 maxlen = 4000 bytes), generation falls
/// back to the sampling loop over predict: same draws as the CPU engine.
#[test]
fn generation_falls_back_when_its_kernel_does_not_fit() {
    if !common::kernels() {
        return;
    }
    let corpus = corpus(300, 400);
    let hy = hyper(16, 4);
    let mut dev = Limited {
        max_shared: 2048,
        ..Limited::new()
    };
    let p = init_params(300, 16, 9);
    let ms = Params::zeros(300, 16);
    let mut cpu = CpuEngine::new(&corpus, &hy, p.clone(), ms.clone()).unwrap();
    let strategies = [Strategy::Temperature(1.0), Strategy::Uniform];
    let seed = [5, 17, 250, 3];
    let req = GenerateRequest {
        seed_indices: &seed,
        maxlen: 3,
        length: 6,
        strategies: &strategies,
        seed: 11,
        stream: 2,
        mode: GenMode::Window,
    };
    let want = cpu.generate(&req).unwrap();
    let got = {
        let mut gpu = GpuEngine::new(&mut dev, Backend::Sim, &corpus, &hy, p, ms).unwrap();
        gpu.generate(&req).unwrap()
    };
    assert_eq!(got, want);
    assert!(dev.launched.iter().any(|k| k == "head_fwd_bwd_f32"));
    assert!(!dev.launched.iter().any(|k| k == "generate_fwd_f32"));
    assert!(dev.live.is_empty());
}

/// The same fallback for a model given by its weights alone (the `generate`
/// command's path, `GpuModel`): it used to launch the kernel and fail where
/// the after-epoch samples fell back. Same draws as the CPU reference, and
/// `device::generate` on the simulator agrees with the CPU where the
/// kernel does fit.
#[test]
fn generation_from_weights_falls_back_too() {
    if !common::kernels() {
        return;
    }
    let p = init_params(300, 16, 9);
    let strategies = [Strategy::Temperature(1.0), Strategy::Uniform];
    let seed = [5, 17, 250, 3];
    let req = GenerateRequest {
        seed_indices: &seed,
        maxlen: 3,
        length: 6,
        strategies: &strategies,
        seed: 11,
        stream: 2,
        mode: GenMode::Window,
    };
    let want = device::generate(Backend::Cpu, &p, &req).unwrap();
    let mut dev = Limited {
        max_shared: 2048,
        ..Limited::new()
    };
    let got = {
        let mut model = GpuModel::new(&mut dev, Backend::Sim, &p).unwrap();
        model.generate(&req).unwrap()
    };
    assert_eq!(got, want);
    assert!(dev.launched.iter().any(|k| k == "head_fwd_bwd_f32"));
    assert!(!dev.launched.iter().any(|k| k == "generate_fwd_f32"));
    assert!(dev.live.is_empty());
    let sim = device::generate(Backend::Sim, &p, &req).unwrap();
    assert_eq!(sim, want);
}

/// A device without thread-block clusters (a GPU before Hopper; here the
/// simulator behind a wrapper that keeps the trait's default) refuses the
/// cluster path with an error naming why and what to use instead, before
/// anything launches; `Auto` plans no cluster kernel there.
#[test]
fn the_cluster_path_needs_a_device_with_clusters() {
    use charlstm_cuda::gpu::lstm::{LstmDims, LstmLauncher, LstmPath};
    let dev = Limited::new();
    assert!(!dev.clusters());
    let dims = LstmDims {
        batch: 4,
        seq_len: 3,
        hidden: 256,
        vocab: 9,
        words_per_row: 1,
    };
    let cluster = LstmLauncher {
        path: LstmPath::Cluster,
        ..LstmLauncher::default()
    };
    let e = cluster.cluster_plan(&dev, dims).unwrap_err().to_string();
    assert!(
        e.contains("runs no thread-block clusters") && e.contains("LstmPath::Auto"),
        "{e}"
    );
    assert!(
        LstmLauncher::default()
            .cluster_plan(&dev, dims)
            .unwrap()
            .is_none()
    );
    assert!(dev.launched.is_empty());
}
