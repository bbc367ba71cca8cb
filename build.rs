//! Compiles every `kernels/*.cu` (and, with the `test-kernels` feature the
//! tests turn on, the simulator's test kernels in `tests/kernels/*.cu`) to
//! PTX with nvcc (compute_90 for sources named `*_sm90.cu`, which use
//! thread-block clusters), assembles that PTX for sm_90 with
//! ptxas (reporting spills as warnings), and embeds both: the PTX as text
//! (the simulator runs it) and a fatbin of sm_90 SASS + that same
//! PTX (the GPU loads it: the driver takes the SASS on an H100/H200 and
//! JIT-compiles the PTX on any other GPU, so no process on a Hopper pays
//! for JIT-compiling ~380 KB of unrolled PTX at start).
//!
//! It also writes `contract.rs` from the sources alone (no nvcc needed): per
//! `extern "C" __global__` signature, a struct of its arguments in order and
//! type, and every numeric `#define`, so a launcher that disagrees with a
//! kernel's signature or constant does not compile (see `gpu::contract`).
//!
//! Without nvcc (or with `CHARLSTM_KERNELS=prebuilt`) it embeds the files
//! committed in `kernels/prebuilt/` instead, after checking that the sources
//! are the ones they were made from (`SOURCES`; a changed kernel without
//! nvcc is a build error naming it), so every build has the cuda and sim
//! backends; `scripts/build-kernels.sh` remakes them, and CI checks they
//! match what nvcc makes of the sources. `gpu::ptx::KERNELS_FROM` says which
//! path a build took. With `CHARLSTM_REQUIRE_KERNELS=1` a missing nvcc fails
//! the build (CI and kernel developers).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// PTX for compute capability 8.0 runs on Ampere and everything newer;
/// Hopper-only code is guarded by `__CUDA_ARCH__` in the sources.
const PTX_ARCH: &str = "compute_80";
const CHECK_ARCH: &str = "sm_90";
/// A source whose name ends in `_sm90` is compiled to compute_90 PTX: it
/// uses what only Hopper has (thread-block clusters, `__cluster_dims__`),
/// which compute_80 PTX cannot express.
const HOPPER_SUFFIX: &str = "_sm90";

/// The PTX architecture of kernel source `stem`.
fn ptx_arch(stem: &str) -> &'static str {
    if stem.ends_with(HOPPER_SUFFIX) {
        "compute_90"
    } else {
        PTX_ARCH
    }
}

