//! `snnc-fuzz`: mutants of every `.snn` file in the repository, each run through
//! `snnc check`, `fmt` and `explain`, and when it checks, `run` for a few steps and
//! `train` for one batch (if it has a `train` block), every command in a child process
//! under a memory limit and a timeout. Outcomes are ok, a clean refusal (exit 1 or 2
//! with a message) or a failure (a panic, a stack overflow, an allocation abort, a
//! signal, a timeout, a silent or odd exit). Deterministic from `--seed`: mutant `i`
//! depends only on (seed, i). Each failing input is written to `--failures` with the
//! command that failed, for reproduction. Exits 1 if anything failed.
//!
//! `cargo build --release -p snnc && cargo run --release -p snnc-fuzz -- --count 10000 --seed 1`

mod exec;
mod mutate;

use clap::Parser;
use exec::{Outcome, Ran};
use mutate::Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Mutation fuzzer of the snnc command line (see docs/testing.md)")]
struct Args {
    /// Number of mutants.
    #[arg(long, default_value_t = 300)]
    count: usize,
    /// Seed of every choice; a run is reproducible from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run only mutant INDEX (to reproduce one; its commands are printed).
    #[arg(long, value_name = "INDEX")]
    only: Option<usize>,
    /// The `snnc` binary (default: the one next to this program, i.e. the same profile).
    #[arg(long)]
    snnc: Option<PathBuf>,
    /// The repository, whose `.snn` files are mutated (default: the current directory).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Parallel mutants (default: the number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// Address-space limit of each child, in MiB.
    #[arg(long, default_value_t = 4096)]
    mem_mib: u64,
    /// Time limit of each command, in seconds.
    #[arg(long, default_value_t = 20.0)]
    timeout: f64,
    /// Simulated time of `run` (a few steps).
    #[arg(long, default_value = "2ms")]
    duration: String,
    /// Simulated time of `run` on the interpreter (`--backend interp`, every fourth run):
    /// a reference some hundred times slower than the JIT in a debug build, so one step
    /// (at dt 0.1 ms) keeps a large network's run within the time limit.
    #[arg(long, default_value = "0.1ms")]
    interp_duration: String,
    /// The memory `snnc` may plan for (`SNNC_MEMORY_LIMIT` of each child): a mutant whose
    /// network needs more is refused by its estimate (E0701) before it is built, instead
    /// of spending the time limit building hundreds of MB in a debug build.
    #[arg(long, default_value = "256MB")]
    memory_limit: String,
    /// Where failing inputs and their reports are written.
    #[arg(long, default_value = "target/fuzz-failures")]
    failures: PathBuf,
}

/// The repository's `.snn` files (not under `target/`, `.git/` or virtualenvs), sorted.
fn corpus(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if !(name.starts_with('.') || name == "target" || name == "runs" || name == "node_modules") {
                    dirs.push(p);
                }
            } else if name.ends_with(".snn") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// One mutant and what happened to it.
struct Report {
    index: usize,
    file: PathBuf,
    mutations: Vec<String>,
    text: Vec<u8>,
    /// (command name, arguments, result), in the order run.
    runs: Vec<(&'static str, Vec<String>, Ran)>,
}

impl Report {
    fn failure(&self) -> Option<&(&'static str, Vec<String>, Ran)> {
        self.runs.iter().find(|(_, _, r)| r.outcome.is_failure())
    }
}

struct Fuzz {
    args: Args,
    snnc: PathBuf,
    root: PathBuf,
    files: Vec<PathBuf>,
    texts: Vec<Vec<u8>>,
    work: PathBuf,
}

/// Names following the word `network` in the text (at most two).
fn network_names(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
    let mut names: Vec<String> = words.windows(2).filter(|w| w[0] == "network").map(|w| w[1].to_string()).collect();
    names.dedup();
    names.truncate(2);
    names
}

/// Extra `train` arguments by original file: the task data the file is meant for, and
/// short trials so one batch stays quick.
fn train_extras(root: &Path, file: &Path) -> Vec<String> {
    let shd = root.join("tests/data/shd_h5py_gzip.h5");
    match file.file_name().and_then(|f| f.to_str()).unwrap_or("") {
        "tiny_shd.snn" | "shd.snn" => vec!["--task".into(), format!("shd:{}", shd.display()), "--max-time".into(), "50ms".into()],
        "dms.snn" => ["--delay", "20ms", "--sample", "20ms", "--test-period", "20ms"].map(String::from).to_vec(),
        "evidence.snn" | "tiny_evidence.snn" => ["--delay", "20ms"].map(String::from).to_vec(),
        _ => Vec::new(),
    }
}

impl Fuzz {
    fn exec(&self, report: &mut Report, name: &'static str, args: Vec<String>, dir: &Path) -> Outcome {
        let timeout = Duration::from_secs_f64(self.args.timeout);
        let ran = exec::run(&self.snnc, &args, dir, self.args.mem_mib << 20, &self.args.memory_limit, timeout);
        let outcome = ran.outcome;
        report.runs.push((name, args, ran));
        outcome
    }

