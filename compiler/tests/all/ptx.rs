//! The PTX backend without a GPU.
//!
//! - `ptxas_accepts_every_kernel`: every stdlib model and the composed populations of the
//!   COBA, CUBA and DMS examples, step and derivative kernels, f32 and f64, sm_80 and
//!   sm_90, with all params uniform (folded) and all per-neuron (loaded), assembled by
//!   NVIDIA's `ptxas` (found through `SNNC_PTXAS`, `scripts/install-ptxas.sh`'s cache or
//!   PATH; skipped with a message when there is none).
//! - `emulated_*`: the emitted instruction stream run on the CPU
//!   ([`PtxKernel::emulate`]) against the reference interpreter, one step at a time from
//!   the reference's states (so errors do not compound): f64 states to 1e-12 of their
//!   scale and identical spikes; f32 to 1e-5 of the scale. The emulator executes the
//!   same instructions with the same IEEE roundings and `.ftz`, but replaces the f32
//!   hardware approximations (`ex2/lg2/sin/cos.approx`) by exact functions: what only a
//!   GPU can check is those instructions' error and the driver's loading of the module.
//! - Philox: emulated draws equal `random_draw` bit for bit (uniform) and to 1e-15
//!   (normal: Box–Muller through the f64 log/cos routines).
//! - Snapshots of two small kernels, and the launch geometry.

use crate::common::{Lcg, const_overrides, example_populations, input_scale, load, param_values, stdlib_models};
use snnc_compiler::SourceMap;
use snnc_compiler::backend::interp::InterpKernel;
use snnc_compiler::backend::ptx::{
    self, Access, DERIV_ENTRY, Precision, PtxKernel, Role, STEP_ENTRY, Target, compile_checked_step, compile_derivatives, compile_step,
    launch_config,
};
use snnc_compiler::backend::{ParamSpec, RandomCtx, StepArgs, StepKernel, random_draw};
use snnc_compiler::discretise::{Step, discretise};
use snnc_compiler::ir::{self, Env};
use snnc_compiler::sema::{self, Init, SymId};
use snnc_compiler::units::{self, Dim};
use std::path::{Path, PathBuf};
use std::process::Command;

const DT: f64 = 1e-4;

struct Case {
    name: String,
    step: Step,
    /// Param values (layout order): defaults, then the population's overrides.
    params: Vec<f64>,
    init: Vec<Init>,
}

fn case(name: String, step: Step, overrides: &[(SymId, f64)], settings: &[(SymId, Init)]) -> Case {
    let params = param_values(&step, overrides, DT);
    let init = step
        .layout
        .states
        .iter()
        .map(|&s| {
            if let Some((_, i)) = settings.iter().find(|(id, _)| *id == s) {
                return *i;
            }
            let sym = &step.model.symbols[s];
            let v = sym.value.as_ref().and_then(|v| v.const_value()).unwrap_or(0.0);
            match sym.dim {
                d if d == units::VOLT => Init::Uniform { low: v - 0.005, high: v + 0.005 },
                d if d == Dim::ONE => Init::Uniform { low: v, high: v + 0.3 },
                _ => Init::Const(v),
            }
        })
        .collect();
    Case { name, step, params, init }
}

fn stdlib_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (rel, m) in stdlib_models() {
        let step = discretise(&m).unwrap_or_else(|d| panic!("{}: {}", m.name, d.message)).at_dt(DT);
        out.push(case(format!("{rel}:{}", m.name), step, &[], &[]));
    }
    out
}

fn network_cases() -> Vec<Case> {
    let nets = [("examples/coba.snn", "coba"), ("examples/cuba.snn", "cuba"), ("examples/dms.snn", "dms")];
    let mut out = Vec::new();
    for (name, g) in example_populations(&nets) {
        let step = discretise(&g.model).unwrap_or_else(|d| panic!("{name}: {}", d.message)).at_dt(DT);
        out.push(case(name, step, &const_overrides(&g.settings), &g.settings));
    }
    out
}

fn all_cases() -> Vec<Case> {
    let mut c = stdlib_cases();
    let n = c.len();
    assert!(n >= 13, "{n} stdlib models");
    c.extend(network_cases());
    assert!(c.len() > n + 3, "{} network populations", c.len() - n);
    c
}

/// `ptxas`: `SNNC_PTXAS`, else the install script's cache, else PATH.
fn find_ptxas() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SNNC_PTXAS") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("SNNC_PTXAS_DIR").map(PathBuf::from).or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("snnc/ptxas"))
    });
    if let Some(p) = cache.map(|d| d.join("ptxas")).filter(|p| p.is_file()) {
        return Some(p);
    }
    let ok = Command::new("ptxas").arg("--version").output().is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from("ptxas"))
}