fn main() {
    for var in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_PATH",
        "PATH",
        "CHARLSTM_REQUIRE_KERNELS",
        "CHARLSTM_KERNELS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    // A path that does not exist would make cargo rerun this script on every build.
    for watched in ["kernels", "tests/kernels", ".cuda/.installed"] {
        if root.join(watched).exists() {
            println!("cargo:rerun-if-changed={watched}");
        }
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let require = env::var("CHARLSTM_REQUIRE_KERNELS").is_ok_and(|v| v == "1");
    let sources = cu_files(&root.join("kernels"));
    // Test kernels only for the tests (feature `test-kernels`, which the
    // crate's dev-dependency on itself turns on).
    let test_sources = if env::var_os("CARGO_FEATURE_TEST_KERNELS").is_some() {
        cu_files(&root.join("tests/kernels"))
    } else {
        Vec::new()
    };
    for f in sources.iter().chain(&test_sources) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    for f in cu_files_with_ext(&root.join("kernels"), "cuh") {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let (mut contract, mut kernels) = (String::new(), Vec::new());
    for f in cu_files_with_ext(&root.join("kernels"), "cuh")
        .iter()
        .chain(&sources)
    {
        let (code, names) = contract_of(f);
        contract.push_str(&code);
        kernels.extend(names);
    }
    contract.push_str(&format!(
        "/// Every kernel of `kernels/*.cu`, by file, in source order.\npub const KERNELS: &[&str] = &{kernels:?};\n"
    ));
    fs::write(out.join("contract.rs"), contract).expect("write contract.rs");

    let stale = prebuilt_stale(&root);
    // CHARLSTM_KERNELS=prebuilt skips nvcc even where it is installed: how
    // CI builds the path every machine without a CUDA toolkit takes.
    let force_prebuilt = env::var("CHARLSTM_KERNELS").is_ok_and(|v| v == "prebuilt");
    let Some(nvcc) = find_nvcc(&root).filter(|_| !force_prebuilt) else {
        let how = "install it with `bash scripts/setup-cuda.sh` (CUDA 13.0 nvcc from PyPI into .cuda/), \
                   or point NVCC / CUDA_HOME at an existing one";
        if require && !force_prebuilt {
            panic!("CHARLSTM_REQUIRE_KERNELS=1 but no nvcc was found; {how}");
        }
        if let Some(why) = stale {
            panic!(
                "nvcc not found, and the prebuilt kernels cannot stand in: {why}. Either {how} \
                 (build.rs then compiles kernels/ itself), or undo the kernel change"
            );
        }
        let why = if force_prebuilt {
            "CHARLSTM_KERNELS=prebuilt"
        } else {
            "nvcc not found"
        };
        println!(
            "cargo:warning={why}: embedding the prebuilt kernels of {PREBUILT} \
             (scripts/build-kernels.sh made them from these very sources with CUDA 13.0 nvcc)"
        );
        let modules = prebuilt_modules(&root, &sources, PREBUILT);
        let tests = prebuilt_modules(&root, &test_sources, TEST_PREBUILT);
        write_registry(&out, "prebuilt", &modules, &tests);
        return;
    };
    if let Some(why) = stale {
        println!(
            "cargo:warning={why}: run `bash scripts/build-kernels.sh` before committing \
             (CI fails on stale prebuilt kernels)"
        );
    }
    let exe = |name: &str| nvcc.with_file_name(format!("{name}{}", env::consts::EXE_SUFFIX));
    let (ptxas, fatbinary) = (exe("ptxas"), exe("fatbinary"));
    let src_dir = flat_sources(&out, sources.iter().chain(&test_sources), &root);

    let compile = |src: &PathBuf| -> Module {
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 kernel file name")
            .to_string();
        let ptx = out.join(format!("{stem}.ptx"));
        // The same strings on every machine (see `flat_sources`),
        // then moved into place.
        let name = format!("{stem}.ptx");
        run(
            fixed_layout(&nvcc)
                .current_dir(&src_dir)
                .args([
                    "--ptx",
                    "-O3",
                    &format!("-arch={}", ptx_arch(&stem)),
                    "-std=c++17",
                ])
                .args(["-I", ".", "-o", &name, &format!("{stem}.cu")]),
            &format!("nvcc on {}", src.display()),
        );
        fs::rename(src_dir.join(&name), &ptx).expect("move the PTX into OUT_DIR");
        let fatbin = ptxas.exists().then(|| {
            let cubin = out.join(format!("{stem}.{CHECK_ARCH}.cubin"));
            assemble(&ptxas, &ptx, &cubin, &stem);
            fatbinary.exists().then(|| {
                let fatbin = out.join(format!("{stem}.fatbin"));
                run(
                    Command::new(&fatbinary)
                        .arg("--64")
                        .arg(format!("--create={}", fatbin.display()))
                        .arg(format!(
                            "--image3=kind=elf,sm={},file={}",
                            sm_number(CHECK_ARCH),
                            cubin.display()
                        ))
                        .arg(format!(
                            "--image3=kind=ptx,sm={},file={}",
                            sm_number(ptx_arch(&stem)),
                            ptx.display()
                        )),
                    &format!("fatbinary on {stem}"),
                );
                fatbin
            })
        });
        Module {
            name: stem,
            ptx,
            fatbin: fatbin.flatten(),
        }
    };
    let all: Vec<PathBuf> = sources.iter().chain(&test_sources).cloned().collect();
    let mut modules = parallel_map(&all, compile);
    let test_modules = modules.split_off(sources.len());
    write_registry(&out, "nvcc", &modules, &test_modules);
}

/// `f` of every item, in order, on up to cargo's job count of threads
/// (`NUM_JOBS`; else the machine's cores). Why: nvcc, ptxas and fatbinary
/// use one core each, and the 27 kernel files (with the test kernels) took
/// 19-20 s one after another on this project's 2-core machine, 8.5-11 s
/// on two threads, on every build that compiles them (each profile and
/// feature set: CI has about ten). Each file's commands and outputs are its
/// own, so the order they run in changes no byte
/// (`scripts/build-kernels.sh --check`).
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = env::var("NUM_JOBS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    done.lock().expect("no worker panics holding the lock")[i] = Some(r);
                }
            });
        }
    });
    done.into_inner()
        .expect("no worker panics holding the lock")
        .into_iter()
        .map(|r| r.expect("every item was mapped"))
        .collect()
}

