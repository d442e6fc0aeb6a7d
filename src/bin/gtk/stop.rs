//! Stopping a training process cleanly: the first SIGTERM (Slurm's preemption and time-limit
//! signal) or SIGINT (Ctrl-C) asks the trainer to stop at the next step boundary, commit and
//! exit with [`gatekit::sweep::slurm::STOPPED_EXIT`]; a second one ends the process at once
//! (what it committed last is kept either way).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The error a run stopped by a signal ends with: `main` prints it and exits with
/// [`gatekit::sweep::slurm::STOPPED_EXIT`], which an array script reads as "requeue me".
#[derive(Debug)]
pub struct Stopped {
    /// The committed step.
    pub step: usize,
    /// The run's step count.
    pub total: usize,
    /// The run folder.
    pub dir: std::path::PathBuf,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped by a signal at step {} of {}, committed; continue with: gtk train --resume {}",
            self.step,
            self.total,
            self.dir.display()
        )
    }
}

impl std::error::Error for Stopped {}

/// Installs the SIGTERM and SIGINT handlers; the flag they raise.
pub fn on_signal() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let f = flag.clone();
        // SAFETY: the handler only swaps an atomic and may call `_exit`, both
        // async-signal-safe; it allocates nothing and takes no lock.
        let installed = unsafe {
            signal_hook_registry::register(signal, move || {
                if f.swap(true, Ordering::SeqCst) {
                    libc::_exit(128 + signal);
                }
            })
        };
        if let Err(e) = installed {
            eprintln!("note: cannot handle signal {signal} ({e}); it will end training at once");
        }
    }
    flag
}
