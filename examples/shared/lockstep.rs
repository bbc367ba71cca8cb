//! The step-by-step handshake of `CHARLSTM_LOCKSTEP=1`, shared by the
//! examples that `scripts/lockstep.py` times against another program (the
//! PyTorch scripts take the same): before each step a line on stdin, after
//! it `step <seconds>` on stdout. Off, it waits for nothing and prints
//! nothing.

/// The handshake; `None` where it is off.
pub struct Lockstep(Option<std::io::StdinLock<'static>>);

impl Lockstep {
    /// On where `CHARLSTM_LOCKSTEP=1`.
    pub fn from_env() -> Self {
        let on = std::env::var_os("CHARLSTM_LOCKSTEP").is_some_and(|v| v == "1");
        Lockstep(on.then(|| std::io::stdin().lock()))
    }

    /// Whether the driver is there (stream_bench then leaves PyTorch to it).
    #[allow(dead_code)] // each example compiles its own copy; stacked_step has no use for it
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Waits for the driver's line; false once stdin is closed (the driver
    /// is done with this program).
    pub fn wait(&mut self) -> bool {
        use std::io::BufRead;
        let Some(stdin) = self.0.as_mut() else {
            return true;
        };
        let mut line = String::new();
        matches!(stdin.read_line(&mut line), Ok(n) if n > 0)
    }

    /// Reports a step's time to the driver.
    pub fn done(&self, seconds: f64) {
        use std::io::Write;
        if self.0.is_some() {
            let mut out = std::io::stdout().lock();
            // The driver reads one line a step; a closed pipe ends the run at
            // the next wait.
            let _ = writeln!(out, "step {seconds:.6}").and_then(|()| out.flush());
        }
    }
}
