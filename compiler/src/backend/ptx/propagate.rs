//! The model-independent kernels of a GPU network step, as PTX: compacting a spike
//! vector into a list of spiking neurons, event-driven sparse propagation over CSR rows,
//! one-to-one projections, accumulation (drives, delay rings) and the non-finite check.
//! Dense projections go to cuBLAS and are not here.
//!
//! One module per (precision, target) holds every entry ([`ENTRIES`]). Kernels that
//! work per batch element take it from `blockIdx.y` (at most 65535, the `gridDim.y`
//! limit). Spike lists and CSR indices are `u32` (the runtime refuses larger networks).
//!
//! These kernels index memory indirectly, loop and use atomics, which the step kernels'
//! emulator does not model; [`super::text_emu`] runs their PTX text on the CPU instead.
//!
//! Summation order: `red.add` makes the order in which spikes arriving at one neuron in
//! one step are added nondeterministic (the CPU adds them in presynaptic order), so GPU
//! and CPU inputs can differ in the last bit when two or more spikes of one projection
//! reach a neuron in the same step.

use super::{PTX_VERSION, Precision, Target};
use std::fmt::Write as _;

/// `snnc_nonzero_list(x, list, counts, totals, slot, n)`, grid (ceil(n / block), batch):
/// for every element `i` of batch `b` with `x[b*n + i] != 0` (NaN included, as on the
/// CPU), `list[b*n + atomicAdd(counts[slot*batch + b], 1)] = i` and
/// `totals[slot*batch + b] += 1` (the spike count of a window of steps, read once per
/// window). The count must be 0 before (see [`CLEAR_U32`]); list order is unspecified.
pub const NONZERO_LIST: &str = "snnc_nonzero_list";
/// `snnc_sparse_events(row_ptr, col, w, list, counts, slot, x, y, n_pre, n_post)`,
/// grid (g, batch) with `block` a multiple of 32: one warp per listed presynaptic
/// neuron `i` (grid-stride over the list), its lanes striding over the CSR row:
/// `y[b*n_post + col[j]] += w[j] * x[b*n_pre + i]` with `red.global.add`.
pub const SPARSE_EVENTS: &str = "snnc_sparse_events";
/// `snnc_sparse_events2(row_ptr0, col0, w0, list0, slot0, x0, y0, n_pre0, row_ptr1, col1,
/// w1, list1, slot1, x1, y1, n_pre1, counts, n_post, batch)`, grid (g, 2 * batch):
/// [`SPARSE_EVENTS`] of two projections into one population in one launch, rows
/// `q * batch + b` of the grid doing projection q's batch element b (so that a
/// population's deliveries take one launch per pair instead of one each).
pub const SPARSE_EVENTS2: &str = "snnc_sparse_events2";
/// `snnc_one_to_one(w, x, y, n)`, grid (ceil(n / block), batch):
/// `y[b*n + i] += w[i] * x[b*n + i]` (multiply, then add: no contraction).
pub const ONE_TO_ONE: &str = "snnc_one_to_one";
/// `snnc_add(src, dst, len)`: `dst[e] += src[e]`.
pub const ADD: &str = "snnc_add";
/// `snnc_add_clear(src, dst, len)`: `dst[e] += src[e]; src[e] = 0` (a delay slot arrives).
pub const ADD_CLEAR: &str = "snnc_add_clear";
/// `snnc_nonfinite(x, len, flags, slot)`: if any `x[e]` is NaN or infinite, `flags[slot]`
/// ends as `(FLAG_INDEX_MAX - e) << 2 | class` of the first such `e` (atomic max: the
/// smallest index wins), class 1 for NaN, 2 for +inf, 3 for -inf; 0 means all finite.
/// `len` must not exceed [`FLAG_INDEX_MAX`] + 1. Decode with [`decode_flag`].
pub const NONFINITE: &str = "snnc_nonfinite";
/// The largest element index a non-finite flag can name (30 bits).
pub const FLAG_INDEX_MAX: u32 = (1 << 30) - 1;

/// A [`NONFINITE`] flag word: the first non-finite element and its value, or `None`.
pub fn decode_flag(w: u32) -> Option<(usize, f64)> {
    let value = match w & 3 {
        0 => return None,
        1 => f64::NAN,
        2 => f64::INFINITY,
        _ => f64::NEG_INFINITY,
    };
    Some(((FLAG_INDEX_MAX - (w >> 2)) as usize, value))
}

/// `snnc_clear_u32(buf, offset, len)`: `buf[offset + e] = 0` (u32).
pub const CLEAR_U32: &str = "snnc_clear_u32";

/// `snnc_tick(clock)`, one thread: `clock[0] += 1` (f64, exact below 2^53): the step
/// index on the device, which [`PtxKernel::clocked`](super::PtxKernel::clocked) kernels
/// read instead of a `step` and `t` argument, so that one recorded window of steps can
/// be replayed at any later step.
pub const TICK: &str = "snnc_tick";

/// `snnc_copy(src, dst, len)`: `dst[e] = src[e]`.
pub const COPY: &str = "snnc_copy";
/// `snnc_copy_at(src, dst, offset, len)`: `dst[offset + e] = src[e]` (into a plane of a
/// packed buffer).
pub const COPY_AT: &str = "snnc_copy_at";

// The element-wise kernels of a GPU training step (ES-D-RTRL); the GEMMs go to cuBLAS
// and the per-neuron traces are generated from the model (`discretise::trace`).

/// `snnc_mul_add(a, b, c, out, len)`: `out[e] = a[e] * b[e] + c[e]` (multiply, then add,
/// as the CPU: no contraction). The learning signal l = dL/ds * ds/dh + dL/dh.
pub const MUL_ADD: &str = "snnc_mul_add";
/// `snnc_mul_acc(a, b, out, len)`: `out[e] += a[e] * b[e]`.
pub const MUL_ACC: &str = "snnc_mul_acc";
/// `snnc_scale_add(y, x, len, alpha)`: `y[e] = alpha * y[e] + x[e]`, `alpha` the bits of
/// a value of the module's float type in the low bits of the u64 (a presynaptic trace).
pub const SCALE_ADD: &str = "snnc_scale_add";
/// `snnc_scale_add_store(y, x, out, len, alpha, beta)`: `y[e] = alpha * y[e] + x[e]` as
/// [`SCALE_ADD`], and `out[e] = beta * y[e]` (the new value; both floats as bits): an
/// ES-D-RTRL presynaptic trace, and its copy scaled by the step's bias correction into
/// the slot of a window whose gradient is one GEMM.
pub const SCALE_ADD_STORE: &str = "snnc_scale_add_store";
/// `snnc_scale_add_store2(y1, x1, out1, len1, y2, x2, out2, len2, alpha, beta)`:
/// [`SCALE_ADD_STORE`] of two arrays in one launch (grid over `len1 + len2`: element `e`
/// of the first, then `e - len1` of the second), with the same `alpha` and `beta`: the
/// eps_x updates of two ES-D-RTRL projections (into the same population or not) of one
/// step.
pub const SCALE_ADD_STORE2: &str = "snnc_scale_add_store2";
/// `snnc_exact_trace(tr_in, tr_out, d, f, x, l, g, batch, n_pre, n_out, k)`, one thread
/// per weight `e = i * n_out + o` (grid over `n_pre * n_out`): the exact (D-RTRL) trace
/// of a weight into a population with `k` hidden states and its gradient, over the batch
/// in order. With P = batch * n_out (one plane), `d` holds D[a][c] in plane a*k + c, `f`
/// the driving column Df[a][input] in plane a, `l` the learning signal in plane a:
/// `tr_out[b,i,o,a] = sum_c d[a,c][b,o] tr_in[b,i,o,c] + x[b,i] f[a][b,o]` and
/// `g[i,o] += sum_b sum_a l[a][b,o] tr_out[b,i,o,a]`. `tr_in` and `tr_out` may be the
/// same buffer when `k` = 1 (each thread reads its element before writing it). No
/// atomics: each thread owns its weight, so the sum is deterministic.
pub const EXACT_TRACE: &str = "snnc_exact_trace";
/// `snnc_sparse_exact_trace(tr_in, tr_out, d, f, x, l, g, batch, n_pre, n_out, k, row,
/// col, nnz)`: [`EXACT_TRACE`] for the `nnz` synapses of a sparse projection (one thread
/// per synapse `e`, grid over `nnz`), synapse `e` joining presynaptic `i = row[e]` to
/// `o = col[e]` (u32 each; `row` the CSR row of each synapse): the trace is B x nnz x K
/// (`tr[b,e,a]`) and `g[e] += sum_b sum_a l[a][b,o] tr_out[b,e,a]`, in the same order.
pub const SPARSE_EXACT_TRACE: &str = "snnc_sparse_exact_trace";
/// `snnc_sparse_outer(row, col, x, c, g, nnz, batch, n_pre, n_post)`, one thread per
/// synapse `e < nnz` of a sparse projection (`row[e]`, `col[e]`: its presynaptic and
/// postsynaptic neuron, u32): `g[e] += sum_b x[b*n_pre + row[e]] * c[b*n_post + col[e]]`,
/// added into `g[e]` product after product in batch order (each a multiply then an add,
/// as the CPU's row additions). The gradient `x^T c` read at the synapses only; `batch`
/// may be any number of rows (ES-D-RTRL: steps x batch of a contraction window). No
/// atomics: each thread owns its synapse.
pub const SPARSE_OUTER: &str = "snnc_sparse_outer";
/// `snnc_sparse_back(row_ptr, col, w, mu, out, n_pre, n_post, acc)`, grid
/// (ceil(n_pre / block), batch): the learning signal carried back through a sparse
/// projection, `s = sum_{j in row i} w[j] * mu[b*n_post + col[j]]` over the CSR row in
/// order (from zero, as the CPU), then `out[b*n_pre + i] = s`, or with `acc` non-zero
/// `out[b*n_pre + i] += s`. One thread per (presynaptic neuron, batch element), no
/// atomics; rows without synapses write 0 (or add nothing).
pub const SPARSE_BACK: &str = "snnc_sparse_back";

/// `snnc_random_spikes(x, target, mask, key, t0, steps, batch, inputs, outputs, p)`:
/// a window of `steps` steps (from step `t0`) of the `RandomSpikes` task drawn on the
/// device, bit for bit the host's (`snnc_runtime::train::tasks::RandomSpikes`, with the
/// same Philox4x32-10 as `snnc_compiler::rng`, keyed by the 64-bit `key`): with
/// `m = batch * inputs`, element e of step s is `x[s*m + e] = u01(w) <= p ? 1 : 0` (the
/// module's float type; `w` word e % 4 of the block of counter [t lo, t hi, 6, e / 4],
/// t = t0 + s; `p` the bits of an f64), `target[s*batch*outputs + k] = (1 - u01(w)) - 0.5`
/// (f64; `w` word 0 of counter [t lo, t hi, 7, k]) and `mask[s*batch + b] = 1` (f64).
/// One thread per Philox block of inputs, then per target, then per mask entry (grid
/// over the three).
pub const RANDOM_SPIKES: &str = "snnc_random_spikes";
/// `snnc_dms(x, target, mask, rates, labels, key, base, t0, steps, batch, inputs, dt,
/// background, s0, s1, u0, u1)`: a window of a delayed match-to-sample batch drawn on
/// the device, bit for bit the host's (`snnc_runtime::train::tasks::Dms`): with time
/// `t dt` (t = t0 + s, f64), input i of trial b spikes when `u01(w) <= rate * dt`, `w`
/// word 0 of the Philox block of counter [c lo, c hi, 2, 0] keyed by `key`, `c = base ^
/// (t << 20) ^ (b * inputs + i)`, the rate `rates[(2b) * inputs + i]` while `s0 <= t dt
/// < s1`, else `rates[(2b + 1) * inputs + i]` from `u0` on, else `background` (f64s as
/// bits); `target[s, b, c] = labels[b] == c` (two classes, f64), `mask[s, b] = u0 <= t dt
/// < u1`. One thread per input, then per target, then per mask entry of each step.
pub const DMS: &str = "snnc_dms";