/// Where scripts/build-kernels.sh commits the compiled kernels: `NAME.ptx`
/// and `NAME.fatbin` per `kernels/NAME.cu`, and `SOURCES`, the SHA-256 of
/// every source they were made from (`sha256sum` format).
const PREBUILT: &str = "kernels/prebuilt";
/// The same for the simulator's test kernels (`tests/kernels/NAME.cu`).
const TEST_PREBUILT: &str = "tests/kernels/prebuilt";

/// Every kernel source, as `SOURCES` names them: `kernels/*.cu`,
/// `kernels/*.cuh`, `tests/kernels/*.cu`.
fn kernel_sources(root: &Path) -> Vec<String> {
    let mut all: Vec<PathBuf> = cu_files(&root.join("kernels"));
    all.extend(cu_files_with_ext(&root.join("kernels"), "cuh"));
    all.extend(cu_files(&root.join("tests/kernels")));
    let mut names: Vec<String> = all
        .iter()
        .map(|p| {
            p.strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    names.sort();
    names
}

/// Why the prebuilt kernels do not match the sources, or `None` when every
/// source's SHA-256 is the one `SOURCES` recorded.
fn prebuilt_stale(root: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let listed = root.join(PREBUILT).join("SOURCES");
    println!("cargo:rerun-if-changed={PREBUILT}/SOURCES");
    let Ok(text) = fs::read_to_string(&listed) else {
        return Some(format!("{PREBUILT}/SOURCES is missing"));
    };
    let recorded: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(hash, name)| (name, hash))
        .collect();
    let sources = kernel_sources(root);
    for name in &sources {
        let bytes = fs::read(root.join(name)).expect("read kernel source");
        let hash: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        match recorded.iter().find(|(n, _)| n == name) {
            Some((_, h)) if *h == hash => {}
            Some(_) => {
                return Some(format!(
                    "{name} changed since its prebuilt kernels were made"
                ));
            }
            None => return Some(format!("{name} has no prebuilt kernels")),
        }
    }
    // A packaged crate may leave tests/ out: the test kernels are for the
    // crate's own tests only.
    let has_tests = root.join("tests/kernels").is_dir();
    if let Some((gone, _)) = recorded
        .iter()
        .find(|(n, _)| !sources.iter().any(|s| s == n) && (has_tests || !n.starts_with("tests/")))
    {
        return Some(format!(
            "{PREBUILT} still holds the kernels of {gone}, which is gone"
        ));
    }
    None
}

/// The committed `DIR/NAME.ptx` and `DIR/NAME.fatbin` of each source.
fn prebuilt_modules(root: &Path, sources: &[PathBuf], dir: &str) -> Vec<Module> {
    sources
        .iter()
        .map(|src| {
            let stem = src
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("UTF-8 name");
            let file = |ext: &str| root.join(dir).join(format!("{stem}.{ext}"));
            let (ptx, fatbin) = (file("ptx"), file("fatbin"));
            assert!(
                ptx.is_file() && fatbin.is_file(),
                "{} or its .fatbin is missing: run `bash scripts/build-kernels.sh`",
                ptx.display()
            );
            Module {
                name: stem.to_string(),
                ptx,
                fatbin: Some(fatbin),
            }
        })
        .collect()
}

/// One compiled `.cu`: its PTX, and the fatbin when ptxas and fatbinary
/// are next to nvcc (the PyPI package and every CUDA toolkit have both).
struct Module {
    name: String,
    ptx: PathBuf,
    fatbin: Option<PathBuf>,
}

/// `"sm_90"` / `"compute_80"` -> `"90"` / `"80"`, as fatbinary's `sm=` wants it.
fn sm_number(arch: &str) -> &str {
    arch.rsplit('_').next().unwrap_or(arch)
}

fn cu_files(dir: &Path) -> Vec<PathBuf> {
    cu_files_with_ext(dir, "cu")
}

fn cu_files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `NVCC`, then `CUDA_HOME`/`CUDA_PATH`, then `PATH`, then the project-local install.
fn find_nvcc(root: &Path) -> Option<PathBuf> {
    let exe = if cfg!(windows) { "nvcc.exe" } else { "nvcc" };
    if let Some(p) = env::var_os("NVCC")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return Some(p);
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = env::var_os(var) {
            let p = PathBuf::from(home).join("bin").join(exe);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    if let Some(path) = env::var_os("PATH")
        && let Some(p) = env::split_paths(&path)
            .map(|d| d.join(exe))
            .find(|p| p.is_file())
    {
        return Some(p);
    }
    let lib = root.join(".cuda/venv/lib");
    let mut pythons: Vec<PathBuf> = fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pythons.sort();
    pythons
        .into_iter()
        .map(|py| py.join("site-packages/nvidia/cu13/bin").join(exe))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command, what: &str) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        panic!("{what} failed:\n{text}");
    }
    text
}

