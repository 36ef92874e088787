//! `snnc run` against bad input and faults (issue 15): what is refused before
//! simulating, recordings streamed to disk and kept on Ctrl-C or a write error, memory
//! estimated before allocating, and a closed stdout.
use ndarray::{Array1, Array2};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn snnc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_snnc"));
    c.current_dir(env!("CARGO_MANIFEST_DIR")).env("NO_COLOR", "1").env_remove("SNNC_MEMORY_LIMIT");
    c
}

fn run(args: &[&str]) -> Output {
    snnc().args(args).output().expect("run snnc")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fresh directory for one test.
fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("snnc-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Item 2: a bad `--out` is refused before anything is simulated (a 1000 s run would
/// take minutes and print its summary first).
#[test]
fn run_refuses_a_bad_out_before_simulating() {
    let dir = temp("badout");
    let file = dir.join("afile");
    std::fs::write(&file, "x").unwrap();
    let started = Instant::now();
    for out in [file.to_str().unwrap(), "/proc/x"] {
        let o = run(&["run", "examples/embed.snn", "--duration", "1000s", "--out", out]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stdout(&o).is_empty(), "simulated first: {}", stdout(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    let o = run(&["run", "examples/embed.snn", "--out", file.to_str().unwrap()]);
    insta::assert_snapshot!("out_is_a_file", stderr(&o).replace(dir.to_str().unwrap(), "[TMP]"));
    let o = run(&["run", "examples/embed.snn", "--out", "/proc/x"]);
    insta::assert_snapshot!("out_cannot_be_created", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}

/// The number in a line like `interrupted at step 1234 of 10000000 ...`.
fn step_of(message: &str, after: &str) -> u64 {
    let rest = &message[message.find(after).unwrap_or_else(|| panic!("no `{after}` in {message}")) + after.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// Checks the recordings of `examples/embed.snn` in `dir` after `steps` steps: the
/// trace has one row per step, the spike arrays agree, times are within the run.
fn check_recordings(dir: &Path, steps: u64) {
    let v: Array2<f32> = ndarray_npy::read_npy(dir.join("h.v.npy")).unwrap();
    assert_eq!(v.shape(), &[steps as usize, 10]);
    let t: Array1<f64> = ndarray_npy::read_npy(dir.join("h.spikes.t.npy")).unwrap();
    let i: Array1<i64> = ndarray_npy::read_npy(dir.join("h.spikes.i.npy")).unwrap();
    assert_eq!(t.len(), i.len());
    assert!(!t.is_empty());
    assert!(t.iter().all(|x| *x > 0.0 && *x <= steps as f64 * 1e-3 + 1e-9), "times beyond step {steps}");
    assert!(t.as_slice().unwrap().windows(2).all(|w| w[0] <= w[1]));
    assert!(i.iter().all(|x| (0..10).contains(x)));
}

/// Item 3: Ctrl-C stops the run between steps with exit code 130, says where, and
/// what was recorded up to there is in valid `.npy` files. The recordings of a run are
/// the same whether they were streamed in one chunk or many.
#[test]
fn ctrl_c_stops_the_run_and_keeps_the_recordings() {
    let dir = temp("sigint");
    let out = dir.join("rec");
    let child = snnc()
        .args(["run", "examples/embed.snn", "--input", "x=poisson:80Hz", "--duration", "10000s"])
        .args(["--record", "spikes,v", "--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The files are created once the network is built and Ctrl-C is caught; then let
    // it run for more than one chunk (1 MiB: 26,000 steps of v). Waiting for the bytes,
    // not for a time, holds on a machine of any speed; the whole run (10^7 steps, 400 MB
    // of v) fits the disk of a small CI machine and takes seconds even in a debug build.
    let v_bytes = || std::fs::metadata(out.join("h.v.npy")).map(|m| m.len()).unwrap_or(0);
    let t0 = Instant::now();
    while v_bytes() < 2 << 20 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("the recordings up to there are written"), "{err}");
    let steps = step_of(&err, "interrupted at step ");
    assert!(steps > 26_000 && steps < 10_000_000, "{err}");
    assert!(stdout(&o).contains(&format!("({steps} steps of 1 ms)")), "{}", stdout(&o));
    check_recordings(&out, steps);
    std::fs::remove_dir_all(&dir).ok();
}

/// `--max-steps` takes whole numbers, also as `1e9`.
#[test]
fn max_steps_reads_whole_numbers() {
    let o = run(&["run", "examples/embed.snn", "--max-steps", "lots"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`lots` is not a whole number >= 0"), "{}", stderr(&o));
    let o = run(&["run", "examples/embed.snn", "--duration", "5ms", "--max-steps", "5e0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["run", "examples/embed.snn", "--duration", "6ms", "--max-steps", "5e0"]);
    assert!(stderr(&o).contains("is 6 steps of 1 ms (the `dt` of network `feedforward`), over the limit of 5 steps"), "{}", stderr(&o));
}

/// Item 3: recordings that cannot fit on the disk are refused before the run, with
/// the bytes needed (here 4000 neurons x 10^10 steps of f32: 160 TB).
#[test]
fn recordings_larger_than_the_disk_are_refused() {
    let dir = temp("disk");
    let o = run(&["run", "examples/coba.snn", "--duration", "1000000s", "--max-steps", "1e12", "--record", "v", "--out", dir.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the recordings need about 160.0 TB (160000000000256 bytes)") && err.contains("are free on the disk of"), "{err}");
    assert!(stdout(&o).is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

/// Item 4: networks too large for memory are refused at the line at fault, before
/// anything is allocated (each case used to abort: `memory allocation of N bytes
/// failed`). SNNC_MEMORY_LIMIT makes the available memory the same on every machine.
#[test]
fn networks_too_large_for_memory_are_refused_at_their_line() {
    for (file, snap) in [
        ("dense_100k", "memory_dense_100k"),
        ("sparse_1m", "memory_sparse_1m"),
        ("neurons_1e10", "memory_neurons_1e10"),
        ("delay_1e9s", "memory_delay_1e9s"),
    ] {
        let path = format!("tests/data/limits/{file}.snn");
        let started = Instant::now();
        let o = snnc().args(["run", &path, "--duration", "10ms"]).env("SNNC_MEMORY_LIMIT", "1GB").output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{file}: {}", stderr(&o));
        assert!(started.elapsed() < Duration::from_secs(20), "{file}: {:?}", started.elapsed());
        insta::assert_snapshot!(snap, stderr(&o));
    }
    // Without the variable, the machine's free memory (no machine has 640 GB free).
    let o = run(&["run", "tests/data/limits/neurons_1e10.snn", "--duration", "10ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error[E0701]: network `huge` needs about 640.0 GB"), "{}", stderr(&o));
    // f64 takes more, and says how to halve it.
    let o = snnc().args(["run", "tests/data/limits/dense_100k.snn", "--precision", "f64"]).env("SNNC_MEMORY_LIMIT", "1GB").output().unwrap();
    assert!(stderr(&o).contains("needs about 80.0 GB") && stderr(&o).contains("`--precision f32` halves"), "{}", stderr(&o));
}

/// Item 14: a step count of 0 or over the limit is refused, saying the number; a
/// duration that is not a whole number of steps is rounded with a warning.
#[test]
fn step_counts_are_checked_and_rounding_is_said() {
    let o = run(&["run", "tests/data/limits/tiny_dt.snn", "--duration", "10ms"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("steps_over_the_limit", stderr(&o));
    let o = run(&["run", "examples/embed.snn", "--dt", "1s", "--duration", "10ms"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("steps_zero", stderr(&o));
    let o = run(&["run", "examples/embed.snn", "--duration", "1.5ms"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("simulated 0.0020 s (2 steps of 1 ms)"), "{}", stdout(&o));
    insta::assert_snapshot!("duration_rounded", stderr(&o));
    // --max-steps raises (or lowers) the limit.
    let o = run(&["run", "examples/embed.snn", "--duration", "20ms", "--max-steps", "10"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is 20 steps of 1 ms (the `dt` of network `feedforward`), over the limit of 10 steps"), "{}", stderr(&o));
    // A whole number of steps says nothing.
    let o = run(&["run", "examples/embed.snn", "--duration", "3ms"]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
}

/// Item 19: the messages of `run`'s arguments.
#[test]
fn run_messages_name_what_is_wrong() {
    let o = run(&["run", "examples/embed.snn", "--duration", "banana"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`banana` is not a time: expected a number and a unit"), "{}", stderr(&o));
    let o = run(&["run", "examples/embed.snn", "--duration", "1.2.3ms"]);
    assert!(stderr(&o).contains("`1.2.3` (in `1.2.3ms`) is not a number"), "{}", stderr(&o));
    let o = run(&["run", "tests/data/limits/no_network.snn"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("no_network", stderr(&o));
    // --record without --out would record nothing: refused.
    let o = run(&["run", "examples/embed.snn", "--record", "v"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--out <DIR>"), "{}", stderr(&o));
    // One population, not "1 populations".
    let o = run(&["run", "examples/embed.snn", "--duration", "1ms"]);
    let s = stdout(&o);
    assert!(s.contains("network feedforward: 10 neurons in 1 population, 200 synapses in 1 projection"), "{s}");
    assert!(s.contains("simulated 0.0010 s (1 step of 1 ms)"), "{s}");
}

/// Spawns `snnc args` with a stdout whose reading end is already closed.
#[cfg(unix)]
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    snnc().args(args).stdout(writer).stderr(Stdio::piped()).spawn().unwrap().wait_with_output().unwrap()
}

/// Item 13: a closed stdout (`| head -1`) ends every command quietly: no panic
/// (`failed printing to stdout: Broken pipe`), killed by SIGPIPE like other tools.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_commands_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = temp("pipe");
    let out = dir.join("rec");
    let cases: Vec<Vec<&str>> = vec![
        vec!["check", "stdlib/lif.snn", "examples/coba.snn"],
        vec!["explain", "stdlib/lif.snn"],
        vec!["fmt", "stdlib/lif.snn"],
        vec!["--help"],
        vec!["run", "examples/embed.snn", "--input", "x=poisson:80Hz", "--duration", "50ms", "--record", "spikes,v", "--out", out.to_str().unwrap()],
    ];
    for args in &cases {
        let o = with_closed_stdout(args);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{args:?}: {:?} {err}", o.status);
    }
    // The run's recordings were finished before its summary was printed.
    check_recordings(&out, 50);
    std::fs::remove_dir_all(&dir).ok();
}

/// Item 17: a write that fails is reported, naming the file, with a non-zero exit;
/// what was written stays valid. `raster.png` on a full device (a link to
/// `/dev/full`), and a recording that outgrows the file size limit (RLIMIT_FSIZE)
/// in the middle of the run.
#[cfg(target_os = "linux")]
#[test]
fn write_errors_are_reported_and_the_rest_is_kept() {
    use std::os::unix::process::CommandExt;
    let dir = temp("full");
    let out = dir.join("png");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink("/dev/full", out.join("raster.png")).unwrap();
    let o = run(&["run", "examples/embed.snn", "--input", "x=poisson:80Hz", "--duration", "100ms", "--record", "spikes,v", "--plot", "--out", out.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot write `{}`: No space left on device", out.join("raster.png").display())), "{err}");
    check_recordings(&out, 100);

    // 40 bytes of v a step: the first chunk (1 MiB, 26,215 steps) crosses 100 kB.
    let out = dir.join("fsize");
    let mut cmd = snnc();
    cmd.args(["run", "examples/embed.snn", "--input", "x=poisson:80Hz", "--duration", "100s", "--record", "v", "--out", out.to_str().unwrap()]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 100_000, rlim_max: 100_000 };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("error: cannot write `{}`: File too large", out.join("h.v.npy").display())), "{err}");
    let steps = step_of(&err, "stopped at step ");
    assert!(steps > 20_000 && steps < 100_000, "{err}");
    // Back to the rows the header counts: a valid, empty array.
    let v: Array2<f32> = ndarray_npy::read_npy(out.join("h.v.npy")).unwrap();
    assert_eq!(v.shape(), &[0, 10]);
    assert!(!stdout(&o).contains("wrote"), "{}", stdout(&o));
    std::fs::remove_dir_all(&dir).ok();
}

/// The memory check counts the process's own limit (`ulimit -v`), not only the machine's
/// free memory: a 3.6 GB network under a 1 GB address-space limit is refused with the
/// figures, where it used to abort in the allocator (found by the fuzzer under its
/// memory limit).
#[cfg(target_os = "linux")]
#[test]
fn a_process_memory_limit_is_respected() {
    use std::os::unix::process::CommandExt;
    let dir = std::env::temp_dir().join(format!("snnc-rlimit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big.snn");
    std::fs::write(&file, "import \"stdlib/lif.snn\"\nnetwork big {\n    layer a = LIF[30000]\n    connect a -> a.I dense\n}\n").unwrap();
    let mut cmd = snnc();
    cmd.args(["run", file.to_str().unwrap(), "--duration", "1ms", "-I", "."]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 1 << 30, rlim_max: 1 << 30 };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("error[E0701]") && err.contains("needs about 3.6 GB"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
