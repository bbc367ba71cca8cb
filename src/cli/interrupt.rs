//! Ctrl-C (SIGINT), SIGTERM and SIGHUP during `train`: the first asks the
//! trainer to stop after the current batch, which then writes
//! `last.safetensors` (temp file + rename) and says how to resume; a second
//! one exits at once, keeping the checkpoints already on disk (they are never
//! half-written).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
/// The run directory's lock, removed by an exit at the second signal
/// (which skips the destructors that remove it otherwise).
static LOCK: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Removes `lock` on an immediate exit (the second signal).
pub fn release_on_exit(lock: Option<&Path>) {
    if let Ok(mut held) = LOCK.lock() {
        *held = lock.map(Path::to_path_buf);
    }
}

/// Exit status of a run stopped by a signal, as shells report SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Installs the handler. Failing to install it is not fatal: training works,
/// only without the graceful stop, and the user is told.
pub fn install() {
    let result = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting now; checkpoints already written are complete");
            if let Ok(held) = LOCK.try_lock()
                && let Some(lock) = held.as_ref()
            {
                let _ = std::fs::remove_file(lock);
            }
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        eprintln!(
            "\ninterrupt: finishing the current batch (on a GPU, the batches already queued: up to 32), \
             then writing a checkpoint (again to quit at once)"
        );
    });
    if let Err(e) = result {
        eprintln!("warning: cannot catch Ctrl-C ({e}); an interrupt will lose the current epoch");
    }
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
