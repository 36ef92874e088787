//! How much memory a network will take, estimated from its checked description before
//! anything is allocated (the compiler's plan included), so that a network too large
//! for the machine is refused with the bytes it needs instead of aborting the process
//! (`memory allocation of N bytes failed`) or overflowing a size computation.
//!
//! Every size is computed in `u64` with saturating arithmetic: an absurd network
//! (`LIF[10000000000]` with a dense projection) gives an absurd estimate, never a
//! wrapped-around small one or an overflow panic.

use crate::network::Options;
use snnc_compiler::pipeline;
use snnc_compiler::sema::{Init, NetworkDef, PopModel, Program, Source, SynInit, Topology};
use snnc_compiler::span::Span;
use std::fmt;

/// One buffer (or group of buffers) of a network, and where the file declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    /// What it is, for messages: "population `E` (4000 neurons, 3 states)".
    pub what: String,
    pub bytes: u64,
    pub span: Span,
}

/// The memory a network will take, part by part.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Estimate {
    pub parts: Vec<Part>,
}

impl Estimate {
    pub fn total(&self) -> u64 {
        self.parts.iter().fold(0u64, |a, p| a.saturating_add(p.bytes))
    }

    /// The part that takes the most (what a refusal points at).
    pub fn largest(&self) -> Option<&Part> {
        self.parts.iter().max_by_key(|p| p.bytes)
    }
}

/// `a * b * ...` in u64, saturating instead of overflowing.
fn mul(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |a, f| a.saturating_mul(*f))
}

/// A size given as `usize` or a count as `f64` (saturating, NaN as 0), as u64.
fn count(x: f64) -> u64 {
    if x.is_nan() { 0 } else { x.max(0.0).min(u64::MAX as f64) as u64 }
}