/// `snnc_loss_mse(y, target, mask, err, loss, evidence, batch, o)`, one thread per batch
/// element `b`: the masked squared error of the readout output `y` (B x O, the module's
/// float type) against `target` (B x O, f64), as the CPU's `Loss::Mse` computes it, in
/// f64 and in the same order: with `m = mask[b]` (f64) non-zero,
/// `err[b,j] = m * 2 (y - target)` (rounded to the float type),
/// `evidence[b,j] += m * y` and `loss[b] += m * sum_j (y - target)^2` (both f64, summed
/// over the steps of a sequence on the device); with `m` = 0, `err[b,:] = 0` only.
pub const LOSS_MSE: &str = "snnc_loss_mse";
/// `snnc_loss_ce(y, target, mask, err, loss, evidence, batch, o)`, as [`LOSS_MSE`] for the
/// CPU's `Loss::CrossEntropy`: with `m = mask[b]` non-zero, the stable log-softmax of the
/// row (`mx = max_j y`, `lz = log sum_j exp(y - mx)`, `logp = y - mx - lz`),
/// `loss[b] += m * sum_j -target * logp`, `err[b,j] = m (exp(logp) - target)`,
/// `evidence[b,j] += m * y`; all in f64 with the step kernels' f64 `exp` and `log`
/// (within 1 ulp of the CPU's).
pub const LOSS_CE: &str = "snnc_loss_ce";

// The kernels of presynaptic stages (short-term plasticity) and plastic synapses
// (STDP): the stages' and the weight rules' own dynamics are step kernels generated from
// their models (`compiler/src/net/{presyn,plastic}.rs`); these move values between them.

/// `snnc_mul(a, b, out, len)`: `out[e] = a[e] * b[e]` (a source's spikes scaled by its
/// presynaptic efficacy).
pub const MUL: &str = "snnc_mul";
/// `snnc_not_spike(x, len, flags, slot)`: if any `x[e]` is neither 0 nor 1 (NaN
/// included), `flags[slot]` ends as `(FLAG_INDEX_MAX - e) << 2 | 1` of the first such
/// `e` (atomic max), as [`NONFINITE`]: what a presynaptic stage or a plastic projection
/// refuses to read (they run at spikes). Decode the index with [`decode_flag`].
pub const NOT_SPIKE: &str = "snnc_not_spike";
/// `snnc_gather(src, idx, dst, n)`: `dst[e] = src[idx[e]]` (`idx` u32): a weight rule's
/// per-synapse copy of a weight, a presynaptic trace or a postsynaptic value.
pub const GATHER: &str = "snnc_gather";
/// `snnc_scatter_events(new, w, w_idx, mask, mask_idx, n, flags, slot)`: for every `e`
/// with `mask[mask_idx[e]] != 0` (the synapse's source, or target, had an event),
/// `w[w_idx[e]] = new[e]`; if such a `new[e]` is NaN or infinite, `flags[slot]` ends as
/// [`NONFINITE`]'s word of the first such `e`. Synapses without the event keep `w`.
pub const SCATTER_EVENTS: &str = "snnc_scatter_events";

/// Every entry of the module, in the order they are emitted.
pub const ENTRIES: [&str; 28] = [
    NONZERO_LIST,
    SPARSE_EVENTS,
    SPARSE_EVENTS2,
    ONE_TO_ONE,
    ADD,
    ADD_CLEAR,
    NONFINITE,
    CLEAR_U32,
    COPY,
    COPY_AT,
    MUL_ADD,
    MUL_ACC,
    SCALE_ADD,
    SCALE_ADD_STORE,
    SCALE_ADD_STORE2,
    EXACT_TRACE,
    SPARSE_EXACT_TRACE,
    SPARSE_OUTER,
    SPARSE_BACK,
    LOSS_MSE,
    LOSS_CE,
    RANDOM_SPIKES,
    DMS,
    MUL,
    NOT_SPIKE,
    GATHER,
    SCATTER_EVENTS,
    TICK,
];

/// Threads per block of the element-wise kernels.
pub const BLOCK: u32 = 256;
/// Threads per block of [`SPARSE_EVENTS`] (8 warps).
pub const SPARSE_BLOCK: u32 = 256;
/// At most this many blocks for [`SPARSE_EVENTS`]: the warps stride over the spike list,
/// so the grid need not grow with the population (a few blocks per SM of an H100).
pub const SPARSE_MAX_BLOCKS: u32 = 1024;

/// Blocks of [`SPARSE_EVENTS`] for `n_pre` presynaptic neurons: one warp per neuron up
/// to [`SPARSE_MAX_BLOCKS`] (only spiking neurons do work; the rest exit at once).
pub fn sparse_grid(n_pre: u64) -> u32 {
    let warps_per_block = u64::from(SPARSE_BLOCK / 32);
    n_pre.div_ceil(warps_per_block).clamp(1, u64::from(SPARSE_MAX_BLOCKS)) as u32
}

/// The PTX module with every entry of [`ENTRIES`].
pub fn emit_propagate(precision: Precision, target: Target) -> String {
    let f = Fmt::new(precision);
    let mut o = String::new();
    let _ = writeln!(o, "// snnc propagation kernels ({precision:?}); entries: {}", ENTRIES.join(", "));
    let _ = writeln!(o, "\n.version {PTX_VERSION}\n.target {}\n.address_size 64", target.name());
    nonzero_list(&mut o, &f);
    sparse_events(&mut o, &f, false);
    sparse_events(&mut o, &f, true);
    one_to_one(&mut o, &f);
    add(&mut o, &f, false);
    add(&mut o, &f, true);
    nonfinite(&mut o, &f);
    clear_u32(&mut o);
    copy(&mut o, &f, false);
    copy(&mut o, &f, true);
    mul_add(&mut o, &f, false);
    mul_add(&mut o, &f, true);
    scale_add(&mut o, &f);
    scale_add_store(&mut o, &f, false);
    scale_add_store(&mut o, &f, true);
    exact_trace(&mut o, &f, false);
    exact_trace(&mut o, &f, true);
    sparse_outer(&mut o, &f);
    sparse_back(&mut o, &f);
    loss_mse(&mut o, &f);
    loss_ce(&mut o, &f);
    random_spikes(&mut o, &f);
    dms(&mut o, &f);
    mul(&mut o, &f);
    not_spike(&mut o, &f);
    gather(&mut o, &f);
    scatter_events(&mut o, &f);
    tick(&mut o);
    o
}

fn tick(o: &mut String) {
    params(o, TICK, &["clock"]);
    o.push_str("\t.reg .b64 %rd<2>;\n\t.reg .f64 %fd<2>;\n");
    pointer(o, "rd1", "clock");
    o.push_str("\tld.global.f64 %fd1, [%rd1];\n\tadd.rn.f64 %fd1, %fd1, 0d3FF0000000000000;\n\tst.global.f64 [%rd1], %fd1;\n\tret;\n}\n");
}

struct Fmt {
    /// `f32` / `f64`.
    t: &'static str,
    /// Rounding modifier of add/mul: f32 flushes subnormals like the step kernels.
    rn: &'static str,
    /// log2 of the element size.
    sh: u32,
    zero: &'static str,
}

impl Fmt {
    fn new(p: Precision) -> Fmt {
        match p {
            Precision::F32 => Fmt { t: "f32", rn: "rn.ftz", sh: 2, zero: "0f00000000" },
            Precision::F64 => Fmt { t: "f64", rn: "rn", sh: 3, zero: "0d0000000000000000" },
        }
    }
}

fn params(o: &mut String, entry: &str, names: &[&str]) {
    let p: Vec<String> = names.iter().map(|n| format!("\t.param .u64 {n}")).collect();
    let _ = writeln!(o, "\n.visible .entry {entry}(\n{}\n)\n{{", p.join(",\n"));
}

/// `%rd_i` = blockIdx.x * blockDim.x + threadIdx.x (64-bit), and the `i < bound` guard.
fn index_guard(o: &mut String, bound: &str) {
    global_index(o);
    let _ = writeln!(o, "\tld.param.u64 %rd_n, [{bound}];\n\tsetp.ge.u64 %p1, %rd_i, %rd_n;\n\t@%p1 bra $L_end;");
}

/// `%rd_i` = blockIdx.x * blockDim.x + threadIdx.x (64-bit).
fn global_index(o: &mut String) {
    o.push_str("\tmov.u32 %r1, %ctaid.x;\n\tmov.u32 %r2, %ntid.x;\n\tmov.u32 %r3, %tid.x;\n");
    o.push_str("\tcvt.u64.u32 %rd_i, %r3;\n\tmad.wide.u32 %rd_i, %r1, %r2, %rd_i;\n");
}

/// `%{reg}` = global address of the param pointer `name`.
fn pointer(o: &mut String, reg: &str, name: &str) {
    let _ = writeln!(o, "\tld.param.u64 %{reg}, [{name}];\n\tcvta.to.global.u64 %{reg}, %{reg};");
}

fn nonzero_list(o: &mut String, f: &Fmt) {
    let Fmt { t, sh, zero, .. } = *f;
    params(o, NONZERO_LIST, &["x", "list", "counts", "totals", "slot", "n"]);
    let _ = writeln!(o, "\t.reg .pred %p<3>;\n\t.reg .b32 %r<8>;\n\t.reg .b64 %rd<12>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f1;");
    index_guard(o, "n");
    // e = b*n + i, b = blockIdx.y.
    o.push_str("\tmov.u32 %r4, %ctaid.y;\n\tcvt.u64.u32 %rd1, %r4;\n\tmul.lo.u64 %rd2, %rd1, %rd_n;\n\tadd.s64 %rd3, %rd2, %rd_i;\n");
    pointer(o, "rd4", "x");
    let _ = writeln!(o, "\tshl.b64 %rd5, %rd3, {sh};\n\tadd.s64 %rd5, %rd4, %rd5;\n\tld.global.{t} %f1, [%rd5];");
    // `==` is false for NaN, so a NaN is listed (the CPU's `!= 0.0`).
    let _ = writeln!(o, "\tsetp.eq.{t} %p2, %f1, {zero};\n\t@%p2 bra $L_end;");
    // counts[slot * gridDim.y + b]
    pointer(o, "rd6", "counts");
    o.push_str("\tld.param.u64 %rd7, [slot];\n\tmov.u32 %r5, %nctaid.y;\n\tcvt.u64.u32 %rd8, %r5;\n\tmad.lo.u64 %rd7, %rd7, %rd8, %rd1;\n");
    o.push_str("\tshl.b64 %rd7, %rd7, 2;\n\tadd.s64 %rd6, %rd6, %rd7;\n\tatom.global.add.u32 %r6, [%rd6], 1;\n");
    pointer(o, "rd11", "totals");
    o.push_str("\tadd.s64 %rd11, %rd11, %rd7;\n\tred.global.add.u32 [%rd11], 1;\n");
    pointer(o, "rd9", "list");
    o.push_str("\tcvt.u64.u32 %rd10, %r6;\n\tadd.s64 %rd10, %rd10, %rd2;\n\tshl.b64 %rd10, %rd10, 2;\n\tadd.s64 %rd9, %rd9, %rd10;\n");
    o.push_str("\tcvt.u32.u64 %r7, %rd_i;\n\tst.global.u32 [%rd9], %r7;\n$L_end:\n\tret;\n}\n");
}