    /// Mutant `index`: made, written, and run through the commands.
    fn mutant(&self, index: usize) -> Report {
        let mut rng = Rng::new(self.args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let k = rng.below(self.files.len());
        let (text, mutations) = mutate::mutate(&self.texts[k], &mut rng);
        let file = self.files[k].clone();
        let mut report = Report { index, file: file.clone(), mutations, text, runs: Vec::new() };
        let dir = self.work.join(format!("{index:05}"));
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::create_dir_all(&dir).is_err() {
            return report;
        }
        let path = dir.join(file.file_name().unwrap_or_default());
        if std::fs::write(&path, &report.text).is_err() {
            return report;
        }
        let p = path.display().to_string();
        // Imports resolve as from the original's place.
        let inc = |mut v: Vec<String>| {
            let orig_dir = file.parent().unwrap_or(Path::new(".")).display().to_string();
            v.extend(["-I".into(), orig_dir, "-I".into(), self.root.display().to_string()]);
            v
        };
        let checked = self.exec(&mut report, "check", inc(vec!["check".into(), p.clone()]), &dir) == Outcome::Ok;
        self.exec(&mut report, "fmt", vec!["fmt".into(), p.clone()], &dir);
        if !checked {
            return self.finish(report, &dir);
        }
        self.exec(&mut report, "explain", inc(vec!["explain".into(), p.clone()]), &dir);
        let text = String::from_utf8_lossy(&report.text).into_owned();
        for net in network_names(&text) {
            let interp = index % 4 == 1;
            let duration = if interp { &self.args.interp_duration } else { &self.args.duration };
            let mut run = vec!["run".into(), p.clone(), "--network".into(), net.clone(), "--duration".into(), duration.clone()];
            run.extend(["--out".into(), dir.join(format!("run-{net}")).display().to_string()]);
            if index % 4 == 0 {
                run.push("--plot".into());
            }
            if interp {
                run.extend(["--backend".into(), "interp".into()]);
            }
            self.exec(&mut report, "run", inc(run), &dir);
            if text.contains("train {") || text.contains("train{") {
                let mut train = vec!["train".into(), p.clone(), "--network".into(), net.clone()];
                train.extend(["--epochs", "1", "--batches", "1", "--test-batches", "1", "--batch", "2"].map(String::from));
                train.extend(["--out".into(), dir.join(format!("train-{net}")).display().to_string()]);
                train.extend(train_extras(&self.root, &file));
                self.exec(&mut report, "train", inc(train), &dir);
            }
        }
        self.finish(report, &dir)
    }

    /// Keeps a failing mutant (and its report) in the failures folder; removes the rest.
    fn finish(&self, report: Report, dir: &Path) -> Report {
        if let Some((cmd, _, ran)) = report.failure() {
            let stem = format!("{:05}-{}-{cmd}", report.index, ran.outcome.name());
            let snn = self.args.failures.join(format!("{stem}.snn"));
            let _ = std::fs::create_dir_all(&self.args.failures);
            let _ = std::fs::write(&snn, &report.text);
            // Paths in the (removed) work folder: the kept input, or a folder beside it.
            let work = dir.display().to_string();
            let out = self.args.failures.join(format!("{stem}-out")).display().to_string();
            let mut note = format!(
                "mutant {} of {} (seed {}; again: snnc-fuzz --seed {} --only {})\nmutations: {}\n",
                report.index,
                report.file.display(),
                self.args.seed,
                self.args.seed,
                report.index,
                report.mutations.join("; ")
            );
            for (cmd, args, ran) in report.runs.iter().filter(|(_, _, r)| r.outcome.is_failure()) {
                let shown: Vec<String> = args
                    .iter()
                    .map(|a| if a.starts_with(&work) && a.ends_with(".snn") { snn.display().to_string() } else { a.replace(&work, &out) })
                    .collect();
                note += &format!(
                    "\n{cmd}: {} ({}) after {:.1} s\nreproduce: snnc {}\nstderr:\n{}\n",
                    ran.outcome.name(),
                    ran.status,
                    ran.seconds,
                    shown.join(" "),
                    ran.stderr
                );
            }
            let _ = std::fs::write(self.args.failures.join(format!("{stem}.txt")), note);
        }
        let _ = std::fs::remove_dir_all(dir);
        report
    }
}

/// What identifies a failure for the summary: class, command and the first line of
/// stderr that says where (a panic's location), with numbers blanked.
fn signature(cmd: &str, ran: &Ran) -> String {
    let line = ran
        .stderr
        .lines()
        .find(|l| l.contains("panicked at") || l.contains("overflowed") || l.contains("memory allocation"))
        .or_else(|| ran.stderr.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or(&ran.status);
    // Numbers (thread ids, byte counts, line:col of std's own files) blanked as one `#`.
    let mut blank = String::new();
    for c in line.chars().take(160) {
        if !c.is_ascii_digit() {
            blank.push(c);
        } else if !blank.ends_with('#') {
            blank.push('#');
        }
    }
    format!("{} in {cmd}: {}", ran.outcome.name(), blank.trim())
}

fn print_summary(reports: &[Report], seconds: f64) -> usize {
    let mut by_cmd: BTreeMap<&str, BTreeMap<Outcome, usize>> = BTreeMap::new();
    for r in reports {
        for (cmd, _, ran) in &r.runs {
            *by_cmd.entry(cmd).or_default().entry(ran.outcome).or_default() += 1;
        }
    }
    println!("{} mutants in {seconds:.1} s", reports.len());
    for (cmd, counts) in &by_cmd {
        let parts: Vec<String> = counts.iter().map(|(o, n)| format!("{} {n}", o.name())).collect();
        println!("  {cmd:8} {}", parts.join(", "));
    }
    // Every failing command counts (a mutant may fail in `run` and in `train`).
    let mut distinct: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in reports {
        for (cmd, _, ran) in r.runs.iter().filter(|(_, _, ran)| ran.outcome.is_failure()) {
            distinct.entry(signature(cmd, ran)).or_default().push(r.index);
        }
    }
    let failed = reports.iter().filter(|r| r.failure().is_some()).count();
    println!("{failed} failing mutants, {} distinct failures", distinct.len());
    for (sig, idx) in &distinct {
        let shown: Vec<String> = idx.iter().take(5).map(|i| format!("{i:05}")).collect();
        println!("  {:4} x {sig}  (e.g. {})", idx.len(), shown.join(", "));
    }
    failed
}

fn main() -> ExitCode {
    let args = Args::parse();
    let snnc = args.snnc.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        exe.with_file_name(format!("snnc{}", std::env::consts::EXE_SUFFIX))
    });
    if !snnc.is_file() {
        eprintln!("error: no snnc binary at {} (build it first: `cargo build --release -p snnc`, or give --snnc)", snnc.display());
        return ExitCode::from(2);
    }
    // Children run in their mutant's folder: a relative path would not reach the binary.
    let snnc = std::fs::canonicalize(&snnc).unwrap_or(snnc);
    let root = std::fs::canonicalize(&args.root).unwrap_or_else(|_| args.root.clone());
    let files = corpus(&root);
    let texts: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap_or_default()).collect();
    if files.is_empty() {
        eprintln!("error: no .snn files under {}", root.display());
        return ExitCode::from(2);
    }
    let work = std::env::temp_dir().join(format!("snnc-fuzz-{}", std::process::id()));
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let indices: Vec<usize> = match args.only {
        Some(i) => vec![i],
        None => (0..args.count).collect(),
    };
    println!("snnc-fuzz: {} files, {} mutants, seed {}, {jobs} jobs, {} MiB and {} s per command, {}", files.len(), indices.len(), args.seed, args.mem_mib, args.timeout, snnc.display());
    let fuzz = Fuzz { args, snnc, root, files, texts, work };
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                while let Some(&i) = indices.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let r = fuzz.mutant(i);
                    let mut d = done.lock().unwrap();
                    d.push(r);
                    if d.len() % 500 == 0 {
                        eprintln!("  {} / {} mutants, {:.0} s", d.len(), indices.len(), start.elapsed().as_secs_f64());
                    }
                }
            });
        }
    });
    let _ = std::fs::remove_dir_all(&fuzz.work);
    let mut reports = done.into_inner().unwrap();
    reports.sort_by_key(|r| r.index);
    if fuzz.args.only.is_some() {
        for r in &reports {
            println!("mutant {} of {}: {}", r.index, r.file.display(), r.mutations.join("; "));
            for (cmd, args, ran) in &r.runs {
                println!("  {cmd}: {} ({}, {:.2} s): snnc {}", ran.outcome.name(), ran.status, ran.seconds, args.join(" "));
            }
        }
    }
    let failed = print_summary(&reports, start.elapsed().as_secs_f64());
    if failed > 0 {
        println!("failing inputs and reports: {}", fuzz.args.failures.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