/// Estimates the memory of `net` built with `opts` in a float type of `float_bytes`
/// bytes (4 for f32, 8 for f64): the compiler's plan (per-neuron params and initial
/// states in f64), the populations' buffers (states and their initial copies, params,
/// inputs, spikes), drives, external inputs, weights (dense, sparse at the expected
/// number of synapses, one-to-one), presynaptic stages and delay rings. With `opts.learning`, the
/// derivative states the learning rules read are counted too.
pub fn estimate(program: &Program, net: &NetworkDef, opts: &Options, float_bytes: u64) -> Estimate {
    let batch = opts.batch.max(1) as u64;
    let fb = float_bytes;
    let mut parts = Vec::new();
    for (pi, pop) in net.populations.iter().enumerate() {
        let n = pop.size as u64;
        let PopModel::Model(id) = pop.model else {
            parts.push(Part { what: format!("readout `{}` ({n} outputs)", pop.name), bytes: mul(&[batch, n, fb]), span: pop.span });
            continue;
        };
        let m = &program.models[id];
        let (mut states, mut params) = (m.states().count() as u64 + u64::from(m.refractory.is_some()), m.params().count() as u64);
        let inputs = m.inputs().count() as u64;
        // Synapses are merged into their target: their states and params become the
        // population's (one set per projection, an upper bound).
        for pr in net.projections.iter().filter(|pr| pr.to == pi) {
            if let Some((sid, _)) = &pr.synapse {
                states += program.models[*sid].states().count() as u64;
                params += program.models[*sid].params().count() as u64;
            }
        }
        let mut kernel_states = states;
        if opts.learning {
            // D (K x K), Df (K x inputs), ds/dh (K), dh/dtheta (K x trainable params).
            let trainable = m.params().filter(|(_, s)| s.trainable).count() as u64;
            kernel_states = states.saturating_add(mul(&[states, states.saturating_add(inputs).saturating_add(1).saturating_add(trainable)]));
        }
        let plan = mul(&[n, states.saturating_add(params), 8]);
        // States and their initial copy, params, inputs, spikes; and 4 bytes per neuron
        // for the list of those that spiked (all of them at worst).
        let per_neuron = mul(&[2, kernel_states]).saturating_add(params).saturating_add(inputs).saturating_add(1);
        let buffers = mul(&[batch, n, per_neuron, fb]).saturating_add(mul(&[batch, n, 4]));
        parts.push(Part {
            what: format!("population `{}` ({n} neurons x {kernel_states} state{})", pop.name, if kernel_states == 1 { "" } else { "s" }),
            bytes: plan.saturating_add(buffers),
            span: pop.span,
        });
    }
    for d in &net.drives {
        let n = net.populations[d.pop].size as u64;
        parts.push(Part { what: format!("drive of `{}`", net.populations[d.pop].name), bytes: mul(&[batch, n, fb]), span: d.span });
    }
    for i in &net.inputs {
        // The values of a step and the list of its non-zero entries.
        parts.push(Part { what: format!("input `{}` ({} values per step)", i.name, i.size), bytes: mul(&[batch, i.size as u64, fb + 4]), span: i.span });
    }
    let dt = pipeline::resolve_dt(opts.dt, Some(net));
    for pr in &net.projections {
        let n_pre = match pr.from {
            Source::Input(i) => net.inputs[i].size,
            Source::Pop(p) => net.populations[p].size,
        } as u64;
        let n_post = net.populations[pr.to].size as u64;
        let (what, bytes) = match &pr.topology {
            // With a delay per synapse, every pair is stored sparse (column and weight).
            Topology::Dense if pr.delay.as_ref().is_some_and(|d| d.constant().is_none()) => {
                (format!("weights of `{}` ({n_pre} x {n_post} pairs, sparse for their delays)", pr.name), mul(&[n_pre, n_post, 12 + fb]))
            }
            Topology::Dense => (format!("dense weights of `{}` ({n_pre} x {n_post})", pr.name), mul(&[n_pre, n_post, fb])),
            Topology::Sparse { p } => {
                // The structure is drawn with f64 weights (12 bytes a synapse, at the
                // 5 % over the expected count it reserves), then converted.
                let expected = p * n_pre as f64 * n_post as f64;
                let reserved = count(expected * 1.05).saturating_add(16);
                let bytes = mul(&[reserved, 12 + fb]).saturating_add(mul(&[n_pre.saturating_add(1), 8]));
                (format!("sparse weights of `{}` (about {:.3e} synapses)", pr.name, expected), bytes)
            }
            Topology::SparseExpr { p } => {
                // The density from a grid of pairs; at most every pair where the
                // probability reads the neurons' params. Built in blocks of rows (the
                // columns twice at the peak) with f64 weights, then converted.
                let density = crate::connectivity::sampled_mean_probability(p, n_pre as usize, n_post as usize).unwrap_or(1.0);
                let expected = count(density * 1.1 * n_pre as f64 * n_post as f64);
                let bytes = mul(&[expected, 16 + fb]).saturating_add(mul(&[n_pre.saturating_add(1), 8]));
                (format!("sparse weights of `{}` (about {expected:.3e} synapses)", pr.name), bytes)
            }
            Topology::OneToOne => (format!("weights of `{}` ({n_pre} one-to-one)", pr.name), mul(&[n_pre, 8 + fb])),
            Topology::File { path } => match file_bytes(std::path::Path::new(path), n_pre, fb) {
                Some((nnz, bytes)) => (format!("weights of `{}` ({nnz} synapses from `{path}`)", pr.name), bytes),
                // An unreadable file is refused by the build, naming what is wrong.
                None => continue,
            },
            Topology::Procedural { .. } => continue,
            Topology::Conv(s) => {
                // At most a full window per output neuron (padding only removes some),
                // a kernel entry and a structure copy for the gradient per synapse.
                let nnz = n_post.saturating_mul(crate::conv::fan_in(s) as u64);
                let bytes = mul(&[nnz, 16 + fb]).saturating_add(mul(&[n_pre.saturating_add(1), 8]));
                (format!("weights of `{}` ({nnz} synapses at most, a shared kernel)", pr.name), bytes)
            }
        };
        let weight_bytes = bytes;
        parts.push(Part { what, bytes, span: pr.span });
        if let Some(r) = pr.adapter {
            // U and V, and a step's x U (B x R).
            let r = r as u64;
            parts.push(Part {
                what: format!("adapter of `{}` (rank {r})", pr.name),
                bytes: mul(&[n_pre.saturating_add(n_post).saturating_add(batch), r, fb]),
                span: pr.span,
            });
        }
        if let Some((sid, _)) = &pr.synapse {
            // A presynaptic stage (short-term plasticity): its states and efficacy per
            // source neuron, with their initial copies and plan, its input and the
            // scaled activity.
            let syn = &program.models[*sid];
            let k = snnc_compiler::net::presynaptic_states(syn).len() as u64;
            if k > 0 {
                let per_source = mul(&[2, k + 1]).saturating_add(2);
                let plan = mul(&[n_pre, (k + 1).saturating_add(syn.params().count() as u64), 8]);
                parts.push(Part {
                    what: format!("presynaptic state of `{}` ({n_pre} sources x {} states)", pr.name, k + 1),
                    bytes: mul(&[batch, n_pre, per_source, fb]).saturating_add(plan),
                    span: pr.span,
                });
            }
        }
        // A plastic projection (STDP): its source's spikes in flight (delay + 1 steps)
        // and, for stored sparse weights, each target's list of synapses (16 bytes a
        // synapse, counted from the weights' bytes).
        if let Some((sid, _)) = &pr.synapse
            && snnc_compiler::net::is_plastic(&program.models[*sid])
        {
            let steps = match &pr.delay {
                Some(SynInit::Draw(Init::Const(d))) => count(d / dt).saturating_add(2),
                _ => 2,
            };
            let columns = match pr.topology {
                Topology::Dense | Topology::OneToOne => 0,
                _ => (weight_bytes / (12 + fb)).saturating_mul(16),
            };
            parts.push(Part { what: format!("plasticity of `{}` (spikes in flight, synapses by target)", pr.name), bytes: mul(&[steps, n_pre, fb]).saturating_add(columns), span: pr.span });
        }
        // A delay per synapse: 4 bytes each (the structure counted above), and a ring as
        // long as the longest delay where the text bounds it.
        let delay = match &pr.delay {
            Some(SynInit::Draw(Init::Const(d))) => Some(*d),
            Some(SynInit::Draw(Init::Uniform { high, .. })) => {
                let nnz = match &pr.topology {
                    Topology::Sparse { p } => count(p * n_pre as f64 * n_post as f64),
                    Topology::OneToOne => n_pre,
                    _ => mul(&[n_pre, n_post]),
                };
                parts.push(Part { what: format!("delays of `{}` (one a synapse)", pr.name), bytes: mul(&[nnz, 4]), span: pr.span });
                Some(*high)
            }
            _ => None,
        };
        if let Some(delay) = delay {
            // A ring of delay + 1 slots of (batch, n_post), each its own array (about 96
            // bytes of bookkeeping and allocator overhead apiece, which a long ring of
            // small slots is mostly made of).
            let slots = count((delay / dt).round()).saturating_add(1);
            parts.push(Part {
                what: format!("delay ring of `{}` ({slots} slots x {n_post} neurons)", pr.name),
                bytes: mul(&[slots, mul(&[batch, n_post, fb]).saturating_add(96)]),
                span: pr.span,
            });
        }
    }
    Estimate { parts }
}