/// [`SPARSE_EVENTS`], or with `pair` [`SPARSE_EVENTS2`]: the same body, each per-projection
/// parameter chosen by the grid row's projection q.
fn sparse_events(o: &mut String, f: &Fmt, pair: bool) {
    let Fmt { t, rn, sh, .. } = *f;
    let one = ["row_ptr", "col", "w", "list", "slot", "x", "y", "n_pre"];
    if pair {
        let mut names: Vec<String> = one.iter().map(|n| format!("{n}0")).chain(one.iter().map(|n| format!("{n}1"))).collect();
        names.extend(["counts", "n_post", "batch"].map(String::from));
        params(o, SPARSE_EVENTS2, &names.iter().map(String::as_str).collect::<Vec<_>>());
    } else {
        params(o, SPARSE_EVENTS, &["row_ptr", "col", "w", "list", "counts", "slot", "x", "y", "n_pre", "n_post"]);
    }
    let _ = writeln!(o, "\t.reg .pred %p<3>;\n\t.reg .b32 %r<20>;\n\t.reg .b64 %rd<24>;\n\t.reg .{t} %f<4>;");
    // warp = global thread / 32, lane = tid % 32, nwarps = threads in the grid / 32.
    o.push_str("\tmov.u32 %r1, %ctaid.x;\n\tmov.u32 %r2, %ntid.x;\n\tmov.u32 %r3, %tid.x;\n\tmad.lo.u32 %r4, %r1, %r2, %r3;\n");
    o.push_str("\tshr.u32 %r4, %r4, 5;\n\tand.b32 %r5, %r3, 31;\n\tmov.u32 %r6, %nctaid.x;\n\tmul.lo.u32 %r6, %r6, %r2;\n\tshr.u32 %r6, %r6, 5;\n");
    // A projection parameter into %rd{reg}: the pair's q-th (%p0: q = 0).
    let param = |o: &mut String, reg: &str, name: &str| {
        if pair {
            let _ = writeln!(o, "\tld.param.u64 %rd20, [{name}0];\n\tld.param.u64 %rd21, [{name}1];\n\tselp.b64 %{reg}, %rd20, %rd21, %p0;");
        } else {
            let _ = writeln!(o, "\tld.param.u64 %{reg}, [{name}];");
        }
    };
    let global = |o: &mut String, reg: &str, name: &str| {
        param(o, reg, name);
        let _ = writeln!(o, "\tcvta.to.global.u64 %{reg}, %{reg};");
    };
    if pair {
        // q = blockIdx.y / batch, b = blockIdx.y % batch; %r8 = batch.
        o.push_str("\tmov.u32 %r7, %ctaid.y;\n\tld.param.u64 %rd22, [batch];\n\tcvt.u32.u64 %r8, %rd22;\n");
        o.push_str("\tdiv.u32 %r16, %r7, %r8;\n\trem.u32 %r7, %r7, %r8;\n\tsetp.eq.u32 %p0, %r16, 0;\n\tcvt.u64.u32 %rd1, %r7;\n");
    } else {
        // b = blockIdx.y; %r8 = batch = gridDim.y.
        o.push_str("\tmov.u32 %r7, %ctaid.y;\n\tcvt.u64.u32 %rd1, %r7;\n\tmov.u32 %r8, %nctaid.y;\n");
    }
    // count = counts[slot * batch + b]
    pointer(o, "rd2", "counts");
    param(o, "rd3", "slot");
    o.push_str("\tcvt.u64.u32 %rd4, %r8;\n\tmad.lo.u64 %rd3, %rd3, %rd4, %rd1;\n");
    o.push_str("\tshl.b64 %rd3, %rd3, 2;\n\tadd.s64 %rd2, %rd2, %rd3;\n\tld.global.u32 %r9, [%rd2];\n");
    // Row bases of batch b: list + b*n_pre*4, x + b*n_pre*e, y + b*n_post*e.
    param(o, "rd5", "n_pre");
    o.push_str("\tmul.lo.u64 %rd5, %rd5, %rd1;\n\tld.param.u64 %rd6, [n_post];\n\tmul.lo.u64 %rd6, %rd6, %rd1;\n");
    global(o, "rd7", "list");
    o.push_str("\tshl.b64 %rd8, %rd5, 2;\n\tadd.s64 %rd7, %rd7, %rd8;\n");
    global(o, "rd9", "x");
    let _ = writeln!(o, "\tshl.b64 %rd8, %rd5, {sh};\n\tadd.s64 %rd9, %rd9, %rd8;");
    global(o, "rd10", "y");
    let _ = writeln!(o, "\tshl.b64 %rd8, %rd6, {sh};\n\tadd.s64 %rd10, %rd10, %rd8;");
    global(o, "rd11", "row_ptr");
    global(o, "rd12", "col");
    global(o, "rd13", "w");
    // for (k = warp; k < count; k += nwarps)
    o.push_str("\tmov.u32 %r10, %r4;\n$L_spike:\n\tsetp.ge.u32 %p1, %r10, %r9;\n\t@%p1 bra $L_end;\n");
    // i = list[k]; xi = x[i]; [start, end) = row_ptr[i], row_ptr[i + 1]
    o.push_str("\tmul.wide.u32 %rd14, %r10, 4;\n\tadd.s64 %rd14, %rd7, %rd14;\n\tld.global.u32 %r11, [%rd14];\n");
    let _ = writeln!(o, "\tmul.wide.u32 %rd15, %r11, {};\n\tadd.s64 %rd15, %rd9, %rd15;\n\tld.global.{t} %f1, [%rd15];", 1u32 << sh);
    o.push_str("\tmul.wide.u32 %rd16, %r11, 4;\n\tadd.s64 %rd16, %rd11, %rd16;\n\tld.global.u32 %r12, [%rd16];\n\tld.global.u32 %r13, [%rd16+4];\n");
    // for (j = start + lane; j < end; j += 32)
    o.push_str("\tadd.s32 %r14, %r12, %r5;\n$L_syn:\n\tsetp.ge.u32 %p2, %r14, %r13;\n\t@%p2 bra $L_next;\n");
    o.push_str("\tmul.wide.u32 %rd17, %r14, 4;\n\tadd.s64 %rd17, %rd12, %rd17;\n\tld.global.u32 %r15, [%rd17];\n");
    let _ = writeln!(o, "\tmul.wide.u32 %rd18, %r14, {};\n\tadd.s64 %rd18, %rd13, %rd18;\n\tld.global.{t} %f2, [%rd18];", 1u32 << sh);
    let _ = writeln!(o, "\tmul.{rn}.{t} %f3, %f2, %f1;");
    let _ = writeln!(o, "\tmul.wide.u32 %rd19, %r15, {};\n\tadd.s64 %rd19, %rd10, %rd19;\n\tred.global.add.{t} [%rd19], %f3;", 1u32 << sh);
    o.push_str("\tadd.s32 %r14, %r14, 32;\n\tbra.uni $L_syn;\n$L_next:\n\tadd.s32 %r10, %r10, %r6;\n\tbra.uni $L_spike;\n$L_end:\n\tret;\n}\n");
}

fn one_to_one(o: &mut String, f: &Fmt) {
    let Fmt { t, rn, sh, .. } = *f;
    params(o, ONE_TO_ONE, &["w", "x", "y", "n"]);
    let _ = writeln!(o, "\t.reg .pred %p<2>;\n\t.reg .b32 %r<6>;\n\t.reg .b64 %rd<12>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f<5>;");
    index_guard(o, "n");
    o.push_str("\tmov.u32 %r4, %ctaid.y;\n\tcvt.u64.u32 %rd1, %r4;\n\tmad.lo.u64 %rd2, %rd1, %rd_n, %rd_i;\n");
    let _ = writeln!(o, "\tshl.b64 %rd3, %rd_i, {sh};\n\tshl.b64 %rd4, %rd2, {sh};");
    pointer(o, "rd5", "w");
    pointer(o, "rd6", "x");
    pointer(o, "rd7", "y");
    o.push_str("\tadd.s64 %rd5, %rd5, %rd3;\n\tadd.s64 %rd6, %rd6, %rd4;\n\tadd.s64 %rd7, %rd7, %rd4;\n");
    let _ = writeln!(o, "\tld.global.{t} %f1, [%rd5];\n\tld.global.{t} %f2, [%rd6];\n\tld.global.{t} %f3, [%rd7];");
    let _ = writeln!(o, "\tmul.{rn}.{t} %f4, %f1, %f2;\n\tadd.{rn}.{t} %f3, %f3, %f4;\n\tst.global.{t} [%rd7], %f3;");
    o.push_str("$L_end:\n\tret;\n}\n");
}

fn add(o: &mut String, f: &Fmt, clear: bool) {
    let Fmt { t, rn, sh, zero } = *f;
    params(o, if clear { ADD_CLEAR } else { ADD }, &["src", "dst", "len"]);
    let _ = writeln!(o, "\t.reg .pred %p<2>;\n\t.reg .b32 %r<4>;\n\t.reg .b64 %rd<6>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f<3>;");
    index_guard(o, "len");
    let _ = writeln!(o, "\tshl.b64 %rd1, %rd_i, {sh};");
    pointer(o, "rd2", "src");
    pointer(o, "rd3", "dst");
    o.push_str("\tadd.s64 %rd2, %rd2, %rd1;\n\tadd.s64 %rd3, %rd3, %rd1;\n");
    let _ = writeln!(o, "\tld.global.{t} %f1, [%rd2];\n\tld.global.{t} %f2, [%rd3];\n\tadd.{rn}.{t} %f2, %f2, %f1;\n\tst.global.{t} [%rd3], %f2;");
    if clear {
        let _ = writeln!(o, "\tmov.{t} %f0, {zero};\n\tst.global.{t} [%rd2], %f0;");
    }
    o.push_str("$L_end:\n\tret;\n}\n");
}

fn nonfinite(o: &mut String, f: &Fmt) {
    let Fmt { t, sh, .. } = *f;
    params(o, NONFINITE, &["x", "len", "flags", "slot"]);
    let _ = writeln!(o, "\t.reg .pred %p<5>;\n\t.reg .b32 %r<10>;\n\t.reg .b64 %rd<6>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f1;");
    index_guard(o, "len");
    let _ = writeln!(o, "\tshl.b64 %rd1, %rd_i, {sh};");
    pointer(o, "rd2", "x");
    let _ = writeln!(o, "\tadd.s64 %rd2, %rd2, %rd1;\n\tld.global.{t} %f1, [%rd2];\n\ttestp.finite.{t} %p2, %f1;\n\t@%p2 bra $L_end;");
    // class: 1 NaN, 2 +inf, 3 -inf; word = (FLAG_INDEX_MAX - e) << 2 | class.
    raise_flag(o, f, true);
    o.push_str("$L_end:\n\tret;\n}\n");
}