/// Copies every kernel source and `kernels/*.cuh` into one folder of
/// `out` (their names do not collide), so that nvcc is given the same
/// relative names wherever the checkout is.
///
/// Why: cicc's register numbering of one kernel
/// (`lstm_persistent_h128_seq_bwd_f32`) depends on where its memory lands,
/// which the lengths of the paths it is given and address-space
/// randomisation both move; the committed prebuilt kernels would then match
/// a fresh build only some of the time (scripts/build-kernels.sh has the
/// measurements). Fixed names and [`fixed_layout`] make the output the
/// same bytes in every checkout.
fn flat_sources<'a>(
    out: &Path,
    sources: impl Iterator<Item = &'a PathBuf>,
    root: &Path,
) -> PathBuf {
    let dir = out.join("kernel-sources");
    fs::create_dir_all(&dir).expect("create OUT_DIR/kernel-sources");
    let mut files: Vec<PathBuf> = sources.cloned().collect();
    files.extend(cu_files_with_ext(&root.join("kernels"), "cuh"));
    let mut seen = std::collections::HashSet::new();
    for src in &files {
        let name = src.file_name().expect("a kernel file name");
        assert!(
            seen.insert(name.to_owned()),
            "two kernel sources are named {}: kernels/ and tests/kernels/ share one folder here; \
             rename one",
            name.to_string_lossy()
        );
        fs::copy(src, dir.join(name)).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    dir
}

/// `program` with address-space randomisation off (`setarch ARCH -R`, where
/// util-linux's setarch is there; else `program` as it is, and the output
/// may vary as `flat_sources` says).
fn fixed_layout(program: &Path) -> Command {
    static SETARCH: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let setarch_works = *SETARCH.get_or_init(|| {
        cfg!(target_os = "linux")
            && Command::new("setarch")
                .args([env::consts::ARCH, "-R", "true"])
                .output()
                .is_ok_and(|o| o.status.success())
    });
    if setarch_works {
        let mut cmd = Command::new("setarch");
        cmd.args([env::consts::ARCH, "-R"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Assembles for sm_90 into `cubin`; a spilling kernel becomes a cargo
/// warning with its register count.
fn assemble(ptxas: &Path, ptx: &Path, cubin: &Path, stem: &str) {
    let log = run(
        fixed_layout(ptxas)
            .args(["-v", &format!("-arch={CHECK_ARCH}"), "-o"])
            .arg(cubin)
            .arg(ptx),
        &format!("ptxas -arch={CHECK_ARCH} on {stem}.ptx"),
    );
    let mut function = String::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            function = rest.split('\'').next().unwrap_or_default().to_string();
        }
        if line.contains("spill") {
            let spills = line
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .any(|n| n > 0);
            if spills {
                println!(
                    "cargo:warning=kernel {function} ({stem}.cu) spills on {CHECK_ARCH}: {}",
                    line.trim()
                );
            }
        }
    }
}

/// `from`: "nvcc" (compiled from `kernels/` now) or "prebuilt".
fn write_registry(out: &Path, from: &str, modules: &[Module], tests: &[Module]) {
    let list = |m: &[Module]| {
        m.iter()
            .map(|m| {
                let fatbin = match &m.fatbin {
                    Some(f) => format!("Some(include_bytes!({:?}))", f.display().to_string()),
                    None => "None".into(),
                };
                format!(
                    "    Module {{ name: {:?}, ptx: include_str!({:?}), fatbin: {fatbin} }},\n",
                    m.name,
                    m.ptx.display().to_string()
                )
            })
            .collect::<String>()
    };
    let code = format!(
        "/// Whether the kernels are embedded (every build has them: compiled, or prebuilt).\n\
         pub const BUILT_WITH_KERNELS: bool = true;\n\
         /// Where they came from: `nvcc` (compiled from `kernels/` by this build) or\n\
         /// `prebuilt` (`kernels/prebuilt/`, made by scripts/build-kernels.sh).\n\
         pub const KERNELS_FROM: &str = {from:?};\n\
         /// Every `kernels/*.cu`, sorted by name.\n\
         pub const MODULES: &[Module] = &[\n{}];\n\
         /// Every `tests/kernels/*.cu` (the simulator's own test kernels) when built with the `test-kernels` feature, else none.\n\
         pub const TEST_MODULES: &[Module] = &[\n{}];\n",
        list(modules),
        list(tests)
    );
    fs::write(out.join("kernels.rs"), code).expect("write kernels.rs");
}

/// The Rust side of one `.cu` file's contract (see the module doc): a module
/// named after the file holding its numeric `#define`s and, per distinct
/// kernel signature, a struct of the arguments with `MODULE`, `KERNELS` (the
/// kernels sharing that signature) and `args()` in parameter order.
fn contract_of(path: &Path) -> (String, Vec<String>) {
    let text = fs::read_to_string(path).expect("read kernel source");
    let code = strip_comments(&text).replace("\\\n", " ");
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("UTF-8 name");
    let mut defines = Vec::new();
    let mut out = format!(
        "/// From `kernels/{}`.\npub mod {stem} {{\n",
        path.file_name().and_then(|s| s.to_str()).unwrap_or(stem)
    );
    out.push_str("#[allow(unused_imports)]\nuse crate::gpu::device::{DevicePtr, GpuDevice, KernelArg, LaunchConfig};\n");
    for line in code.lines() {
        let Some(rest) = line.trim().strip_prefix("#define ") else {
            continue;
        };
        let (name, body) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let body = body.trim();
        defines.push((name.to_string(), body.to_string()));
        let digits = body.trim_end_matches(['u', 'U']);
        let value = match digits.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => digits.parse::<u32>().ok(),
        };
        if let Some(v) = value {
            out.push_str(&format!(
                "/// `#define {name} {body}`\npub const {name}: u32 = {v};\n"
            ));
        }
    }
    // Kernels in source order, grouped by identical parameter lists.
    type Params = Vec<(String, String, String)>; // (name, KernelArg variant, C type)
    let mut groups: Vec<(Params, Vec<String>)> = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("extern \"C\" __global__ void") {
        rest = &rest[at + "extern \"C\" __global__ void".len()..];
        let open = rest.find('(').expect("kernel parameter list");
        let mut head = rest[..open].trim();
        rest = &rest[open..];
        while head.starts_with("__launch_bounds__") || head.starts_with("__cluster_dims__") {
            // `__launch_bounds__(a, b) name(`: skip the attribute's parentheses.
            let close = rest.find(')').expect("the attribute's arguments");
            rest = &rest[close + 1..];
            let open2 = rest.find('(').expect("kernel parameter list");
            head = rest[..open2].trim();
            rest = &rest[open2..];
        }
        let name = head.to_string();
        let close = rest.find(')').expect("end of kernel parameters");
        let mut params = rest[1..close].trim().to_string();
        rest = &rest[close..];
        if let Some((_, body)) = defines.iter().find(|(n, _)| *n == params) {
            params = body.clone();
        }
        let params: Params = params
            .split(',')
            .map(|p| {
                let p = p.replace('*', " * ");
                let words: Vec<&str> = p
                    .split_whitespace()
                    .filter(|w| *w != "__restrict__" && *w != "const")
                    .collect();
                let (field, ty) = words.split_last().expect("a parameter has a name");
                let ctype = ty.join(" ");
                let variant = match ctype.as_str() {
                    t if t.ends_with('*') => "Ptr",
                    "unsigned" | "unsigned int" => "U32",
                    "int" => "I32",
                    "unsigned long long" | "size_t" => "U64",
                    "float" => "F32",
                    "double" => "F64",
                    other => panic!(
                        "{}: kernel {name}: no KernelArg for parameter type `{other}`",
                        path.display()
                    ),
                };
                (field.to_string(), variant.to_string(), ctype)
            })
            .collect();
        match groups.iter_mut().find(|(p, _)| *p == params) {
            Some((_, names)) => names.push(name),
            None => groups.push((params, vec![name])),
        }
    }
    let mut all = Vec::new();
    for (params, names) in groups {
        let camel: String = names[0]
            .split('_')
            .map(|w| w[..1].to_uppercase() + &w[1..])
            .collect();
        let rust_ty = |v: &str| match v {
            "Ptr" => "DevicePtr",
            "U32" => "u32",
            "I32" => "i32",
            "U64" => "u64",
            "F32" => "f32",
            _ => "f64",
        };
        out.push_str(&format!(
            "/// The arguments of `{}`, in parameter order.\n#[allow(non_snake_case)]\n#[derive(Clone, Copy, Debug)]\npub struct {camel} {{\n",
            names.join("`, `")
        ));
        for (f, v, c) in &params {
            let c = c.replace(" *", "*");
            out.push_str(&format!(
                "    /// `{c} {f}` in the kernel's signature.\n    pub {f}: {},\n",
                rust_ty(v)
            ));
        }
        out.push_str(&format!(
            "}}\nimpl {camel} {{\n    /// The `.cu` file's stem, as `GpuDevice::launch` takes it.\n    pub const MODULE: &'static str = {stem:?};\n    /// The kernels with this signature.\n    pub const KERNELS: &'static [&'static str] = &{names:?};\n    /// The launch's argument list.\n    pub fn args(&self) -> [KernelArg; {}] {{\n        [{}]\n    }}\n    /// Launches `kernel`, one of `KERNELS`, with these arguments.\n    pub fn launch<D: GpuDevice>(&self, dev: &mut D, kernel: &str, cfg: LaunchConfig) -> crate::error::Result<()> {{\n        dev.launch(Self::MODULE, kernel, cfg, &self.args())\n    }}\n}}\n",
            params.len(),
            params.iter().map(|(f, v, _)| format!("KernelArg::{v}(self.{f})")).collect::<Vec<_>>().join(", ")
        ));
        all.extend(names);
    }
    out.push_str("}\n");
    (out, all)
}

/// `text` without `//` and `/* */` comments (kernels have no comment
/// markers inside string literals).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let line = rest.find("//");
        let block = rest.find("/*");
        match (line, block) {
            (Some(l), b) if b.is_none_or(|b| l < b) => {
                out.push_str(&rest[..l]);
                rest = &rest[l..];
                rest = &rest[rest.find('\n').unwrap_or(rest.len())..];
            }
            (_, Some(b)) => {
                out.push_str(&rest[..b]);
                let end = rest[b..].find("*/").map_or(rest.len(), |e| b + e + 2);
                out.push(' ');
                rest = &rest[end..];
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}
