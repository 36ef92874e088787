//! One `snnc` command in a child process under a memory limit (`RLIMIT_AS`, set
//! between fork and exec) and a timeout, and the class of its outcome.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Exit code 0.
    Ok,
    /// Exit code 1 or 2 with a message on stderr: the input was refused cleanly.
    Refused,
    // Everything below is a failure.
    /// `panicked at` on stderr.
    Panic,
    /// The main thread or a worker overflowed its stack.
    StackOverflow,
    /// An allocation failed (the memory limit): an abort instead of a refusal.
    OutOfMemory,
    /// Killed by another signal (SIGABRT, SIGSEGV, ...).
    Signal,
    /// Still running at the timeout (killed).
    Timeout,
    /// Exit 1 or 2 without a message, or another exit code.
    BadExit,
}

impl Outcome {
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Refused)
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Panic => "panic",
            Outcome::StackOverflow => "stack-overflow",
            Outcome::OutOfMemory => "out-of-memory",
            Outcome::Signal => "signal",
            Outcome::Timeout => "timeout",
            Outcome::BadExit => "bad-exit",
        }
    }
}

/// A finished command: its class, a one-line summary and the end of its stderr.
pub struct Ran {
    pub outcome: Outcome,
    pub status: String,
    pub stderr: String,
    pub seconds: f64,
}

/// Runs `snnc args...` in `dir` with at most `mem_bytes` of address space for at most
/// `timeout`, planning for at most `memory_limit` (`SNNC_MEMORY_LIMIT`). Stdout is
/// discarded; stderr is kept (its first 3 KiB and last 1 KiB).
pub fn run(snnc: &Path, args: &[String], dir: &Path, mem_bytes: u64, memory_limit: &str, timeout: Duration) -> Ran {
    let mut cmd = Command::new(snnc);
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1").env("SNNC_MEMORY_LIMIT", memory_limit).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (setpgid, setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Its own process group, so a timeout kills whatever it started too.
            libc::setpgid(0, 0);
            let lim = libc::rlimit { rlim_cur: mem_bytes as libc::rlim_t, rlim_max: mem_bytes as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ran { outcome: Outcome::BadExit, status: format!("could not start: {e}"), stderr: String::new(), seconds: 0.0 },
    };
    // Read stderr on a thread so a chatty child cannot block on a full pipe.
    let mut pipe = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() > timeout => {
                // SAFETY: a plain kill(2) of the child's own process group.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.kill();
                timed_out = true;
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let raw = reader.join().unwrap_or_default();
    let full = String::from_utf8_lossy(&raw);
    // Classified on all of it (an allocation failure is reported before a long
    // backtrace); kept: its start, where the message is, and its end.
    let (outcome, status) = classify(status, timed_out, &full);
    Ran { outcome, status, stderr: excerpt(&full, 3072, 1024), seconds }
}

/// `text` if short, else its first `head` and last `tail` bytes (on char boundaries).
fn excerpt(text: &str, head: usize, tail: usize) -> String {
    if text.len() <= head + tail {
        return text.to_string();
    }
    let h = (0..=head).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    let t = (text.len() - tail..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    format!("{}\n[... {} bytes ...]\n{}", &text[..h], t - h, &text[t..])
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGTRAP => "SIGTRAP".into(),
        s => format!("signal {s}"),
    }
}

/// The class of an ended command; stderr's evidence first (a panic may exit with 101 or
/// abort), then the status.
fn classify(status: Option<std::process::ExitStatus>, timed_out: bool, stderr: &str) -> (Outcome, String) {
    let Some(status) = status else { return (Outcome::BadExit, "lost the child".into()) };
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => signal_name(s),
        _ => "unknown status".into(),
    };
    if timed_out {
        return (Outcome::Timeout, "timeout (killed)".into());
    }
    if stderr.contains("has overflowed its stack") {
        return (Outcome::StackOverflow, how);
    }
    if stderr.contains("panicked at") {
        return (Outcome::Panic, how);
    }
    if stderr.contains("memory allocation of") || stderr.contains("capacity overflow") {
        return (Outcome::OutOfMemory, how);
    }
    match (status.code(), status.signal()) {
        (Some(0), _) => (Outcome::Ok, how),
        (Some(1 | 2), _) if !stderr.trim().is_empty() => (Outcome::Refused, how),
        (Some(_), _) => (Outcome::BadExit, how),
        (None, _) => (Outcome::Signal, how),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, mem: u64, timeout: f64) -> Ran {
        let args = vec!["-c".to_string(), script.to_string()];
        run(Path::new("/bin/sh"), &args, Path::new("/"), mem, "256MB", Duration::from_secs_f64(timeout))
    }

    #[test]
    fn outcomes_are_classified() {
        let big = 1 << 32;
        assert_eq!(sh("exit 0", big, 5.0).outcome, Outcome::Ok);
        assert_eq!(sh("echo 'error: no' >&2; exit 1", big, 5.0).outcome, Outcome::Refused);
        assert_eq!(sh("exit 1", big, 5.0).outcome, Outcome::BadExit);
        assert_eq!(sh("echo \"thread 'main' panicked at src/x.rs:1:1\" >&2; exit 101", big, 5.0).outcome, Outcome::Panic);
        assert_eq!(sh("kill -SEGV $$", big, 5.0).outcome, Outcome::Signal);
        let r = sh("kill -ABRT $$", big, 5.0);
        assert_eq!((r.outcome, r.status.as_str()), (Outcome::Signal, "SIGABRT"));
        assert_eq!(sh("sleep 5", big, 0.2).outcome, Outcome::Timeout);
    }

    #[test]
    fn a_message_before_a_long_backtrace_is_seen() {
        let r = sh("echo 'memory allocation of 8 bytes failed' >&2; seq 1 3000 >&2; kill -ABRT $$", 1 << 32, 5.0);
        assert_eq!(r.outcome, Outcome::OutOfMemory);
        assert!(r.stderr.starts_with("memory allocation") && r.stderr.ends_with("3000\n") && r.stderr.len() < 4200, "{}", r.stderr);
    }

    #[test]
    fn the_memory_limit_applies_to_the_child() {
        // A shell cannot even start in 1 MiB of address space.
        assert_ne!(sh("exit 0", 1 << 20, 5.0).outcome, Outcome::Ok);
    }
}