/// The non-finite class of `%f1` (1 NaN, 2 +inf, 3 -inf) in `%r4`, and the flag word of
/// element `%rd_i` in `%r6`, atomically maxed into `flags[slot]`.
fn raise_flag(o: &mut String, f: &Fmt, class: bool) {
    let Fmt { t, zero, .. } = *f;
    if class {
        let _ = writeln!(o, "\ttestp.notanumber.{t} %p3, %f1;\n\tsetp.gt.{t} %p4, %f1, {zero};\n\tselp.u32 %r4, 2, 3, %p4;\n\tselp.u32 %r4, 1, %r4, %p3;");
    } else {
        o.push_str("\tmov.u32 %r4, 1;\n");
    }
    let _ = writeln!(o, "\tcvt.u32.u64 %r5, %rd_i;\n\tsub.u32 %r6, {FLAG_INDEX_MAX}, %r5;\n\tshl.b32 %r6, %r6, 2;\n\tor.b32 %r6, %r6, %r4;");
    pointer(o, "rd3", "flags");
    o.push_str("\tld.param.u64 %rd4, [slot];\n\tshl.b64 %rd4, %rd4, 2;\n\tadd.s64 %rd3, %rd3, %rd4;\n\tatom.global.max.u32 %r7, [%rd3], %r6;\n");
}

fn mul(o: &mut String, f: &Fmt) {
    let Fmt { t, rn, sh, .. } = *f;
    params(o, MUL, &["a", "b", "out", "len"]);
    let _ = writeln!(o, "\t.reg .pred %p<2>;\n\t.reg .b32 %r<4>;\n\t.reg .b64 %rd<6>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f<4>;");
    index_guard(o, "len");
    let _ = writeln!(o, "\tshl.b64 %rd1, %rd_i, {sh};");
    pointer(o, "rd2", "a");
    pointer(o, "rd3", "b");
    pointer(o, "rd4", "out");
    o.push_str("\tadd.s64 %rd2, %rd2, %rd1;\n\tadd.s64 %rd3, %rd3, %rd1;\n\tadd.s64 %rd4, %rd4, %rd1;\n");
    let _ = writeln!(o, "\tld.global.{t} %f1, [%rd2];\n\tld.global.{t} %f2, [%rd3];\n\tmul.{rn}.{t} %f3, %f1, %f2;\n\tst.global.{t} [%rd4], %f3;");
    o.push_str("$L_end:\n\tret;\n}\n");
}

fn not_spike(o: &mut String, f: &Fmt) {
    let Fmt { t, sh, zero, .. } = *f;
    let one = if sh == 2 { "0f3F800000" } else { "0d3FF0000000000000" };
    params(o, NOT_SPIKE, &["x", "len", "flags", "slot"]);
    let _ = writeln!(o, "\t.reg .pred %p<5>;\n\t.reg .b32 %r<10>;\n\t.reg .b64 %rd<6>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f1;");
    index_guard(o, "len");
    let _ = writeln!(o, "\tshl.b64 %rd1, %rd_i, {sh};");
    pointer(o, "rd2", "x");
    // `eq` is false for NaN: a NaN is flagged.
    let _ = writeln!(o, "\tadd.s64 %rd2, %rd2, %rd1;\n\tld.global.{t} %f1, [%rd2];\n\tsetp.eq.{t} %p2, %f1, {zero};\n\t@%p2 bra $L_end;\n\tsetp.eq.{t} %p2, %f1, {one};\n\t@%p2 bra $L_end;");
    raise_flag(o, f, false);
    o.push_str("$L_end:\n\tret;\n}\n");
}

fn gather(o: &mut String, f: &Fmt) {
    let Fmt { t, sh, .. } = *f;
    params(o, GATHER, &["src", "idx", "dst", "n"]);
    let _ = writeln!(o, "\t.reg .pred %p<2>;\n\t.reg .b32 %r<6>;\n\t.reg .b64 %rd<8>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f1;");
    index_guard(o, "n");
    pointer(o, "rd1", "idx");
    o.push_str("\tshl.b64 %rd2, %rd_i, 2;\n\tadd.s64 %rd1, %rd1, %rd2;\n\tld.global.u32 %r4, [%rd1];\n");
    pointer(o, "rd3", "src");
    let _ = writeln!(o, "\tmul.wide.u32 %rd4, %r4, {};\n\tadd.s64 %rd3, %rd3, %rd4;\n\tld.global.{t} %f1, [%rd3];", 1u32 << sh);
    pointer(o, "rd5", "dst");
    let _ = writeln!(o, "\tshl.b64 %rd6, %rd_i, {sh};\n\tadd.s64 %rd5, %rd5, %rd6;\n\tst.global.{t} [%rd5], %f1;");
    o.push_str("$L_end:\n\tret;\n}\n");
}

fn scatter_events(o: &mut String, f: &Fmt) {
    let Fmt { t, sh, zero, .. } = *f;
    params(o, SCATTER_EVENTS, &["new", "w", "w_idx", "mask", "mask_idx", "n", "flags", "slot"]);
    let _ = writeln!(o, "\t.reg .pred %p<5>;\n\t.reg .b32 %r<10>;\n\t.reg .b64 %rd<14>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f<3>;");
    index_guard(o, "n");
    // The event: mask[mask_idx[e]] != 0 (`eq` is false for NaN, as the CPU's `!= 0`).
    pointer(o, "rd5", "mask_idx");
    o.push_str("\tshl.b64 %rd6, %rd_i, 2;\n\tadd.s64 %rd5, %rd5, %rd6;\n\tld.global.u32 %r8, [%rd5];\n");
    pointer(o, "rd7", "mask");
    let _ = writeln!(o, "\tmul.wide.u32 %rd8, %r8, {};\n\tadd.s64 %rd7, %rd7, %rd8;\n\tld.global.{t} %f2, [%rd7];\n\tsetp.eq.{t} %p2, %f2, {zero};\n\t@%p2 bra $L_end;", 1u32 << sh);
    // w[w_idx[e]] = new[e]
    pointer(o, "rd9", "new");
    let _ = writeln!(o, "\tshl.b64 %rd10, %rd_i, {sh};\n\tadd.s64 %rd9, %rd9, %rd10;\n\tld.global.{t} %f1, [%rd9];");
    pointer(o, "rd11", "w_idx");
    o.push_str("\tadd.s64 %rd11, %rd11, %rd6;\n\tld.global.u32 %r9, [%rd11];\n");
    pointer(o, "rd12", "w");
    let _ = writeln!(o, "\tmul.wide.u32 %rd13, %r9, {};\n\tadd.s64 %rd12, %rd12, %rd13;\n\tst.global.{t} [%rd12], %f1;", 1u32 << sh);
    let _ = writeln!(o, "\ttestp.finite.{t} %p2, %f1;\n\t@%p2 bra $L_end;");
    raise_flag(o, f, true);
    o.push_str("$L_end:\n\tret;\n}\n");
}

fn clear_u32(o: &mut String) {
    params(o, CLEAR_U32, &["buf", "offset", "len"]);
    o.push_str("\t.reg .pred %p<2>;\n\t.reg .b32 %r<6>;\n\t.reg .b64 %rd<4>;\n\t.reg .b64 %rd_i, %rd_n;\n");
    index_guard(o, "len");
    pointer(o, "rd1", "buf");
    o.push_str("\tld.param.u64 %rd2, [offset];\n\tadd.s64 %rd2, %rd2, %rd_i;\n\tshl.b64 %rd2, %rd2, 2;\n\tadd.s64 %rd1, %rd1, %rd2;\n");
    o.push_str("\tmov.u32 %r4, 0;\n\tst.global.u32 [%rd1], %r4;\n$L_end:\n\tret;\n}\n");
}

/// [`COPY`], or with `at` [`COPY_AT`].
fn copy(o: &mut String, f: &Fmt, at: bool) {
    let Fmt { t, sh, .. } = *f;
    params(o, if at { COPY_AT } else { COPY }, if at { &["src", "dst", "offset", "len"] } else { &["src", "dst", "len"] });
    let _ = writeln!(o, "\t.reg .pred %p<2>;\n\t.reg .b32 %r<4>;\n\t.reg .b64 %rd<6>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f<2>;");
    index_guard(o, "len");
    let _ = writeln!(o, "\tshl.b64 %rd1, %rd_i, {sh};");
    pointer(o, "rd2", "src");
    pointer(o, "rd3", "dst");
    o.push_str("\tadd.s64 %rd2, %rd2, %rd1;\n");
    if at {
        let _ = writeln!(o, "\tld.param.u64 %rd4, [offset];\n\tadd.s64 %rd4, %rd4, %rd_i;\n\tshl.b64 %rd4, %rd4, {sh};\n\tadd.s64 %rd3, %rd3, %rd4;");
    } else {
        o.push_str("\tadd.s64 %rd3, %rd3, %rd1;\n");
    }
    let _ = writeln!(o, "\tld.global.{t} %f1, [%rd2];\n\tst.global.{t} [%rd3], %f1;");
    o.push_str("$L_end:\n\tret;\n}\n");
}

/// [`MUL_ADD`], or with `acc` [`MUL_ACC`] (the output is the addend).
fn mul_add(o: &mut String, f: &Fmt, acc: bool) {
    let Fmt { t, rn, sh, .. } = *f;
    let names: &[&str] = if acc { &["a", "b", "out", "len"] } else { &["a", "b", "c", "out", "len"] };
    params(o, if acc { MUL_ACC } else { MUL_ADD }, names);
    let _ = writeln!(o, "\t.reg .pred %p<2>;\n\t.reg .b32 %r<4>;\n\t.reg .b64 %rd<8>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f<5>;");
    index_guard(o, "len");
    let _ = writeln!(o, "\tshl.b64 %rd1, %rd_i, {sh};");
    pointer(o, "rd2", "a");
    pointer(o, "rd3", "b");
    pointer(o, "rd4", if acc { "out" } else { "c" });
    pointer(o, "rd5", "out");
    o.push_str("\tadd.s64 %rd2, %rd2, %rd1;\n\tadd.s64 %rd3, %rd3, %rd1;\n\tadd.s64 %rd4, %rd4, %rd1;\n\tadd.s64 %rd5, %rd5, %rd1;\n");
    let _ = writeln!(o, "\tld.global.{t} %f1, [%rd2];\n\tld.global.{t} %f2, [%rd3];\n\tld.global.{t} %f3, [%rd4];");
    let _ = writeln!(o, "\tmul.{rn}.{t} %f4, %f1, %f2;\n\tadd.{rn}.{t} %f4, %f4, %f3;\n\tst.global.{t} [%rd5], %f4;");
    o.push_str("$L_end:\n\tret;\n}\n");
}

/// `%{dst}` (a float register) = the float whose bits param `name` holds.
fn float_param(o: &mut String, f: &Fmt, dst: &str, name: &str) {
    let _ = writeln!(o, "\tld.param.u64 %rd_a, [{name}];");
    if f.sh == 2 {
        let _ = writeln!(o, "\tcvt.u32.u64 %r_a, %rd_a;\n\tmov.b32 %{dst}, %r_a;");
    } else {
        let _ = writeln!(o, "\tmov.b64 %{dst}, %rd_a;");
    }
}