/// The synapses of a connectivity file and the bytes loading it takes at its peak, from
/// its headers: the indices as read (u32 pre and post), the order they are sorted by (8
/// bytes), the columns, the file's weights and delays (f64, read and reordered), the
/// per-synapse delays in steps and the weights in the run's type; `None` if the file
/// cannot be read (the build says why).
fn file_bytes(path: &std::path::Path, n_pre: u64, fb: u64) -> Option<(u64, u64)> {
    let nnz = crate::data::count_synapses(path).ok()? as u64;
    let f = crate::data::DataFile::open(path).ok()?;
    let per = 4 + 4 + 8 + 4 + fb + if f.has("weight") { 16 } else { 8 } + if f.has("delay") { 16 + 4 } else { 0 };
    Some((nnz, mul(&[nnz, per]).saturating_add(mul(&[n_pre.saturating_add(1), 8]))))
}

/// Bytes as a person reads them: `80.0 GB`, `512 kB`, `17 B` (powers of 1000).
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if b < 1000 {
        return format!("{b} B");
    }
    let mut v = b as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    if b == u64::MAX { "more than 18 EB".into() } else { format!("{v:.1} {unit}") }
}

/// Memory the process may still take: the least of `SNNC_MEMORY_LIMIT` (bytes, or with
/// a suffix `kB`, `MB`, `GB`, `TB`) if it is set, the kernel's `MemAvailable`, and the
/// room left under the process's own limits (`ulimit -v` / `-d`: what it may map beyond
/// what it has; Linux). `None` where none is known.
pub fn available() -> Option<u64> {
    let limit = std::env::var("SNNC_MEMORY_LIMIT").ok().and_then(|s| parse_bytes(&s));
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| mem_available(&t));
    let rlimit = match (std::fs::read_to_string("/proc/self/limits"), std::fs::read_to_string("/proc/self/status")) {
        (Ok(limits), Ok(status)) => rlimit_room(&limits, &status),
        _ => None,
    };
    [limit, meminfo, rlimit].into_iter().flatten().min()
}