/// Assembles `text` for `target`; Err carries ptxas's message and the numbered source
/// lines it complains about.
fn assemble(ptxas: &Path, text: &str, target: Target, file: &Path) -> Result<(), String> {
    std::fs::write(file, text).unwrap();
    let out = Command::new(ptxas)
        .arg(format!("-arch={}", target.name()))
        .arg("-o")
        .arg("/dev/null")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ptxas.display()));
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let mut context = String::new();
    // Messages look like `ptxas file.ptx, line 42; error   : ...`.
    for part in msg.split("line ").skip(1) {
        if let Some(n) = part.split(';').next().and_then(|n| n.trim().parse::<usize>().ok()) {
            context.push_str(&format!("\n  {n:5}: {}", lines.get(n.wrapping_sub(1)).unwrap_or(&"?")));
        }
    }
    Err(format!("{msg}{context}"))
}

fn specs(c: &Case, per_neuron: bool) -> Vec<ParamSpec> {
    c.params.iter().map(|&v| if per_neuron { ParamSpec::PerNeuron } else { ParamSpec::Uniform(v) }).collect()
}

#[test]
fn ptxas_accepts_every_kernel() {
    let Some(ptxas) = find_ptxas() else {
        // Shown with --nocapture (CI runs the test after installing ptxas).
        eprintln!("skipping: ptxas not installed (run scripts/install-ptxas.sh)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("snnc-ptx-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kernel.ptx");
    let mut failures = Vec::new();
    let mut count = 0;
    for c in all_cases() {
        for per_neuron in [false, true] {
            let sp = specs(&c, per_neuron);
            for precision in [Precision::F32, Precision::F64] {
                for target in [Target::Sm80, Target::Sm90] {
                    let mut kernels = vec![
                        ("step".to_string(), compile_step(&c.step, &sp, precision, target)),
                        ("checked step".to_string(), compile_checked_step(&c.step, &sp, precision, target).map(|k| k.consuming(&[true; 8]).clocked(DT).listing().recording())),
                        ("derivatives".to_string(), compile_derivatives(&c.step, &sp, precision, target)),
                    ];
                    // The learning kernels generated from the derivatives (trace steps
                    // and the BPTT adjoint), for every model that carries derivatives.
                    if let Ok((ds, dl)) = c.step.with_derivative_outputs() {
                        use snnc_compiler::discretise::trace::{TraceKind, adjoint_step, trace_step};
                        // The step a training network runs: with D, Df and ds/dh as outputs.
                        kernels.push(("learning step".to_string(), compile_checked_step(&ds, &sp, precision, target)));
                        let lambda = if per_neuron { ParamSpec::PerNeuron } else { ParamSpec::Uniform(0.9) };
                        for input in 0..dl.n_in {
                            let t = trace_step(&ds, &dl, TraceKind::EsOutput { input });
                            kernels.push((format!("es-trace {input}"), compile_step(&t.step, &[lambda], precision, target)));
                        }
                        for col in 0..dl.n_p {
                            let t = trace_step(&ds, &dl, TraceKind::Param { col });
                            kernels.push((format!("param-trace {col}"), compile_step(&t.step, &[], precision, target)));
                        }
                        kernels.push(("adjoint".to_string(), compile_step(&adjoint_step(&ds, &dl).step, &[], precision, target)));
                        for input in 0..dl.n_in {
                            let w = snnc_compiler::discretise::trace::exact_window_step(&ds, &dl, input);
                            kernels.push((format!("d-rtrl window {input}"), compile_step(&w.step, &[], precision, target)));
                        }
                    }
                    for (what, k) in kernels {
                        let label = format!("{} {what} {precision:?} {} per_neuron={per_neuron}", c.name, target.name());
                        let k = k.unwrap_or_else(|e| panic!("{label}: {e}"));
                        count += 1;
                        if let Err(e) = assemble(&ptxas, &k.ptx(), target, &file) {
                            failures.push(format!("{label}:\n{e}"));
                        }
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "ptxas rejected {} of {count} kernels:\n{}", failures.len(), failures.join("\n"));
    eprintln!("ptxas ({}) accepted {count} kernels", ptxas.display());
}

/// The propagation module (spike lists, sparse events, one-to-one, accumulation, the
/// non-finite check) in both precisions for both targets; each entry is present once.
#[test]
fn ptxas_accepts_propagation_kernels() {
    use snnc_compiler::backend::ptx::propagate::{ENTRIES, emit_propagate};
    let mut texts = Vec::new();
    for precision in [Precision::F32, Precision::F64] {
        for target in [Target::Sm80, Target::Sm90] {
            let text = emit_propagate(precision, target);
            for e in ENTRIES {
                assert_eq!(text.matches(&format!(".entry {e}(")).count(), 1, "{e} in {precision:?}");
            }
            // The CPU interpreter (which runs these kernels in the runtime's tests)
            // decodes every instruction.
            let parsed = snnc_compiler::backend::ptx::text_emu::parse(&text).unwrap_or_else(|e| panic!("{precision:?}: {e}"));
            assert!(ENTRIES.iter().all(|e| parsed.contains_key(*e)), "{precision:?}");
            texts.push((format!("{precision:?} {}", target.name()), target, text));
        }
    }
    let Some(ptxas) = find_ptxas() else {
        eprintln!("skipping ptxas: not installed (run scripts/install-ptxas.sh)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("snnc-ptx-prop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("propagate.ptx");
    let failures: Vec<String> =
        texts.iter().filter_map(|(label, target, text)| assemble(&ptxas, text, *target, &file).err().map(|e| format!("{label}:\n{e}"))).collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "ptxas rejected the propagation module:\n{}", failures.join("\n"));
}

#[test]
fn sparse_grid_strides_over_spikes() {
    use snnc_compiler::backend::ptx::propagate::{SPARSE_BLOCK, SPARSE_MAX_BLOCKS, sparse_grid};
    assert_eq!(SPARSE_BLOCK % 32, 0);
    assert_eq!(sparse_grid(0), 1);
    assert_eq!(sparse_grid(8), 1);
    assert_eq!(sparse_grid(9), 2);
    assert_eq!(sparse_grid(3200), 400);
    assert_eq!(sparse_grid(400_000), SPARSE_MAX_BLOCKS);
}

/// Per-element data of a case: states, inputs and per-neuron params (f64).
struct Data {
    states: Vec<Vec<f64>>,
    params: Vec<Vec<f64>>,
    base: Vec<Vec<f64>>,
    in_scale: Vec<f64>,
}

fn data(c: &Case, n: usize, sp: &[ParamSpec], rng: &mut Lcg) -> Data {
    let states = c
        .init
        .iter()
        .map(|i| {
            (0..n)
                .map(|_| match *i {
                    Init::Const(v) => v,
                    Init::Uniform { low, high } => low + (high - low) * rng.next(),
                    Init::Normal { mean, std } => mean + std * rng.sym(),
                    Init::Data(_) => unreachable!("the stdlib's models read no files"),
                })
                .collect()
        })
        .collect();
    let params = sp
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == ParamSpec::PerNeuron)
        .map(|(k, _)| (0..n).map(|_| c.params[k] * (1.0 + 0.2 * rng.sym())).collect())
        .collect();
    let step = &c.step;
    let in_scale: Vec<f64> = step.layout.inputs.iter().map(|&s| input_scale(&step.model.name, step.model.symbols[s].dim)).collect();
    let base = in_scale.iter().map(|s| (0..n).map(|_| s * (0.3 + 1.2 * rng.next())).collect()).collect();
    Data { states, params, base, in_scale }
}

/// One per-neuron param (the first finite non-zero one: usually a time constant, so the
/// kernel computes its exponentials), the rest uniform.
fn mixed_specs(c: &Case) -> Vec<ParamSpec> {
    let hetero = c.params.iter().position(|v| v.is_finite() && *v != 0.0);
    c.params.iter().enumerate().map(|(k, &v)| if Some(k) == hetero { ParamSpec::PerNeuron } else { ParamSpec::Uniform(v) }).collect()
}

fn rctx(t: usize) -> RandomCtx {
    RandomCtx { seed: 0x1234_5678_9abc_def0, step: t as u64, offset: 5 }
}

/// The buffers of a kernel in argument order, filled from the data.
fn bufs(k: &PtxKernel, states: &[Vec<f64>], inputs: &[Vec<f64>], params: &[Vec<f64>], n: usize) -> Vec<Vec<f64>> {
    k.args
        .iter()
        .map(|a| match a.role {
            Role::State(s) => states[s].clone(),
            Role::Input(j) => inputs[j].clone(),
            Role::Param(p) => params[p].clone(),
            _ => vec![0.0; n],
        })
        .collect()
}

/// Emulates the step kernel of every case against the interpreter kernel.
fn emulate_steps(precision: Precision, tol: f64, steps: usize) {
    let n = 29;
    for c in all_cases() {
        let step = &c.step;
        let mut rng = Lcg(c.name.bytes().fold(0x5eed, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
        let sp = mixed_specs(&c);
        let mut d = data(&c, n, &sp, &mut rng);
        let k = compile_step(step, &sp, precision, Target::Sm80).unwrap();
        let interp = InterpKernel::new(step, &sp).unwrap();
        let spiking = step.spike.is_some();
        let mut scale = vec![0.0f64; d.states.len()];
        let (mut worst, mut spike_diffs) = (0.0f64, 0);
        for t in 0..steps {
            let inputs: Vec<Vec<f64>> = d.base.iter().zip(&d.in_scale).map(|(b, s)| b.iter().map(|x| x + 0.5 * s * rng.sym()).collect()).collect();
            // The kernel's view: data rounded to its precision.
            let round = |v: &Vec<Vec<f64>>| -> Vec<Vec<f64>> {
                v.iter().map(|s| s.iter().map(|&x| if precision == Precision::F32 { f64::from(x as f32) } else { x }).collect()).collect()
            };
            let (st0, in0, pa0) = (round(&d.states), round(&inputs), round(&d.params));
            let mut b = bufs(&k, &st0, &in0, &pa0, n);
            k.emulate(&mut b, t as f64 * DT, rctx(t));
            // The reference from the same (rounded) values.
            let mut refs = st0.clone();
            let mut spikes = vec![0.0; if spiking { n } else { 0 }];
            {
                let mut sl: Vec<&mut [f64]> = refs.iter_mut().map(|s| s.as_mut_slice()).collect();
                let ins: Vec<&[f64]> = in0.iter().map(|s| s.as_slice()).collect();
                let ps: Vec<&[f64]> = pa0.iter().map(|s| s.as_slice()).collect();
                interp.step(StepArgs { states: &mut sl, inputs: &ins, params: &ps, spikes: &mut spikes, t: t as f64 * DT, random: rctx(t) });
            }
            for (ai, a) in k.args.iter().enumerate() {
                match a.role {
                    Role::State(s) => {
                        scale[s] = refs[s].iter().fold(scale[s], |m, x| m.max(x.abs()));
                        for i in 0..n {
                            let (r, e) = (refs[s][i], b[ai][i]);
                            let err = if r == e { 0.0 } else { (r - e).abs() / r.abs().max(e.abs()).max(scale[s]) };
                            worst = worst.max(err);
                            assert!(
                                err <= tol,
                                "{} {precision:?}: state {} of element {i} at step {t}: reference {r:e}, emulated PTX {e:e} (scale {:e})",
                                c.name,
                                step.state_name(s),
                                scale[s]
                            );
                        }
                    }
                    Role::Spike => {
                        for i in 0..n {
                            if spikes[i] != b[ai][i] {
                                spike_diffs += 1;
                                assert!(precision == Precision::F32, "{}: f64 spike of element {i} differs at step {t}", c.name);
                            }
                        }
                    }
                    _ => {}
                }
            }
            d.states = refs;
        }
        // f32: a spike differs only where the new state is within f32 rounding of the threshold.
        assert!(spike_diffs * 100 <= n * steps, "{}: {spike_diffs} spikes differ", c.name);
        eprintln!("{:36} {precision:?} worst {worst:.1e}, spike mismatches {spike_diffs}", c.name);
    }
}

#[test]
fn emulated_step_f64_matches_interpreter() {
    emulate_steps(Precision::F64, 1e-12, 150);
}

#[test]
fn emulated_step_f32_matches_interpreter() {
    emulate_steps(Precision::F32, 1e-5, 150);
}

/// Emulates the derivative kernels against D, Df and ds/dh evaluated by the interpreter.
fn emulate_derivatives(precision: Precision, tol: f64) {
    let n = 17;
    for c in all_cases() {
        let mut rng = Lcg(c.name.len() as u64 + 99);
        let sp = mixed_specs(&c);
        let d = data(&c, n, &sp, &mut rng);
        let k = compile_derivatives(&c.step, &sp, precision, Target::Sm90).unwrap();
        let mut st = c.step.clone();
        let der = st.derivatives();
        let inputs: Vec<Vec<f64>> = d.base.clone();
        let round = |v: &Vec<Vec<f64>>| -> Vec<Vec<f64>> {
            v.iter().map(|s| s.iter().map(|&x| if precision == Precision::F32 { f64::from(x as f32) } else { x }).collect()).collect()
        };
        let (st0, in0, pa0) = (round(&d.states), round(&inputs), round(&d.params));
        let mut b = bufs(&k, &st0, &in0, &pa0, n);
        let t = 3;
        k.emulate(&mut b, t as f64 * DT, rctx(t));
        let mut worst = 0.0f64;
        let mut scale = vec![0.0f64; k.args.len()];
        let mut expected = vec![vec![0.0; n]; k.args.len()];
        for i in 0..n {
            let mut pn = 0;
            let params: Vec<f64> = sp
                .iter()
                .enumerate()
                .map(|(j, s)| match s {
                    ParamSpec::Uniform(_) => c.params[j],
                    ParamSpec::PerNeuron => {
                        pn += 1;
                        pa0[pn - 1][i]
                    }
                })
                .collect();
            let states: Vec<f64> = st0.iter().map(|s| s[i]).collect();
            let ins: Vec<f64> = in0.iter().map(|s| s[i]).collect();
            let slots = st.random_slots as usize;
            let normal: Vec<bool> = (0..slots).map(|s| st.graph.nodes().any(|(_, nd)| matches!(nd.op, ir::Op::Randn(q) if q as usize == s))).collect();
            let random: Vec<f64> = (0..slots).map(|s| random_draw(rctx(t), 5 + i as u64, s as u32, normal[s])).collect();
            let env = Env { params: &params, states: &states, inputs: &ins, random: &random, t: t as f64 * DT, dt: DT, ..Env::default() };
            let next = ir::eval(&st.graph, &st.next, &env).unwrap();
            let dd = ir::eval(&st.graph, &der.d.entries, &env).unwrap();
            let df = ir::eval(&st.graph, &der.df.entries, &env).unwrap();
            let ds = der.dspike.as_ref().map(|j| ir::eval(&st.graph, &j.entries, &Env { states: &next, ..env }).unwrap());
            for (ai, a) in k.args.iter().enumerate() {
                let v = match a.role {
                    Role::D(r, q) => dd[r * st.n_hidden + q],
                    Role::Df(r, q) => df[r * st.layout.inputs.len() + q],
                    Role::Ds(r) => ds.as_ref().unwrap()[r],
                    _ => continue,
                };
                expected[ai][i] = v;
                scale[ai] = scale[ai].max(v.abs());
            }
        }
        for (ai, a) in k.args.iter().enumerate().filter(|(_, a)| a.access == Access::Write) {
            for i in 0..n {
                let (r, e) = (expected[ai][i], b[ai][i]);
                let err = if r == e { 0.0 } else { (r - e).abs() / r.abs().max(e.abs()).max(scale[ai]) };
                worst = worst.max(err);
                assert!(err <= tol, "{} {precision:?}: {} ({}) of element {i}: reference {r:e}, emulated PTX {e:e}", c.name, a.name, a.label);
            }
        }
        eprintln!("{:36} {precision:?} derivatives worst {worst:.1e}", c.name);
    }
}

#[test]
fn emulated_derivatives_f64_match_interpreter() {
    emulate_derivatives(Precision::F64, 1e-12);
}

#[test]
fn emulated_derivatives_f32_match_interpreter() {
    emulate_derivatives(Precision::F32, 1e-4);
}

fn source_step(text: &str) -> Step {
    let mut sources = SourceMap::new();
    let (p, d) = sema::check_source("ptx_test.snn", text, &mut sources);
    assert!(d.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&d, &sources));
    discretise(&p.models[0]).unwrap_or_else(|d| panic!("{}", d.message)).at_dt(DT)
}

/// Euler with tau = dt: x' = x + dt * ((draw - x) / dt), and x = 0: the draw itself
/// up to the roundings of dt * (d / dt), which the interpreter performs identically.
const DRAWS: &str = "neuron Draws {
    param tau: ms = 0.1 ms
    state x = 0.0
    state y = 0.0
    state z = 0.0
    dx/dt = (rand() - x) / tau
    dy/dt = (randn() - y) / tau
    dz/dt = (rand() - z) / tau
    method euler
}";

/// A listing kernel lists exactly the elements whose spike it writes non-zero, and
/// writes what the plain kernel writes.
#[test]
fn listing_step_lists_the_elements_that_spiked() {
    let step = stdlib_step("stdlib/lif.snn", "LIF");
    let c = case("lif".into(), step, &[], &[]);
    let sp = specs(&c, false);
    for precision in [Precision::F32, Precision::F64] {
        let plain = compile_step(&c.step, &sp, precision, Target::Sm80).unwrap();
        let listing = compile_step(&c.step, &sp, precision, Target::Sm80).unwrap().listing();
        assert!(listing.lists && listing.ptx().contains("atom.global.add.u32") && listing.ptx().contains(".param .u64 pop_n"));
        let recording = listing.clone().recording();
        assert!(recording.records && recording.ptx().contains("red.global.or.b32") && recording.ptx().contains(".param .u64 words"));
        assert!(!listing.ptx().contains("red.global.or.b32"));
        let n = 200;
        // v from 0 to 4 (the step subtracts v_th = 1 from a v above it first): the
        // upper half spikes.
        let states = vec![(0..n).map(|i| i as f64 / 50.0).collect::<Vec<f64>>()];
        let inputs = vec![vec![0.5; n]];
        let mut a = bufs(&plain, &states, &inputs, &[], n);
        let mut b = bufs(&listing, &states, &inputs, &[], n);
        plain.emulate(&mut a, 0.0, rctx(0));
        let listed = listing.emulate(&mut b, 0.0, rctx(0)).listed;
        assert_eq!(a, b, "{precision:?}");
        let spike = plain.args.iter().position(|x| x.role == Role::Spike).unwrap();
        let want: Vec<u64> = (0..n as u64).filter(|&i| a[spike][i as usize] != 0.0).collect();
        assert!(!want.is_empty() && want.len() < n, "{precision:?}: some spike, not all");
        assert_eq!(listed, want, "{precision:?}");
    }
    // A kernel without a spike is left as it is.
    let syn = source_step(DRAWS);
    let k = compile_step(&syn, &[ParamSpec::Uniform(1e-4)], Precision::F32, Target::Sm80).unwrap().listing();
    assert!(!k.lists);
}

/// A clocked kernel (step and time from the device's clock) computes what the plain one
/// computes with `step` and `t = step * dt` as arguments: the random draws (keyed by the
/// step) and a drive that reads the time, bit for bit, at steps up to past 2^32.
#[test]
fn clocked_step_equals_the_step_given_its_step_and_time() {
    let step = source_step(&DRAWS.replace("(rand() - z) / tau", "(rand() + sin(t / tau) - z) / tau"));
    let sp = vec![ParamSpec::Uniform(1e-4)];
    let n = 64;
    for precision in [Precision::F64, Precision::F32] {
        let plain = compile_step(&step, &sp, precision, Target::Sm80).unwrap();
        let clocked = compile_step(&step, &sp, precision, Target::Sm80).unwrap().clocked(DT);
        assert!(clocked.clocked && clocked.ptx().contains(".param .u64 clock") && clocked.ptx().contains("[%rd_clock]"));
        assert!(!clocked.ptx().contains("[step]") && !clocked.ptx().contains("[t]"), "reads no step or t argument");
        for s in [0u64, 1, 12345, (1u64 << 32) + 3] {
            let t = s as f64 * DT;
            let ctx = RandomCtx { seed: 9, step: s, offset: 17 };
            let init: Vec<Vec<f64>> = plain.args.iter().map(|_| (0..n).map(|i| i as f64 * 0.01).collect()).collect();
            let (mut a, mut b) = (init.clone(), init);
            plain.emulate(&mut a, t, ctx);
            // The clocked kernel ignores `t`: its clock (the step) gives it.
            clocked.emulate(&mut b, f64::NAN, ctx);
            let same = a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{precision:?} step {s}");
        }
    }
}

/// The emitted Philox4x32-10 and draw transforms against `random_draw`.
#[test]
fn emulated_philox_matches_random_draw() {
    let step = source_step(DRAWS);
    assert_eq!(step.random_slots, 3);
    let sp = vec![ParamSpec::Uniform(1e-4)];
    let n = 300;
    for precision in [Precision::F64, Precision::F32] {
        let k = compile_step(&step, &sp, precision, Target::Sm80).unwrap();
        let interp = InterpKernel::new(&step, &sp).unwrap();
        for (t, seed) in [(0u64, 0u64), (7, 0xDEAD_BEEF_0123_4567), ((1u64 << 32) + 3, u64::MAX)] {
            let ctx = RandomCtx { seed, step: t, offset: (1u64 << 32) - 100 };
            let mut b: Vec<Vec<f64>> = k.args.iter().map(|_| vec![0.0; n]).collect();
            k.emulate(&mut b, 0.0, ctx);
            let mut refs = vec![vec![0.0; n]; 3];
            let mut sl: Vec<&mut [f64]> = refs.iter_mut().map(|s| s.as_mut_slice()).collect();
            interp.step(StepArgs { states: &mut sl, inputs: &[], params: &[], spikes: &mut [], t: 0.0, random: ctx });
            for i in 0..n {
                for s in 0..3 {
                    let (r, e) = (refs[s][i], b[s][i]);
                    match precision {
                        // The uniform draws (x, z) are exact; the normal one within a few ulp.
                        Precision::F64 if s != 1 => assert_eq!(r.to_bits(), e.to_bits(), "slot {s} element {i}: {r} vs {e}"),
                        Precision::F64 => assert!((r - e).abs() <= 1e-15 * r.abs().max(1.0), "normal draw {i}: {r} vs {e}"),
                        Precision::F32 => assert!((r - e).abs() <= 5e-7 * r.abs().max(1.0), "f32 slot {s} element {i}: {r} vs {e}"),
                    }
                }
            }
            // The draws are what `random_draw` gives for index offset + i (sanity of the
            // reference itself, and of the counter layout crossing 2^32).
            let u = random_draw(ctx, ctx.offset + 150, 0, false);
            assert!(u > 0.0 && u <= 1.0);
        }
        let text = k.ptx();
        // Three slots, ten rounds, two multiplications each, hi and lo.
        assert_eq!(text.matches("mul.hi.u32").count(), 60, "{precision:?}");
        assert_eq!(text.matches("mul.lo.u32").count(), 60, "{precision:?}");
        assert!(text.contains(&format!("{}", 0xD251_1F53u32)) && text.contains(&format!("{}", 0xCD9E_8D57u32)));
    }
}

#[test]
fn launch_geometry() {
    assert_eq!(launch_config(0, 256), (1, 256));
    assert_eq!(launch_config(1, 256), (1, 256));
    assert_eq!(launch_config(256, 256), (1, 256));
    assert_eq!(launch_config(257, 256), (2, 256));
    assert_eq!(launch_config(1_000_000, 128), (7813, 128));
    assert_eq!(launch_config(10, 0), (10, 1));
    assert_eq!(launch_config(5000, 4096), (5, 1024));
    let (g, b) = launch_config(u64::from(u32::MAX) * 3, 1024);
    assert!(u64::from(g) * u64::from(b) >= u64::from(u32::MAX) * 3);
}

#[test]
#[should_panic(expected = "gridDim.x")]
fn launch_geometry_too_large() {
    launch_config(u64::MAX, 1);
}

#[test]
fn kernel_interface() {
    let program = load("stdlib/lif.snn");
    let m = program.models.iter().find(|m| m.name == "LIF").unwrap();
    let step = discretise(m).unwrap().at_dt(DT);
    let c = case("lif".into(), step, &[], &[]);
    let sp = mixed_specs(&c);
    let k = compile_step(&c.step, &sp, Precision::F32, Target::Sm80).unwrap();
    assert_eq!(k.entry, STEP_ENTRY);
    let text = k.ptx();
    assert!(text.contains(".version 7.8") && text.contains(".target sm_80") && text.contains(".address_size 64"));
    assert!(text.contains(&format!(".visible .entry {STEP_ENTRY}(")));
    assert_eq!(text.matches("cvta.to.global.u64").count(), k.args.iter().filter(|a| text.contains(&format!("[{}]", a.name))).count());
    assert!(text.contains("setp.ge.u64 %p_out, %rd_i, %rd_n;"));
    let d = compile_derivatives(&c.step, &sp, Precision::F64, Target::Sm90).unwrap();
    assert_eq!(d.entry, DERIV_ENTRY);
    assert!(d.ptx().contains(".target sm_90"));
    let kk = c.step.n_hidden;
    let n_out = d.args.iter().filter(|a| a.access == Access::Write).count();
    assert_eq!(n_out, kk * kk + kk * c.step.layout.inputs.len() + kk);
    // Errors instead of panics.
    assert!(ptx::emit_step(&c.step, &sp[1..], Precision::F32, Target::Sm80).is_err());
    assert!(ptx::emit_step(&c.step.clone().at_dt(0.0), &sp, Precision::F32, Target::Sm80).is_err());
    assert!(ptx::emit_step(&Step { dt: None, ..c.step.clone() }, &sp, Precision::F32, Target::Sm80).is_err());
}

fn stdlib_step(file: &str, model: &str) -> Step {
    let program = load(file);
    let m = program.models.iter().find(|m| m.name == model).unwrap_or_else(|| panic!("{model}"));
    discretise(m).unwrap().at_dt(DT)
}

#[test]
fn snapshot_lif_step_f32_sm80() {
    let step = stdlib_step("stdlib/lif.snn", "LIF");
    let c = case("lif".into(), step, &[], &[]);
    let text = ptx::emit_step(&c.step, &specs(&c, false), Precision::F32, Target::Sm80).unwrap();
    insta::assert_snapshot!(text);
}

/// The step kernel a GPU population runs (issue 16): the non-finite check fused in (the
/// flag parameters, the test of each state written, one predicated `red.global.max`),
/// its input cleared once read (a coherent load, then a store of 0), and the clock
/// parameter (LIF reads neither its step nor the time).
#[test]
fn snapshot_lif_checked_step_f32_sm80() {
    let step = stdlib_step("stdlib/lif.snn", "LIF");
    let c = case("lif".into(), step, &[], &[]);
    let k = compile_checked_step(&c.step, &specs(&c, false), Precision::F32, Target::Sm80).unwrap().consuming(&[true]).clocked(DT);
    insta::assert_snapshot!(k.ptx());
}

/// A checked step writes what the plain one writes and raises the flag word
/// `snnc_nonfinite` would over its states (one allocation, state-major): the first
/// non-finite element by index, with its class; 0 when every state is finite.
#[test]
fn checked_step_raises_the_nonfinite_flag_of_the_first_element() {
    use snnc_compiler::backend::ptx::propagate::decode_flag;
    let step = stdlib_step("stdlib/alif.snn", "ALIF");
    let c = case("alif".into(), step, &[], &[]);
    let sp = specs(&c, false);
    for precision in [Precision::F32, Precision::F64] {
        let plain = compile_step(&c.step, &sp, precision, Target::Sm80).unwrap();
        let checked = compile_checked_step(&c.step, &sp, precision, Target::Sm80).unwrap();
        assert!(checked.checks && !plain.checks);
        assert!(checked.ptx().contains(".param .u64 flag_slot") && checked.ptx().contains("red.global.max.u32"));
        let n = 8;
        let n_states = c.step.layout.states.len();
        assert_eq!(n_states, 2, "ALIF has v and a");
        let mut rng = Lcg(3);
        let d = data(&c, n, &sp, &mut rng);
        // (state, element, value) made non-finite before the step, and the element the
        // flag must name (state-major index k * n + i) with its value.
        let cases: [(&[(usize, usize, f64)], Option<(usize, f64)>); 4] = [
            (&[], None),
            (&[(0, 5, f64::NAN)], Some((5, f64::NAN))),
            (&[(1, 2, f64::INFINITY), (0, 6, f64::NAN)], Some((6, f64::NAN))),
            (&[(1, 1, f64::NEG_INFINITY)], Some((n + 1, f64::NEG_INFINITY))),
        ];
        for (bad, want) in cases {
            let mut states = d.states.clone();
            for &(k, i, v) in bad {
                states[k][i] = v;
            }
            let mut a = bufs(&plain, &states, &d.base, &d.params, n);
            let mut b = bufs(&checked, &states, &d.base, &d.params, n);
            assert_eq!(plain.emulate(&mut a, 0.0, rctx(0)).flag, 0);
            let word = checked.emulate(&mut b, 0.0, rctx(0)).flag;
            let same = a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{precision:?} {bad:?}: the checked step computes something else");
            // Consuming its inputs: the same states and spikes, and the inputs zero.
            let consuming = checked.clone().consuming(&[true]);
            let mut z = bufs(&consuming, &states, &d.base, &d.params, n);
            assert_eq!(consuming.emulate(&mut z, 0.0, rctx(0)).flag, word);
            for (arg, (x, y)) in consuming.args.iter().zip(a.iter().zip(&z)) {
                match arg.role {
                    Role::Input(_) => assert!(y.iter().all(|v| *v == 0.0), "{precision:?}: input {} not cleared", arg.name),
                    _ => assert!(x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()), "{precision:?}: {} differs", arg.name),
                }
            }
            match (decode_flag(word), want) {
                (None, None) => {}
                (Some((e, v)), Some((we, wv))) => {
                    assert_eq!(e, we, "{precision:?} {bad:?}");
                    assert!(v.to_bits() == wv.to_bits() || (v.is_nan() && wv.is_nan()), "{precision:?} {bad:?}: {v}");
                }
                (got, want) => panic!("{precision:?} {bad:?}: flag {got:?}, want {want:?}"),
            }
        }
    }
}

#[test]
fn snapshot_alif_derivatives_f64_sm90() {
    let step = stdlib_step("stdlib/alif.snn", "ALIF");
    let c = case("alif".into(), step, &[], &[]);
    let text = ptx::emit_derivatives(&c.step, &specs(&c, false), Precision::F64, Target::Sm90).unwrap();
    insta::assert_snapshot!(text);
}

/// The BPTT adjoint kernel generated from ALIF's derivatives (K = 2: the four entries of
/// D, Df's one non-zero entry (the input drives v, not the threshold) and ds/dh).
#[test]
fn snapshot_alif_bptt_adjoint_f32_sm80() {
    let step = stdlib_step("stdlib/alif.snn", "ALIF");
    let (ds, dl) = step.with_derivative_outputs().unwrap();
    let adj = snnc_compiler::discretise::trace::adjoint_step(&ds, &dl);
    let text = ptx::emit_step(&adj.step, &[], Precision::F32, Target::Sm80).unwrap();
    insta::assert_snapshot!(text);
}

/// The learning signal carried back through a sparse projection's synapses (one thread
/// per presynaptic neuron and batch element over its CSR row; `acc` adds instead of
/// overwriting), one of the training kernels of the propagation module, as text.
#[test]
fn snapshot_sparse_back_f32_sm80() {
    use snnc_compiler::backend::ptx::propagate::{SPARSE_BACK, emit_propagate};
    let text = emit_propagate(Precision::F32, Target::Sm80);
    let start = text.find(&format!(".visible .entry {SPARSE_BACK}(")).expect("the entry");
    let end = start + text[start..].find("\n}\n").expect("its end") + 3;
    insta::assert_snapshot!(&text[start..end]);
}