fn scale_add(o: &mut String, f: &Fmt) {
    let Fmt { t, rn, sh, .. } = *f;
    params(o, SCALE_ADD, &["y", "x", "len", "alpha"]);
    let _ = writeln!(o, "\t.reg .pred %p<2>;\n\t.reg .b32 %r<4>;\n\t.reg .b32 %r_a;\n\t.reg .b64 %rd<6>;\n\t.reg .b64 %rd_i, %rd_n, %rd_a;\n\t.reg .{t} %f<5>;");
    index_guard(o, "len");
    float_param(o, f, "f1", "alpha");
    let _ = writeln!(o, "\tshl.b64 %rd1, %rd_i, {sh};");
    pointer(o, "rd2", "y");
    pointer(o, "rd3", "x");
    o.push_str("\tadd.s64 %rd2, %rd2, %rd1;\n\tadd.s64 %rd3, %rd3, %rd1;\n");
    let _ = writeln!(o, "\tld.global.{t} %f2, [%rd2];\n\tld.global.{t} %f3, [%rd3];");
    let _ = writeln!(o, "\tmul.{rn}.{t} %f4, %f1, %f2;\n\tadd.{rn}.{t} %f4, %f4, %f3;\n\tst.global.{t} [%rd2], %f4;");
    o.push_str("$L_end:\n\tret;\n}\n");
}

/// [`SCALE_ADD_STORE`], or with `two` [`SCALE_ADD_STORE2`]: the element's arrays chosen
/// first, then the same arithmetic.
fn scale_add_store(o: &mut String, f: &Fmt, two: bool) {
    let Fmt { t, rn, sh, .. } = *f;
    if two {
        params(o, SCALE_ADD_STORE2, &["y1", "x1", "out1", "len1", "y2", "x2", "out2", "len2", "alpha", "beta"]);
    } else {
        params(o, SCALE_ADD_STORE, &["y", "x", "out", "len", "alpha", "beta"]);
    }
    let (preds, n1) = if two { (3, " %rd_n1,") } else { (2, "") };
    let _ = writeln!(o, "\t.reg .pred %p<{preds}>;\n\t.reg .b32 %r<4>;\n\t.reg .b32 %r_a;\n\t.reg .b64 %rd<6>;\n\t.reg .b64 %rd_i, %rd_n,{n1} %rd_a;\n\t.reg .{t} %f<7>;");
    if two {
        // e < len1 + len2: the first array's element e, else the second's e - len1.
        global_index(o);
        o.push_str("\tld.param.u64 %rd_n1, [len1];\n\tld.param.u64 %rd_n, [len2];\n\tadd.s64 %rd_n, %rd_n, %rd_n1;\n");
        o.push_str("\tsetp.ge.u64 %p1, %rd_i, %rd_n;\n\t@%p1 bra $L_end;\n");
        o.push_str("\tld.param.u64 %rd2, [y1];\n\tld.param.u64 %rd3, [x1];\n\tld.param.u64 %rd4, [out1];\n");
        o.push_str("\tsetp.lt.u64 %p2, %rd_i, %rd_n1;\n\t@%p2 bra $L_first;\n");
        o.push_str("\tsub.s64 %rd_i, %rd_i, %rd_n1;\n");
        o.push_str("\tld.param.u64 %rd2, [y2];\n\tld.param.u64 %rd3, [x2];\n\tld.param.u64 %rd4, [out2];\n");
        o.push_str("$L_first:\n\tcvta.to.global.u64 %rd2, %rd2;\n\tcvta.to.global.u64 %rd3, %rd3;\n\tcvta.to.global.u64 %rd4, %rd4;\n");
    } else {
        index_guard(o, "len");
        pointer(o, "rd2", "y");
        pointer(o, "rd3", "x");
        pointer(o, "rd4", "out");
    }
    float_param(o, f, "f1", "alpha");
    float_param(o, f, "f5", "beta");
    let _ = writeln!(o, "\tshl.b64 %rd1, %rd_i, {sh};");
    o.push_str("\tadd.s64 %rd2, %rd2, %rd1;\n\tadd.s64 %rd3, %rd3, %rd1;\n\tadd.s64 %rd4, %rd4, %rd1;\n");
    let _ = writeln!(o, "\tld.global.{t} %f2, [%rd2];\n\tld.global.{t} %f3, [%rd3];");
    let _ = writeln!(o, "\tmul.{rn}.{t} %f4, %f1, %f2;\n\tadd.{rn}.{t} %f4, %f4, %f3;\n\tst.global.{t} [%rd2], %f4;");
    let _ = writeln!(o, "\tmul.{rn}.{t} %f6, %f5, %f4;\n\tst.global.{t} [%rd4], %f6;");
    o.push_str("$L_end:\n\tret;\n}\n");
}

/// [`EXACT_TRACE`], or with `sparse` [`SPARSE_EXACT_TRACE`]: the same loop over the
/// batch, the pair `e` being a weight `i * n_out + o` or a synapse `(row[e], col[e])`.
fn exact_trace(o: &mut String, f: &Fmt, sparse: bool) {
    let Fmt { t, rn, sh, zero } = *f;
    let mut names = vec!["tr_in", "tr_out", "d", "f", "x", "l", "g", "batch", "n_pre", "n_out", "k"];
    if sparse {
        names.extend(["row", "col", "nnz"]);
    }
    params(o, if sparse { SPARSE_EXACT_TRACE } else { EXACT_TRACE }, &names);
    let r = if sparse { 6 } else { 4 };
    let _ = writeln!(o, "\t.reg .pred %p<5>;\n\t.reg .b32 %r<{r}>;\n\t.reg .b64 %rd<40>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f<12>;");
    o.push_str("\tmov.u32 %r1, %ctaid.x;\n\tmov.u32 %r2, %ntid.x;\n\tmov.u32 %r3, %tid.x;\n");
    o.push_str("\tcvt.u64.u32 %rd_i, %r3;\n\tmad.wide.u32 %rd_i, %r1, %r2, %rd_i;\n");
    o.push_str("\tld.param.u64 %rd1, [n_pre];\n\tld.param.u64 %rd2, [n_out];\n\tld.param.u64 %rd3, [batch];\n\tld.param.u64 %rd4, [k];\n");
    if sparse {
        // e < nnz; i = row[e], o = col[e].
        o.push_str("\tld.param.u64 %rd_n, [nnz];\n\tsetp.ge.u64 %p1, %rd_i, %rd_n;\n\t@%p1 bra $L_end;\n");
        pointer(o, "rd31", "row");
        pointer(o, "rd32", "col");
        o.push_str("\tshl.b64 %rd33, %rd_i, 2;\n\tadd.s64 %rd34, %rd31, %rd33;\n\tld.global.u32 %r4, [%rd34];\n\tcvt.u64.u32 %rd5, %r4;\n");
        o.push_str("\tadd.s64 %rd34, %rd32, %rd33;\n\tld.global.u32 %r5, [%rd34];\n\tcvt.u64.u32 %rd6, %r5;\n");
    } else {
        // e < n_pre * n_out; i = e / n_out, o = e % n_out.
        o.push_str("\tmul.lo.u64 %rd_n, %rd1, %rd2;\n\tsetp.ge.u64 %p1, %rd_i, %rd_n;\n\t@%p1 bra $L_end;\n");
        o.push_str("\tdiv.u64 %rd5, %rd_i, %rd2;\n\trem.u64 %rd6, %rd_i, %rd2;\n");
    }
    // plane = batch * n_out (elements)
    o.push_str("\tmul.lo.u64 %rd7, %rd3, %rd2;\n");
    pointer(o, "rd8", "tr_in");
    pointer(o, "rd9", "tr_out");
    pointer(o, "rd10", "d");
    pointer(o, "rd11", "f");
    pointer(o, "rd12", "x");
    pointer(o, "rd13", "l");
    pointer(o, "rd14", "g");
    // acc = 0; b = 0; te = e * k (trace element of (b, i, o, 0)); bo = o; bi = i
    let _ = writeln!(o, "\tmov.{t} %f1, {zero};\n\tmov.u64 %rd15, 0;\n\tmul.lo.u64 %rd16, %rd_i, %rd4;\n\tmov.u64 %rd17, %rd6;\n\tmov.u64 %rd18, %rd5;");
    // stride of te per b: pairs * k
    o.push_str("\tmul.lo.u64 %rd19, %rd_n, %rd4;\n");
    o.push_str("$L_b:\n\tsetp.ge.u64 %p2, %rd15, %rd3;\n\t@%p2 bra $L_done;\n");
    // xv = x[bi]
    let _ = writeln!(o, "\tshl.b64 %rd20, %rd18, {sh};\n\tadd.s64 %rd20, %rd12, %rd20;\n\tld.global.{t} %f2, [%rd20];");
    // for a in 0..k
    o.push_str("\tmov.u64 %rd21, 0;\n$L_a:\n\tsetp.ge.u64 %p3, %rd21, %rd4;\n\t@%p3 bra $L_next_b;\n");
    // s = 0; for c in 0..k: s += d[(a*k + c)*plane + bo] * tr_in[te + c]
    let _ = writeln!(o, "\tmov.{t} %f3, {zero};\n\tmov.u64 %rd22, 0;\n\tmul.lo.u64 %rd23, %rd21, %rd4;");
    o.push_str("$L_c:\n\tsetp.ge.u64 %p4, %rd22, %rd4;\n\t@%p4 bra $L_drive;\n");
    o.push_str("\tadd.s64 %rd24, %rd23, %rd22;\n\tmad.lo.u64 %rd24, %rd24, %rd7, %rd17;\n");
    let _ = writeln!(o, "\tshl.b64 %rd24, %rd24, {sh};\n\tadd.s64 %rd24, %rd10, %rd24;\n\tld.global.{t} %f4, [%rd24];");
    let _ = writeln!(o, "\tadd.s64 %rd25, %rd16, %rd22;\n\tshl.b64 %rd25, %rd25, {sh};\n\tadd.s64 %rd25, %rd8, %rd25;\n\tld.global.{t} %f5, [%rd25];");
    let _ = writeln!(o, "\tmul.{rn}.{t} %f6, %f4, %f5;\n\tadd.{rn}.{t} %f3, %f3, %f6;");
    o.push_str("\tadd.s64 %rd22, %rd22, 1;\n\tbra.uni $L_c;\n$L_drive:\n");
    // s += xv * f[a*plane + bo]; tr_out[te + a] = s; acc += l[a*plane + bo] * s
    o.push_str("\tmad.lo.u64 %rd26, %rd21, %rd7, %rd17;\n");
    let _ = writeln!(o, "\tshl.b64 %rd26, %rd26, {sh};\n\tadd.s64 %rd27, %rd11, %rd26;\n\tld.global.{t} %f7, [%rd27];\n\tadd.s64 %rd28, %rd13, %rd26;\n\tld.global.{t} %f8, [%rd28];");
    let _ = writeln!(o, "\tmul.{rn}.{t} %f9, %f2, %f7;\n\tadd.{rn}.{t} %f3, %f3, %f9;");
    let _ = writeln!(o, "\tadd.s64 %rd29, %rd16, %rd21;\n\tshl.b64 %rd29, %rd29, {sh};\n\tadd.s64 %rd29, %rd9, %rd29;\n\tst.global.{t} [%rd29], %f3;");
    let _ = writeln!(o, "\tmul.{rn}.{t} %f10, %f8, %f3;\n\tadd.{rn}.{t} %f1, %f1, %f10;");
    o.push_str("\tadd.s64 %rd21, %rd21, 1;\n\tbra.uni $L_a;\n$L_next_b:\n");
    o.push_str("\tadd.s64 %rd15, %rd15, 1;\n\tadd.s64 %rd16, %rd16, %rd19;\n\tadd.s64 %rd17, %rd17, %rd2;\n\tadd.s64 %rd18, %rd18, %rd1;\n\tbra.uni $L_b;\n");
    let _ = writeln!(o, "$L_done:\n\tshl.b64 %rd30, %rd_i, {sh};\n\tadd.s64 %rd30, %rd14, %rd30;\n\tld.global.{t} %f11, [%rd30];\n\tadd.{rn}.{t} %f11, %f11, %f1;\n\tst.global.{t} [%rd30], %f11;");
    o.push_str("$L_end:\n\tret;\n}\n");
}