/// Room under the address-space and data-segment limits of `/proc/self/limits` (soft
/// values), less what `/proc/self/status` says is mapped (`VmSize`, `VmData`).
fn rlimit_room(limits: &str, status: &str) -> Option<u64> {
    let soft = |name: &str| -> Option<u64> {
        let rest = limits.lines().find(|l| l.starts_with(name))?[name.len()..].trim_start();
        rest.split_whitespace().next()?.parse().ok()
    };
    let used = |key: &str| -> u64 {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).map_or(0, |kb| kb.saturating_mul(1024))
    };
    let room = |limit: Option<u64>, key: &str| limit.map(|l| l.saturating_sub(used(key)));
    [room(soft("Max address space"), "VmSize:"), room(soft("Max data size"), "VmData:")].into_iter().flatten().min()
}

/// `MemAvailable:   123456 kB` of `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// `1000000`, `512MB`, `8 GB` → bytes (powers of 1000, as [`format_bytes`] prints).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let v: f64 = s[..split].trim().parse().ok()?;
    let scale = match s[split..].trim() {
        "" | "B" => 1.0,
        "kB" | "KB" | "k" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "TB" | "T" => 1e12,
        _ => return None,
    };
    (v >= 0.0 && v.is_finite()).then(|| count(v * scale))
}

/// Where nothing says how much memory is free, a network over this is refused anyway:
/// no machine has 128 TiB, and sizes this large are typos (`LIF[1e13]`).
const UNKNOWN_LIMIT: u64 = 1 << 47;

/// A network that does not fit: what it needs, what there is, and its largest part.
#[derive(Clone, Debug, PartialEq)]
pub struct TooLarge {
    pub network: String,
    pub needed: u64,
    pub available: Option<u64>,
    pub largest: Part,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "network `{}` needs about {} of memory ({} bytes), ", self.network, format_bytes(self.needed), self.needed)?;
        match self.available {
            Some(a) => write!(f, "{} is available", format_bytes(a))?,
            None => write!(f, "over the limit of {} for a machine whose free memory is unknown", format_bytes(UNKNOWN_LIMIT))?,
        }
        write!(f, "; the largest part is the {}: {}", self.largest.what, format_bytes(self.largest.bytes))
    }
}

impl std::error::Error for TooLarge {}

/// Estimates `net` ([`estimate`]) and refuses it if it needs more than [`available`].
pub fn check(program: &Program, net: &NetworkDef, opts: &Options, float_bytes: u64) -> Result<Estimate, TooLarge> {
    check_within(program, net, opts, float_bytes, available())
}

/// [`check`] against `available` bytes (`None`: unknown).
pub fn check_within(program: &Program, net: &NetworkDef, opts: &Options, float_bytes: u64, available: Option<u64>) -> Result<Estimate, TooLarge> {
    let est = estimate(program, net, opts, float_bytes);
    let needed = est.total();
    if needed > available.unwrap_or(UNKNOWN_LIMIT) {
        let largest = est.largest().cloned().unwrap_or(Part { what: "network".into(), bytes: needed, span: net.span });
        return Err(TooLarge { network: net.name.clone(), needed, available, largest });
    }
    Ok(est)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_print_and_parse() {
        assert_eq!(format_bytes(17), "17 B");
        assert_eq!(format_bytes(80_000_000_000), "80.0 GB");
        assert_eq!(format_bytes(3_355_443_200), "3.4 GB");
        assert_eq!(format_bytes(u64::MAX), "more than 18 EB");
        assert_eq!(parse_bytes("512MB"), Some(512_000_000));
        assert_eq!(parse_bytes("8 GB"), Some(8_000_000_000));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1GB"), None);
    }

    #[test]
    fn process_limits_leave_room_for_what_is_mapped() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max data size             unlimited            unlimited            bytes\n\
                      Max address space         4294967296           unlimited            bytes\n";
        let status = "VmSize:\t  1048576 kB\nVmData:\t  2048 kB\n";
        assert_eq!(rlimit_room(limits, status), Some(4294967296 - 1048576 * 1024));
        let unlimited = limits.replace("4294967296", "unlimited");
        assert_eq!(rlimit_room(&unlimited, status), None);
    }

    #[test]
    fn mem_available_is_read_from_meminfo() {
        let text = "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available(text), Some(20_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn sizes_saturate_instead_of_overflowing() {
        assert_eq!(mul(&[u64::MAX, 2]), u64::MAX);
        assert_eq!(mul(&[10_000_000_000, 10_000_000_000, 4]), u64::MAX);
        assert_eq!(count(f64::INFINITY), u64::MAX);
        assert_eq!(count(f64::NAN), 0);
    }
}
