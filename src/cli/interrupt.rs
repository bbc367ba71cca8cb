//! Ctrl-C (SIGINT), SIGTERM and SIGHUP. During `train` the first asks the
//! trainer to stop: after the current batch while training, which then
//! writes `last.safetensors` (temp file + rename) and says how to resume;
//! at the next character while sampling after an epoch (that epoch is
//! already saved). A second one exits at once, keeping the checkpoints
//! already on disk (they are never half-written). `generate` has nothing
//! to save, so the first one ends it at once.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
/// What the process is doing, so the first signal's message says what a
/// stop means now (a [`Phase`] as u8).
static PHASE: AtomicU8 = AtomicU8::new(Phase::Training as u8);
/// The run directory's lock, removed by an exit at the second signal
/// (which skips the destructors that remove it otherwise).
static LOCK: Mutex<Option<PathBuf>> = Mutex::new(None);

/// What a signal interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// `train`'s batches: the stop waits for the current batch.
    Training = 0,
    /// `train`'s after-epoch samples: the stop is at the next character.
    Sampling = 1,
    /// `generate`: nothing to save, so the process ends at once.
    Generating = 2,
}

/// Says what a signal would interrupt from now on.
pub fn set_phase(phase: Phase) {
    PHASE.store(phase as u8, Ordering::SeqCst);
}

/// Removes `lock` on an immediate exit (the second signal).
pub fn release_on_exit(lock: Option<&Path>) {
    if let Ok(mut held) = LOCK.lock() {
        *held = lock.map(Path::to_path_buf);
    }
}

/// Exit status of a run stopped by a signal, as shells report SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Installs the handler. Failing to install it is not fatal: the command
/// works, only without the graceful stop, and the user is told.
pub fn install() {
    let result = ctrlc::set_handler(|| {
        let phase = PHASE.load(Ordering::SeqCst);
        if phase == Phase::Generating as u8 {
            // What was generated is on stdout already (written as it came).
            eprintln!("\ninterrupt: generation stopped");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting now; checkpoints already written are complete");
            if let Ok(held) = LOCK.try_lock()
                && let Some(lock) = held.as_ref()
            {
                let _ = std::fs::remove_file(lock);
            }
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        if phase == Phase::Sampling as u8 {
            eprintln!(
                "\ninterrupt: stopping the after-epoch samples (the epoch is trained and its \
                 checkpoint written), then ending the run (again to quit at once)"
            );
        } else {
            eprintln!(
                "\ninterrupt: finishing the current batch (on a GPU, the batches already queued: up to 32), \
                 then writing a checkpoint (again to quit at once)"
            );
        }
    });
    // Without the handler `generate` still ends at Ctrl-C, only by the
    // signal itself; `train` would lose its epoch.
    if let Err(e) = result
        && PHASE.load(Ordering::SeqCst) != Phase::Generating as u8
    {
        eprintln!("warning: cannot catch Ctrl-C ({e}); an interrupt will lose the current epoch");
    }
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