fn sparse_outer(o: &mut String, f: &Fmt) {
    let Fmt { t, rn, sh, .. } = *f;
    params(o, SPARSE_OUTER, &["row", "col", "x", "c", "g", "nnz", "batch", "n_pre", "n_post"]);
    let _ = writeln!(o, "\t.reg .pred %p<3>;\n\t.reg .b32 %r<6>;\n\t.reg .b64 %rd<20>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f<5>;");
    index_guard(o, "nnz");
    pointer(o, "rd1", "row");
    pointer(o, "rd2", "col");
    pointer(o, "rd3", "x");
    pointer(o, "rd4", "c");
    pointer(o, "rd5", "g");
    // i = row[e]; o = col[e]
    o.push_str("\tshl.b64 %rd6, %rd_i, 2;\n\tadd.s64 %rd7, %rd1, %rd6;\n\tld.global.u32 %r4, [%rd7];\n\tcvt.u64.u32 %rd8, %r4;\n");
    o.push_str("\tadd.s64 %rd7, %rd2, %rd6;\n\tld.global.u32 %r5, [%rd7];\n\tcvt.u64.u32 %rd9, %r5;\n");
    o.push_str("\tld.param.u64 %rd10, [batch];\n\tld.param.u64 %rd11, [n_pre];\n\tld.param.u64 %rd12, [n_post];\n");
    // acc = g[e]; b = 0; xi = i; co = o
    let _ = writeln!(o, "\tshl.b64 %rd13, %rd_i, {sh};\n\tadd.s64 %rd13, %rd5, %rd13;\n\tld.global.{t} %f1, [%rd13];");
    o.push_str("\tmov.u64 %rd14, 0;\n\tmov.u64 %rd15, %rd8;\n\tmov.u64 %rd16, %rd9;\n");
    o.push_str("$L_b:\n\tsetp.ge.u64 %p2, %rd14, %rd10;\n\t@%p2 bra $L_done;\n");
    let _ = writeln!(o, "\tshl.b64 %rd17, %rd15, {sh};\n\tadd.s64 %rd17, %rd3, %rd17;\n\tld.global.{t} %f2, [%rd17];");
    let _ = writeln!(o, "\tshl.b64 %rd18, %rd16, {sh};\n\tadd.s64 %rd18, %rd4, %rd18;\n\tld.global.{t} %f3, [%rd18];");
    let _ = writeln!(o, "\tmul.{rn}.{t} %f4, %f2, %f3;\n\tadd.{rn}.{t} %f1, %f1, %f4;");
    o.push_str("\tadd.s64 %rd14, %rd14, 1;\n\tadd.s64 %rd15, %rd15, %rd11;\n\tadd.s64 %rd16, %rd16, %rd12;\n\tbra.uni $L_b;\n");
    let _ = writeln!(o, "$L_done:\n\tst.global.{t} [%rd13], %f1;");
    o.push_str("$L_end:\n\tret;\n}\n");
}

fn sparse_back(o: &mut String, f: &Fmt) {
    let Fmt { t, rn, sh, zero } = *f;
    params(o, SPARSE_BACK, &["row_ptr", "col", "w", "mu", "out", "n_pre", "n_post", "acc"]);
    let _ = writeln!(o, "\t.reg .pred %p<4>;\n\t.reg .b32 %r<8>;\n\t.reg .b64 %rd<16>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f<6>;");
    index_guard(o, "n_pre");
    // b = blockIdx.y
    o.push_str("\tmov.u32 %r4, %ctaid.y;\n\tcvt.u64.u32 %rd1, %r4;\n");
    pointer(o, "rd2", "row_ptr");
    pointer(o, "rd3", "col");
    pointer(o, "rd4", "w");
    pointer(o, "rd5", "mu");
    pointer(o, "rd6", "out");
    // [j, end) = row_ptr[i], row_ptr[i + 1]
    o.push_str("\tshl.b64 %rd7, %rd_i, 2;\n\tadd.s64 %rd7, %rd2, %rd7;\n\tld.global.u32 %r5, [%rd7];\n\tld.global.u32 %r6, [%rd7+4];\n");
    // mu's row of batch b: mu + b * n_post
    let _ = writeln!(o, "\tld.param.u64 %rd8, [n_post];\n\tmul.lo.u64 %rd8, %rd8, %rd1;\n\tshl.b64 %rd8, %rd8, {sh};\n\tadd.s64 %rd5, %rd5, %rd8;");
    let _ = writeln!(o, "\tmov.{t} %f1, {zero};");
    o.push_str("$L_syn:\n\tsetp.ge.u32 %p2, %r5, %r6;\n\t@%p2 bra $L_store;\n");
    o.push_str("\tmul.wide.u32 %rd9, %r5, 4;\n\tadd.s64 %rd9, %rd3, %rd9;\n\tld.global.u32 %r7, [%rd9];\n");
    let _ = writeln!(o, "\tmul.wide.u32 %rd10, %r5, {};\n\tadd.s64 %rd10, %rd4, %rd10;\n\tld.global.{t} %f2, [%rd10];", 1u32 << sh);
    let _ = writeln!(o, "\tmul.wide.u32 %rd11, %r7, {};\n\tadd.s64 %rd11, %rd5, %rd11;\n\tld.global.{t} %f3, [%rd11];", 1u32 << sh);
    let _ = writeln!(o, "\tmul.{rn}.{t} %f4, %f2, %f3;\n\tadd.{rn}.{t} %f1, %f1, %f4;");
    o.push_str("\tadd.s32 %r5, %r5, 1;\n\tbra.uni $L_syn;\n$L_store:\n");
    // out[b * n_pre + i] (= or +=)
    let _ = writeln!(o, "\tmad.lo.u64 %rd12, %rd1, %rd_n, %rd_i;\n\tshl.b64 %rd12, %rd12, {sh};\n\tadd.s64 %rd12, %rd6, %rd12;");
    o.push_str("\tld.param.u64 %rd13, [acc];\n\tsetp.eq.u64 %p3, %rd13, 0;\n\t@%p3 bra $L_put;\n");
    let _ = writeln!(o, "\tld.global.{t} %f5, [%rd12];\n\tadd.{rn}.{t} %f1, %f5, %f1;");
    let _ = writeln!(o, "$L_put:\n\tst.global.{t} [%rd12], %f1;");
    o.push_str("$L_end:\n\tret;\n}\n");
}

/// Philox4x32-10 rounds (`snnc_compiler::rng::philox4x32`) on the counter in
/// `%pc0..%pc3` and the key in `%pk0`, `%pk1` (b32 registers the caller declares with
/// [`PHILOX_REGS`], the key overwritten); the result in `%pc0..%pc3`.
fn philox_text(o: &mut String) {
    const M0: u32 = 0xD251_1F53;
    const M1: u32 = 0xCD9E_8D57;
    for round in 0..10 {
        let _ = writeln!(o, "\tmul.hi.u32 %ph0, %pc0, {M0};\n\tmul.lo.u32 %pl0, %pc0, {M0};\n\tmul.hi.u32 %ph1, %pc2, {M1};\n\tmul.lo.u32 %pl1, %pc2, {M1};");
        // c = [hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0]
        o.push_str("\txor.b32 %pt, %ph1, %pc1;\n\txor.b32 %pc0, %pt, %pk0;\n\txor.b32 %pt, %ph0, %pc3;\n\txor.b32 %pc2, %pt, %pk1;\n");
        o.push_str("\tmov.b32 %pc1, %pl1;\n\tmov.b32 %pc3, %pl0;\n");
        if round < 9 {
            let _ = writeln!(o, "\tadd.u32 %pk0, %pk0, {};\n\tadd.u32 %pk1, %pk1, {};", 0x9E37_79B9u32, 0xBB67_AE85u32);
        }
    }
}

/// The key param `key` (a u64, as `Rng::new`'s seed) into `%pk0` (low word) and `%pk1`,
/// through the b64 register `tmp`.
fn philox_key_text(o: &mut String, tmp: &str) {
    let _ = writeln!(o, "\tld.param.u64 {tmp}, [key];\n\tcvt.u32.u64 %pk0, {tmp};\n\tshr.u64 {tmp}, {tmp}, 32;\n\tcvt.u32.u64 %pk1, {tmp};");
}

/// The registers [`philox_text`] uses.
const PHILOX_REGS: &str = "\t.reg .b32 %pc<4>;\n\t.reg .b32 %pk<2>;\n\t.reg .b32 %ph<2>;\n\t.reg .b32 %pl<2>;\n\t.reg .b32 %pt;";

/// (w + 1) / 2^32 in f64 of the b32 register `w` into the f64 register `d` (`u01`).
fn u01_text(o: &mut String, w: &str, d: &str) {
    let _ = writeln!(o, "\tcvt.rn.f64.u32 {d}, {w};\n\tadd.rn.f64 {d}, {d}, 0d3FF0000000000000;\n\tmul.rn.f64 {d}, {d}, 0d3DF0000000000000;");
}

