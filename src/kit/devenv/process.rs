//! Starting and stopping the two daemons.
//!
//! They must never outlive the test process, whatever way it ends. Two things
//! make that hold: `PR_SET_PDEATHSIG=SIGKILL` set in the child before `exec`,
//! and a single long-lived spawner thread. The death signal fires when the
//! *thread* that forked the child exits, not the process, so spawning from a
//! tokio worker or blocking-pool thread that later retires would kill the
//! daemons mid-test; the spawner thread lives until the process exits.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::DevEnvError;
use super::error::LogExcerpt;

type SpawnJob = Box<dyn FnOnce() + Send>;

/// Runs `job` on the process-wide spawner thread, starting it on first use.
fn on_spawner_thread(job: SpawnJob) -> std::io::Result<()> {
    static SPAWNER: OnceLock<std::io::Result<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("devenv-spawner".into())
            .spawn(move || {
                // Never returns while a sender exists, and the sender is static.
                for job in rx {
                    job();
                }
            })
            .map(|_| tx)
    });
    match sender {
        Ok(tx) => tx
            .send(job)
            .map_err(|_| std::io::Error::other("devenv spawner thread is gone")),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("starting the devenv spawner thread: {e}"),
        )),
    }
}

/// Spawns `cmd` with a parent-death signal, from the long-lived spawner thread.
fn spawn_tied_to_parent(mut cmd: Command) -> std::io::Result<Child> {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(libc::pid_t::MAX);
    // SAFETY: the closure only calls async-signal-safe functions (prctl,
    // getppid) and builds an io::Error without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    on_spawner_thread(Box::new(move || {
        // The receiver only disappears if the caller panicked; nothing to do then.
        let _ = tx.send(cmd.spawn());
    }))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("devenv spawner thread dropped the request"))?
}

/// A running etcd or kube-apiserver.
#[derive(Debug)]
pub(crate) struct Daemon {
    pub binary: &'static str,
    pub port: u16,
    pub log: PathBuf,
    child: Option<Child>,
    pid: u32,
}

impl Daemon {
    /// Starts `binary` with `args`, stdin from /dev/null and both output
    /// streams appended to `log`. Variables in `env_remove_prefix` are
    /// dropped from the child's environment (etcd treats `ETCD_*` as flags).
    pub fn start(
        binary: &'static str,
        path: &Path,
        args: &[String],
        log: PathBuf,
        port: u16,
        env_remove_prefix: Option<&str>,
    ) -> Result<Self, DevEnvError> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| DevEnvError::io("creating log file", &log, e))?;
        let err = out
            .try_clone()
            .map_err(|e| DevEnvError::io("duplicating log file handle", &log, e))?;
        let mut cmd = Command::new(path);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Own process group: a Ctrl-C in a terminal reaches only us, and we
            // stop the daemons in order.
            .process_group(0);
        if let Some(prefix) = env_remove_prefix {
            for (key, _) in std::env::vars_os() {
                if key.to_str().is_some_and(|k| k.starts_with(prefix)) {
                    cmd.env_remove(key);
                }
            }
        }
        let child = spawn_tied_to_parent(cmd).map_err(|source| DevEnvError::Spawn {
            binary,
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            binary,
            port,
            log,
            pid: child.id(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `Some(status)` once the process has exited (and is reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Error for a daemon that died while we waited for it.
    pub fn exited_error(&self, status: ExitStatus) -> DevEnvError {
        DevEnvError::Exited {
            binary: self.binary,
            port: self.port,
            status,
            log: Box::new(LogExcerpt {
                path: self.log.clone(),
                tail: log_tail(&self.log),
            }),
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; always reaps the child.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.pid) {
            // SAFETY: plain syscall on the pid of a child we have not reaped
            // yet, so the pid cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        tracing::warn!(
            binary = self.binary,
            pid = self.pid,
            "did not exit after SIGTERM, sending SIGKILL"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The last lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    const LINES: usize = 40;
    const MAX_CHARS: usize = 8000;
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            if text.trim().is_empty() {
                return "(log is empty)".to_owned();
            }
            let lines: Vec<&str> = text.lines().collect();
            let mut tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
            if tail.len() > MAX_CHARS {
                tail = format!("...{}", crate::text::suffix(&tail, MAX_CHARS));
            }
            tail
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Reserves `n` distinct free loopback ports. The listeners are held until
/// all are chosen so the ports differ; the daemons bind them a moment later,
/// and the caller retries on the rare "address already in use".
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, DevEnvError> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(DevEnvError::Port)?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(DevEnvError::Port))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(3).expect("ports");
        assert_eq!(ports.len(), 3);
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    }

    #[test]
    fn log_tail_keeps_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).expect("write");
        let tail = log_tail(&path);
        assert!(tail.starts_with("line 60"));
        assert!(tail.ends_with("line 99"));
        assert!(log_tail(&dir.path().join("missing")).contains("cannot read"));
    }

    #[test]
    fn daemon_is_stopped_by_sigterm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut daemon = Daemon::start(
            "sleep",
            Path::new("/bin/sleep"),
            &["30".to_owned()],
            dir.path().join("sleep.log"),
            0,
            None,
        )
        .expect("spawn sleep");
        let pid = daemon.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        assert!(daemon.exited().is_none());
        let started = Instant::now();
        daemon.stop(Duration::from_secs(5));
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "SIGTERM was not honoured"
        );
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
