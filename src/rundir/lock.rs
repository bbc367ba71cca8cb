//! `OUT/.lock`: a run directory belongs to one run at a time.
//!
//! The lock file is created with `create_new` (so of two runs starting
//! together exactly one gets it) and holds `pid N`, `started S` (Unix
//! seconds) and, on Linux, `proc_start T` (the process' start time in clock
//! ticks since boot, from `/proc/self/stat`), one per line. It is removed
//! when the [`RunLock`] is dropped: a normal end, an error, a stop.
//!
//! A lock whose process is gone (a run killed with `kill -9`, a power
//! loss) is stale: on Linux `/proc/PID` is missing, or belongs to a later
//! process that reused the pid (another `proc_start`). A stale lock is
//! taken over and the caller is told whose it was: the checkpoints such a
//! run left are complete (they are written atomically), so continuing is
//! safe, and the check is exact. A live holder, an unreadable lock, or a
//! system without `/proc` (where liveness cannot be told) is refused.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File name of the lock in a run directory.
pub const LOCK_FILE: &str = ".lock";

/// Holds a run directory's `.lock`; removes it when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    content: String,
}

/// Who holds a lock, as its file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Holder {
    pid: u32,
    started: Option<u64>,
    proc_start: Option<u64>,
}

impl Holder {
    fn current() -> Self {
        let pid = std::process::id();
        Holder {
            pid,
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs()),
            proc_start: proc_start(pid),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
        };
        Some(Holder {
            pid: u32::try_from(field("pid ")?).ok()?,
            started: field("started "),
            proc_start: field("proc_start "),
        })
    }

    fn to_file(self) -> String {
        let mut s = format!("pid {}\n", self.pid);
        if let Some(t) = self.started {
            s.push_str(&format!("started {t}\n"));
        }
        if let Some(t) = self.proc_start {
            s.push_str(&format!("proc_start {t}\n"));
        }
        s
    }

    /// `pid N, started S s ago`.
    fn describe(self) -> String {
        let ago = self.started.and_then(|s| {
            let now = Holder::current().started?;
            Some(format!(", started {} s ago", now.saturating_sub(s)))
        });
        format!("pid {}{}", self.pid, ago.unwrap_or_default())
    }

    /// `Some(true)` running, `Some(false)` gone, `None` cannot tell.
    fn alive(self) -> Option<bool> {
        if !Path::new("/proc/self").exists() {
            return None;
        }
        if !Path::new(&format!("/proc/{}", self.pid)).exists() {
            return Some(false);
        }
        match (self.proc_start, proc_start(self.pid)) {
            (Some(was), Some(now)) => Some(was == now),
            _ => Some(true),
        }
    }
}

/// Start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), where there is a `/proc`.
fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl RunLock {
    /// Takes the lock of `dir` (which must exist), taking over a stale one:
    /// then the second value says whose it was.
    pub fn acquire(dir: &Path) -> Result<(RunLock, Option<String>)> {
        let path = dir.join(LOCK_FILE);
        let content = Holder::current().to_file();
        let mut notice = None;
        // Twice at most: once more after removing a stale lock.
        for _ in 0..2 {
            match create(&path, &content) {
                Ok(()) => {
                    let lock = RunLock {
                        path,
                        content: content.clone(),
                    };
                    return Ok((lock, notice));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                // Its run ended just now: try again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            let Some(holder) = Holder::parse(&text) else {
                return Err(Error::RunLocked {
                    lock: path,
                    holder: "a lock file without a pid".into(),
                });
            };
            match holder.alive() {
                Some(false) if notice.is_none() => {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io(&path, e)),
                    }
                    notice = Some(format!(
                        "{}: took over a stale lock: its run ({}) is no longer running (killed, \
                         or the machine went down); its checkpoints are complete",
                        path.display(),
                        holder.describe()
                    ));
                }
                Some(true) => {
                    return Err(Error::RunLocked {
                        lock: path,
                        holder: holder.describe(),
                    });
                }
                _ => {
                    return Err(Error::RunLocked {
                        lock: path,
                        holder: format!("{}, not known to be running or not", holder.describe()),
                    });
                }
            }
        }
        // Another run took the stale lock over at the same moment.
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        Err(Error::RunLocked {
            holder: Holder::parse(&text).map_or_else(|| "another run".into(), Holder::describe),
            lock: path,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn create(path: &Path, content: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

impl Drop for RunLock {
    /// Removes the lock if it is still this one (never another run's).
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t == self.content) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_the_first_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let (first, notice) = RunLock::acquire(dir.path()).unwrap();
        assert!(notice.is_none());
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(
            Holder::parse(&text).map(|h| h.pid),
            Some(std::process::id())
        );
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(!dir.path().join(LOCK_FILE).exists());
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_reused_pid_with_another_start_time_is_stale() {
        let me = Holder::current();
        if me.proc_start.is_none() {
            eprintln!("SKIPPED: no /proc");
            return;
        }
        let reused = Holder {
            proc_start: me.proc_start.map(|t| t + 1),
            ..me
        };
        assert_eq!(me.alive(), Some(true));
        assert_eq!(reused.alive(), Some(false));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), reused.to_file()).unwrap();
        let (_lock, notice) = RunLock::acquire(dir.path()).unwrap();
        assert!(notice.unwrap().contains("stale"));
    }

    #[test]
    fn a_lock_without_a_pid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "").unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err();
        assert!(err.to_string().contains("without a pid"), "{err}");
        assert!(err.hint().contains("delete"), "{}", err.hint());
    }
}