fn random_spikes(o: &mut String, f: &Fmt) {
    let Fmt { t, sh, zero, .. } = *f;
    let one = if t == "f32" { "0f3F800000" } else { "0d3FF0000000000000" };
    params(o, RANDOM_SPIKES, &["x", "target", "mask", "key", "t0", "steps", "batch", "inputs", "outputs", "p"]);
    let _ = writeln!(o, "\t.reg .pred %p<4>;\n\t.reg .b32 %r<4>;\n\t.reg .b64 %rd<24>;\n\t.reg .b64 %rd_i;\n\t.reg .f64 %fd<4>;\n\t.reg .{t} %f1;\n{PHILOX_REGS}");
    global_index(o);
    // m = batch * inputs, xb = ceil(m / 4) blocks a step, mt = batch * outputs; the
    // three segments end at steps * xb, + steps * mt, + steps * batch.
    o.push_str("\tld.param.u64 %rd1, [steps];\n\tld.param.u64 %rd2, [batch];\n\tld.param.u64 %rd3, [inputs];\n\tld.param.u64 %rd4, [outputs];\n");
    o.push_str("\tmul.lo.u64 %rd5, %rd2, %rd3;\n\tadd.s64 %rd6, %rd5, 3;\n\tshr.u64 %rd6, %rd6, 2;\n\tmul.lo.u64 %rd7, %rd2, %rd4;\n");
    o.push_str("\tmul.lo.u64 %rd8, %rd1, %rd6;\n\tmul.lo.u64 %rd9, %rd1, %rd7;\n\tadd.s64 %rd9, %rd9, %rd8;\n\tmul.lo.u64 %rd10, %rd1, %rd2;\n\tadd.s64 %rd10, %rd10, %rd9;\n");
    o.push_str("\tsetp.ge.u64 %p1, %rd_i, %rd10;\n\t@%p1 bra $L_end;\n");
    o.push_str("\tld.param.u64 %rd11, [t0];\n");
    // The counter's words 0 and 1: t = t0 + s, s = %rd12 below; the key's two halves.
    let counter = |o: &mut String, stream: u32, sub: &str| {
        o.push_str("\tadd.s64 %rd13, %rd11, %rd12;\n\tcvt.u32.u64 %pc0, %rd13;\n\tshr.u64 %rd13, %rd13, 32;\n\tcvt.u32.u64 %pc1, %rd13;\n");
        let _ = writeln!(o, "\tmov.b32 %pc2, {stream};\n\tcvt.u32.u64 %pc3, {sub};");
        philox_key_text(o, "%rd14");
    };
    o.push_str("\tsetp.lt.u64 %p2, %rd_i, %rd8;\n\t@%p2 bra $L_x;\n\tsetp.lt.u64 %p3, %rd_i, %rd9;\n\t@%p3 bra $L_target;\n");
    // The mask: 1.
    pointer(o, "rd15", "mask");
    o.push_str("\tsub.s64 %rd16, %rd_i, %rd9;\n\tshl.b64 %rd16, %rd16, 3;\n\tadd.s64 %rd15, %rd15, %rd16;\n");
    o.push_str("\tmov.f64 %fd1, 0d3FF0000000000000;\n\tst.global.f64 [%rd15], %fd1;\n\tbra $L_end;\n");
    // A target: (1 - u) - 0.5 of step s, element k.
    o.push_str("$L_target:\n\tsub.s64 %rd16, %rd_i, %rd8;\n\tdiv.u64 %rd12, %rd16, %rd7;\n\trem.u64 %rd17, %rd16, %rd7;\n");
    counter(o, 7, "%rd17");
    philox_text(o);
    u01_text(o, "%pc0", "%fd1");
    o.push_str("\tmov.f64 %fd2, 0d3FF0000000000000;\n\tsub.rn.f64 %fd2, %fd2, %fd1;\n\tsub.rn.f64 %fd2, %fd2, 0d3FE0000000000000;\n");
    pointer(o, "rd15", "target");
    o.push_str("\tshl.b64 %rd16, %rd16, 3;\n\tadd.s64 %rd15, %rd15, %rd16;\n\tst.global.f64 [%rd15], %fd2;\n\tbra $L_end;\n");
    // Four inputs of step s from block j: element e = 4j + w while e < m.
    o.push_str("$L_x:\n\tdiv.u64 %rd12, %rd_i, %rd6;\n\trem.u64 %rd17, %rd_i, %rd6;\n");
    counter(o, 6, "%rd17");
    philox_text(o);
    o.push_str("\tld.param.u64 %rd18, [p];\n\tmov.b64 %fd3, %rd18;\n");
    pointer(o, "rd19", "x");
    // e = 4j; the step's row starts at s * m.
    o.push_str("\tshl.b64 %rd20, %rd17, 2;\n\tmul.lo.u64 %rd21, %rd12, %rd5;\n");
    for w in 0..4 {
        let _ = writeln!(o, "\tsetp.ge.u64 %p1, %rd20, %rd5;\n\t@%p1 bra $L_end;");
        u01_text(o, &format!("%pc{w}"), "%fd1");
        let _ = writeln!(o, "\tsetp.le.f64 %p2, %fd1, %fd3;\n\tselp.{t} %f1, {one}, {zero}, %p2;");
        let _ = writeln!(o, "\tadd.s64 %rd22, %rd21, %rd20;\n\tshl.b64 %rd22, %rd22, {sh};\n\tadd.s64 %rd22, %rd19, %rd22;\n\tst.global.{t} [%rd22], %f1;\n\tadd.s64 %rd20, %rd20, 1;");
    }
    o.push_str("$L_end:\n\tret;\n}\n");
}

fn dms(o: &mut String, f: &Fmt) {
    let Fmt { t, sh, zero, .. } = *f;
    let one = if t == "f32" { "0f3F800000" } else { "0d3FF0000000000000" };
    params(o, DMS, &["x", "target", "mask", "rates", "labels", "key", "base", "t0", "steps", "batch", "inputs", "dt", "background", "s0", "s1", "u0", "u1"]);
    let _ = writeln!(o, "\t.reg .pred %p<6>;\n\t.reg .b32 %r<6>;\n\t.reg .b64 %rd<30>;\n\t.reg .b64 %rd_i;\n\t.reg .f64 %fd<10>;\n\t.reg .{t} %f1;\n{PHILOX_REGS}");
    global_index(o);
    // Segments: steps * batch * inputs inputs, steps * batch * 2 targets, steps * batch masks.
    o.push_str("\tld.param.u64 %rd1, [steps];\n\tld.param.u64 %rd2, [batch];\n\tld.param.u64 %rd3, [inputs];\n");
    o.push_str("\tmul.lo.u64 %rd4, %rd2, %rd3;\n\tmul.lo.u64 %rd5, %rd1, %rd4;\n\tshl.b64 %rd6, %rd2, 1;\n\tmul.lo.u64 %rd7, %rd1, %rd6;\n\tadd.s64 %rd7, %rd7, %rd5;\n");
    o.push_str("\tmul.lo.u64 %rd8, %rd1, %rd2;\n\tadd.s64 %rd8, %rd8, %rd7;\n\tsetp.ge.u64 %p1, %rd_i, %rd8;\n\t@%p1 bra $L_end;\n");
    // The step of a per-step index %rd10 over `per` (a register) into %rd11 (s) and the
    // rest into %rd12; the time t dt into %fd1 and t into %rd13.
    let step_of = |o: &mut String, per: &str| {
        let _ = writeln!(o, "\tdiv.u64 %rd11, %rd10, {per};\n\trem.u64 %rd12, %rd10, {per};");
        o.push_str("\tld.param.u64 %rd13, [t0];\n\tadd.s64 %rd13, %rd13, %rd11;\n\tcvt.rn.f64.u64 %fd1, %rd13;\n");
        o.push_str("\tld.param.u64 %rd14, [dt];\n\tmov.b64 %fd2, %rd14;\n\tmul.rn.f64 %fd1, %fd1, %fd2;\n");
    };
    let f64_param = |o: &mut String, reg: &str, name: &str| {
        let _ = writeln!(o, "\tld.param.u64 %rd15, [{name}];\n\tmov.b64 {reg}, %rd15;");
    };
    o.push_str("\tsetp.lt.u64 %p2, %rd_i, %rd5;\n\t@%p2 bra $L_x;\n\tsetp.lt.u64 %p2, %rd_i, %rd7;\n\t@%p2 bra $L_target;\n");
    // A mask entry: 1 while u0 <= t dt < u1.
    o.push_str("\tsub.s64 %rd10, %rd_i, %rd7;\n");
    step_of(o, "%rd2");
    f64_param(o, "%fd3", "u0");
    f64_param(o, "%fd4", "u1");
    o.push_str("\tsetp.ge.f64 %p3, %fd1, %fd3;\n\tsetp.lt.f64 %p4, %fd1, %fd4;\n\tmov.f64 %fd5, 0d0000000000000000;\n\t@!%p3 bra $L_mask;\n\t@!%p4 bra $L_mask;\n\tmov.f64 %fd5, 0d3FF0000000000000;\n");
    o.push_str("$L_mask:\n");
    pointer(o, "rd16", "mask");
    o.push_str("\tshl.b64 %rd17, %rd10, 3;\n\tadd.s64 %rd16, %rd16, %rd17;\n\tst.global.f64 [%rd16], %fd5;\n\tbra $L_end;\n");
    // A target: labels[b] == c, (b, c) = the rest / 2, % 2.
    o.push_str("$L_target:\n\tsub.s64 %rd10, %rd_i, %rd5;\n");
    o.push_str("\trem.u64 %rd19, %rd10, %rd6;\n\tshr.u64 %rd18, %rd19, 1;\n\tand.b64 %rd19, %rd19, 1;\n");
    pointer(o, "rd20", "labels");
    o.push_str("\tshl.b64 %rd21, %rd18, 2;\n\tadd.s64 %rd20, %rd20, %rd21;\n\tld.global.u32 %r4, [%rd20];\n\tcvt.u64.u32 %rd22, %r4;\n");
    o.push_str("\tsetp.eq.u64 %p3, %rd22, %rd19;\n\tselp.f64 %fd5, 0d3FF0000000000000, 0d0000000000000000, %p3;\n");
    pointer(o, "rd16", "target");
    o.push_str("\tshl.b64 %rd17, %rd10, 3;\n\tadd.s64 %rd16, %rd16, %rd17;\n\tst.global.f64 [%rd16], %fd5;\n\tbra $L_end;\n");
    // An input: b = rest / inputs, i = rest % inputs.
    o.push_str("$L_x:\n\tmov.u64 %rd10, %rd_i;\n");
    step_of(o, "%rd4");
    o.push_str("\tdiv.u64 %rd18, %rd12, %rd3;\n\trem.u64 %rd19, %rd12, %rd3;\n");
    // The rate: the sample's, the test's or the background.
    f64_param(o, "%fd6", "background");
    f64_param(o, "%fd3", "s0");
    f64_param(o, "%fd4", "s1");
    f64_param(o, "%fd7", "u0");
    pointer(o, "rd20", "rates");
    // rates + ((2b) * inputs + i) * 8; the test's a row further.
    o.push_str("\tshl.b64 %rd21, %rd18, 1;\n\tmul.lo.u64 %rd21, %rd21, %rd3;\n\tadd.s64 %rd21, %rd21, %rd19;\n\tshl.b64 %rd21, %rd21, 3;\n\tadd.s64 %rd20, %rd20, %rd21;\n");
    o.push_str("\tsetp.ge.f64 %p3, %fd1, %fd3;\n\tsetp.lt.f64 %p4, %fd1, %fd4;\n\t@!%p3 bra $L_not_sample;\n\t@!%p4 bra $L_not_sample;\n\tld.global.f64 %fd6, [%rd20];\n\tbra $L_rate;\n");
    o.push_str("$L_not_sample:\n\tsetp.ge.f64 %p5, %fd1, %fd7;\n\t@!%p5 bra $L_rate;\n\tshl.b64 %rd23, %rd3, 3;\n\tadd.s64 %rd20, %rd20, %rd23;\n\tld.global.f64 %fd6, [%rd20];\n");
    // u <= rate * dt, u = u01 of word 0 of counter c = base ^ (t << 20) ^ (b * inputs + i).
    o.push_str("$L_rate:\n\tmul.rn.f64 %fd6, %fd6, %fd2;\n");
    o.push_str("\tld.param.u64 %rd24, [base];\n\tshl.b64 %rd25, %rd13, 20;\n\txor.b64 %rd24, %rd24, %rd25;\n\txor.b64 %rd24, %rd24, %rd12;\n");
    o.push_str("\tcvt.u32.u64 %pc0, %rd24;\n\tshr.u64 %rd24, %rd24, 32;\n\tcvt.u32.u64 %pc1, %rd24;\n\tmov.b32 %pc2, 2;\n\tmov.b32 %pc3, 0;\n");
    philox_key_text(o, "%rd26");
    philox_text(o);
    u01_text(o, "%pc0", "%fd8");
    let _ = writeln!(o, "\tsetp.le.f64 %p3, %fd8, %fd6;\n\tselp.{t} %f1, {one}, {zero}, %p3;");
    pointer(o, "rd27", "x");
    let _ = writeln!(o, "\tshl.b64 %rd28, %rd_i, {sh};\n\tadd.s64 %rd27, %rd27, %rd28;\n\tst.global.{t} [%rd27], %f1;");
    o.push_str("$L_end:\n\tret;\n}\n");
}

fn loss_mse(o: &mut String, f: &Fmt) {
    let Fmt { t, sh, .. } = *f;
    params(o, LOSS_MSE, &["y", "target", "mask", "err", "loss", "evidence", "batch", "o"]);
    let _ = writeln!(o, "\t.reg .pred %p<4>;\n\t.reg .b32 %r<4>;\n\t.reg .b64 %rd<20>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f<3>;\n\t.reg .f64 %fd<12>;");
    index_guard(o, "batch");
    pointer(o, "rd1", "y");
    pointer(o, "rd2", "target");
    pointer(o, "rd3", "mask");
    pointer(o, "rd4", "err");
    pointer(o, "rd5", "loss");
    pointer(o, "rd6", "evidence");
    // m = mask[b]; row = b * o; j = 0
    o.push_str("\tshl.b64 %rd7, %rd_i, 3;\n\tadd.s64 %rd8, %rd3, %rd7;\n\tld.global.f64 %fd1, [%rd8];\n");
    o.push_str("\tld.param.u64 %rd9, [o];\n\tmul.lo.u64 %rd10, %rd_i, %rd9;\n\tmov.u64 %rd11, 0;\n");
    o.push_str("\tsetp.eq.f64 %p2, %fd1, 0d0000000000000000;\n\t@%p2 bra $L_zero;\n");
    // l = 0; 2.0
    o.push_str("\tmov.f64 %fd2, 0d0000000000000000;\n\tmov.f64 %fd3, 0d4000000000000000;\n");
    o.push_str("$L_j:\n\tsetp.ge.u64 %p3, %rd11, %rd9;\n\t@%p3 bra $L_sum;\n\tadd.s64 %rd12, %rd10, %rd11;\n");
    // yv = y[row + j] as f64; tv = target[row + j]
    let _ = writeln!(o, "\tshl.b64 %rd13, %rd12, {sh};\n\tadd.s64 %rd14, %rd1, %rd13;\n\tld.global.{t} %f1, [%rd14];");
    if t == "f32" {
        o.push_str("\tcvt.f64.f32 %fd4, %f1;\n");
    } else {
        o.push_str("\tmov.f64 %fd4, %f1;\n");
    }
    o.push_str("\tshl.b64 %rd15, %rd12, 3;\n\tadd.s64 %rd16, %rd2, %rd15;\n\tld.global.f64 %fd5, [%rd16];\n");
    // e = yv - tv; l += e * e; g = 2 e * m
    o.push_str("\tsub.rn.f64 %fd6, %fd4, %fd5;\n\tmul.rn.f64 %fd7, %fd6, %fd6;\n\tadd.rn.f64 %fd2, %fd2, %fd7;\n");
    o.push_str("\tmul.rn.f64 %fd8, %fd3, %fd6;\n\tmul.rn.f64 %fd8, %fd8, %fd1;\n");
    if t == "f32" {
        o.push_str("\tcvt.rn.f32.f64 %f2, %fd8;\n");
    } else {
        o.push_str("\tmov.f64 %f2, %fd8;\n");
    }
    let _ = writeln!(o, "\tadd.s64 %rd17, %rd4, %rd13;\n\tst.global.{t} [%rd17], %f2;");
    // evidence += m * yv
    o.push_str("\tadd.s64 %rd18, %rd6, %rd15;\n\tld.global.f64 %fd9, [%rd18];\n\tmul.rn.f64 %fd10, %fd1, %fd4;\n\tadd.rn.f64 %fd9, %fd9, %fd10;\n\tst.global.f64 [%rd18], %fd9;\n");
    o.push_str("\tadd.s64 %rd11, %rd11, 1;\n\tbra.uni $L_j;\n");
    // loss[b] += m * l
    o.push_str("$L_sum:\n\tadd.s64 %rd19, %rd5, %rd7;\n\tld.global.f64 %fd11, [%rd19];\n\tmul.rn.f64 %fd2, %fd1, %fd2;\n\tadd.rn.f64 %fd11, %fd11, %fd2;\n\tst.global.f64 [%rd19], %fd11;\n\tbra.uni $L_end;\n");
    // masked out: err[b,:] = 0
    let _ = writeln!(o, "$L_zero:\n\tsetp.ge.u64 %p3, %rd11, %rd9;\n\t@%p3 bra $L_end;\n\tadd.s64 %rd12, %rd10, %rd11;\n\tshl.b64 %rd13, %rd12, {sh};\n\tadd.s64 %rd17, %rd4, %rd13;\n\tmov.{t} %f2, {};\n\tst.global.{t} [%rd17], %f2;\n\tadd.s64 %rd11, %rd11, 1;\n\tbra.uni $L_zero;", f.zero);
    o.push_str("$L_end:\n\tret;\n}\n");
}

/// `%fd4` = y[row + j] as f64 (address offset in `%rd13`): the loop bodies of the losses.
fn load_y(o: &mut String, f: &Fmt) {
    let Fmt { t, sh, .. } = *f;
    let _ = writeln!(o, "\tadd.s64 %rd12, %rd10, %rd11;\n\tshl.b64 %rd13, %rd12, {sh};\n\tadd.s64 %rd14, %rd1, %rd13;\n\tld.global.{t} %f1, [%rd14];");
    o.push_str(if t == "f32" { "\tcvt.f64.f32 %fd4, %f1;\n" } else { "\tmov.f64 %fd4, %f1;\n" });
}

fn loss_ce(o: &mut String, f: &Fmt) {
    use super::build::{Builder, f64_routine_text, routine_decls};
    let Fmt { t, .. } = *f;
    let (exp_regs, exp) = f64_routine_text("%fd5", "%fd6", Builder::exp);
    let (_, exp2) = f64_routine_text("%fd8", "%fd9", Builder::exp);
    let (log_regs, log) = f64_routine_text("%fd2", "%fd3", Builder::log);
    params(o, LOSS_CE, &["y", "target", "mask", "err", "loss", "evidence", "batch", "o"]);
    let _ = writeln!(o, "\t.reg .pred %p<4>;\n\t.reg .b32 %r<4>;\n\t.reg .b64 %rd<20>;\n\t.reg .b64 %rd_i, %rd_n;\n\t.reg .{t} %f<3>;\n\t.reg .f64 %fd<16>;");
    // The routines' registers (shared names, declared once).
    o.push_str(&routine_decls(&[exp_regs, log_regs]));
    index_guard(o, "batch");
    for (reg, name) in [("rd1", "y"), ("rd2", "target"), ("rd3", "mask"), ("rd4", "err"), ("rd5", "loss"), ("rd6", "evidence")] {
        pointer(o, reg, name);
    }
    o.push_str("\tshl.b64 %rd7, %rd_i, 3;\n\tadd.s64 %rd8, %rd3, %rd7;\n\tld.global.f64 %fd1, [%rd8];\n");
    o.push_str("\tld.param.u64 %rd9, [o];\n\tmul.lo.u64 %rd10, %rd_i, %rd9;\n");
    o.push_str("\tsetp.eq.f64 %p2, %fd1, 0d0000000000000000;\n\t@%p2 bra $L_zero;\n");
    // mx = max_j y (NaN ignored, as f64::max)
    o.push_str("\tmov.f64 %fd10, 0dFFF0000000000000;\n\tmov.u64 %rd11, 0;\n");
    o.push_str("$L_max:\n\tsetp.ge.u64 %p3, %rd11, %rd9;\n\t@%p3 bra $L_max_end;\n");
    load_y(o, f);
    o.push_str("\tmax.f64 %fd10, %fd10, %fd4;\n\tadd.s64 %rd11, %rd11, 1;\n\tbra.uni $L_max;\n$L_max_end:\n");
    // s = sum_j exp(y - mx); lz = log(s)
    o.push_str("\tmov.f64 %fd2, 0d0000000000000000;\n\tmov.u64 %rd11, 0;\n");
    o.push_str("$L_sum:\n\tsetp.ge.u64 %p3, %rd11, %rd9;\n\t@%p3 bra $L_sum_end;\n");
    load_y(o, f);
    o.push_str("\tsub.rn.f64 %fd5, %fd4, %fd10;\n");
    o.push_str(&exp);
    o.push_str("\tadd.rn.f64 %fd2, %fd2, %fd6;\n\tadd.s64 %rd11, %rd11, 1;\n\tbra.uni $L_sum;\n$L_sum_end:\n");
    o.push_str(&log);
    // l = 0; per j: logp = (y - mx) - lz; l -= t * logp; err = m (exp(logp) - t); ev += m y
    o.push_str("\tmov.f64 %fd11, 0d0000000000000000;\n\tmov.u64 %rd11, 0;\n");
    o.push_str("$L_j:\n\tsetp.ge.u64 %p3, %rd11, %rd9;\n\t@%p3 bra $L_j_end;\n");
    load_y(o, f);
    o.push_str("\tshl.b64 %rd15, %rd12, 3;\n\tadd.s64 %rd16, %rd2, %rd15;\n\tld.global.f64 %fd7, [%rd16];\n");
    o.push_str("\tsub.rn.f64 %fd8, %fd4, %fd10;\n\tsub.rn.f64 %fd8, %fd8, %fd3;\n\tmul.rn.f64 %fd12, %fd7, %fd8;\n\tsub.rn.f64 %fd11, %fd11, %fd12;\n");
    o.push_str(&exp2);
    o.push_str("\tsub.rn.f64 %fd9, %fd9, %fd7;\n\tmul.rn.f64 %fd9, %fd9, %fd1;\n");
    o.push_str(if t == "f32" { "\tcvt.rn.f32.f64 %f2, %fd9;\n" } else { "\tmov.f64 %f2, %fd9;\n" });
    let _ = writeln!(o, "\tadd.s64 %rd17, %rd4, %rd13;\n\tst.global.{t} [%rd17], %f2;");
    o.push_str("\tadd.s64 %rd18, %rd6, %rd15;\n\tld.global.f64 %fd13, [%rd18];\n\tmul.rn.f64 %fd14, %fd1, %fd4;\n\tadd.rn.f64 %fd13, %fd13, %fd14;\n\tst.global.f64 [%rd18], %fd13;\n");
    o.push_str("\tadd.s64 %rd11, %rd11, 1;\n\tbra.uni $L_j;\n$L_j_end:\n");
    // loss[b] += m * l
    o.push_str("\tadd.s64 %rd19, %rd5, %rd7;\n\tld.global.f64 %fd15, [%rd19];\n\tmul.rn.f64 %fd11, %fd1, %fd11;\n\tadd.rn.f64 %fd15, %fd15, %fd11;\n\tst.global.f64 [%rd19], %fd15;\n\tbra.uni $L_end;\n");
    let _ = writeln!(o, "$L_zero:\n\tmov.u64 %rd11, 0;\n$L_z:\n\tsetp.ge.u64 %p3, %rd11, %rd9;\n\t@%p3 bra $L_end;\n\tadd.s64 %rd12, %rd10, %rd11;\n\tshl.b64 %rd13, %rd12, {};\n\tadd.s64 %rd17, %rd4, %rd13;\n\tmov.{t} %f2, {};\n\tst.global.{t} [%rd17], %f2;\n\tadd.s64 %rd11, %rd11, 1;\n\tbra.uni $L_z;", f.sh, f.zero);
    o.push_str("$L_end:\n\tret;\n}\n");
}
