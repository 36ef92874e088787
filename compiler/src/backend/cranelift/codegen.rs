//! Cranelift IR for one fused population step.
//!
//! The function is `fn(ptrs, n, t, random, non_finite)`: `ptrs` is an array of slice
//! pointers (states, inputs, per-neuron params, then spikes), each slice holding `n`
//! values; `*non_finite` is set to 1 if a new state is infinite or NaN, else 0 (the
//! `x - x` of the sum of each element's new states, 0 exactly when the sum is finite, is
//! OR-ed into an accumulator, so the runtime need not read the states again to check
//! them; a finite sum that overflows is a false alarm: the runtime looks and finds
//! nothing). It
//! runs up to three loops over the elements: f32x4 / f64x2 unrolled `UNROLL` times (when
//! above 1), the same vector width once, then scalar for the remainder. Steps that call functions (transcendentals,
//! random draws) get the scalar loop only, since a call cannot take a vector; in f32
//! kernels `exp`, `exprel` and `sigmoid` are inline polynomials (all loops use them, so
//! every element computes the same function), which vectorises LIF with per-neuron
//! time constants and COBA's exp_euler step.
//!
//! Values: every graph node becomes a float value, or, for comparisons and logic, a
//! mask (i8 0/1 in scalar code, all-ones lanes in vector code) turned into 0/1 floats
//! only where a float is needed. Conditions of `Select` are "non-zero" (NaN included),
//! exactly as in the interpreter.

use std::collections::HashMap;
use std::sync::OnceLock;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{self, AbiParam, BlockArg, FuncRef, InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module, default_libcall_names};

use super::helpers::{self, MathFn};
use super::prepare::needs_calls;
use crate::backend::specialise::Specialised as Prepared;
use super::JitError;
use crate::backend::Precision;
use crate::backend::RandomCtx;
use crate::backend::rewrite::{EXP_COEF, EXP_LN2, EXP_RANGE, Rewrites, exprel_coef};
use crate::ir::{NodeId, Op};

/// The generated function's type.
pub(super) type KernelFn = unsafe extern "C" fn(ptrs: *const *mut u8, n: u64, t: f64, random: *const RandomCtx, non_finite: *mut u32);

/// Elements per unrolled vector iteration = lanes * UNROLL. Measured on COBA's E step
/// (`snnc emit --target clif`): unrolled 4x, 373 instructions per 16 neurons (86 of them
/// spills: x86 has 16 xmm registers and the copies share their constants); 2x, 203 per 8;
/// not unrolled, 82 per 4. So none: one vector per iteration. (Testing at the bottom of
/// the loop instead of jumping back to the test at its head saves the jump, but Cranelift
/// then keeps every constant in a register across the loop and spills: 65 instructions
/// per 4 with 13 stack accesses, against 62 and none with the test at the head.)
const UNROLL: usize = 1;

/// The host ISA, built once (CPU feature detection and flag parsing cost more than
/// compiling a small kernel).
fn isa() -> Result<OwnedTargetIsa, JitError> {
    static ISA: OnceLock<Result<OwnedTargetIsa, String>> = OnceLock::new();
    ISA.get_or_init(|| {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| format!("cranelift flag {k}={v}: {e}"));
        set(&mut flags, "opt_level", "speed")?;
        // As JITBuilder::new: absolute addresses for the helper calls.
        set(&mut flags, "use_colocated_libcalls", "false")?;
        set(&mut flags, "is_pic", "false")?;
        let builder = cranelift_native::builder().map_err(|m| format!("host machine not supported by cranelift: {m}"))?;
        builder.finish(settings::Flags::new(flags)).map_err(|e| format!("cranelift ISA: {e}"))
    })
    .clone()
    .map_err(JitError)
}

/// The finished code: the module owns the executable memory `func` points into.
pub(super) struct Code {
    module: Option<JITModule>,
    pub func: KernelFn,
    pub vectorised: bool,
    /// With `listing`: the Cranelift IR as optimised, then the machine code (Cranelift's
    /// disassembly of its own output) - what `snnc emit --target clif` shows.
    pub listing: Option<String>,
}

// SAFETY: after `finalize_definitions` the module is never used again except to free its
// memory on drop (which needs `&mut self`, so no other thread can be running the code
// through `&self`); the code itself is immutable and reentrant.
unsafe impl Send for Code {}
unsafe impl Sync for Code {}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: `func` is only called through `&self`, which cannot outlive this drop.
            unsafe { m.free_memory() };
        }
    }
}

pub(super) use crate::backend::Slices;

pub(super) fn compile(p: &Prepared, slices: &Slices, precision: Precision, listing: bool) -> Result<Code, JitError> {
    let err = |what: &str, e: &dyn std::fmt::Display| JitError(format!("cranelift {what}: {e}"));
    let isa = isa()?;
    let f64_ = precision == Precision::F64;
    let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
    let inline = |f: &MathFn| !f64_ && matches!(f, MathFn::Exp | MathFn::Exprel | MathFn::Sigmoid);
    let used: Vec<MathFn> = MathFn::ALL
        .into_iter()
        .filter(|f| !inline(f) && p.graph.nodes().any(|(_, n)| math_fn(n.op) == Some(*f)))
        .collect();
    for f in &used {
        let (name, addr) = f.symbol(f64_);
        jb.symbol(name, addr);
    }
    let uses_random = p.graph.nodes().any(|(_, n)| n.op.is_random());
    if uses_random {
        jb.symbol(helpers::RANDOM_SYMBOL, helpers::random as *const u8);
    }
    let mut module = JITModule::new(jb);
    let ptr = module.target_config().pointer_type();
    let sty = if f64_ { types::F64 } else { types::F32 };

    let mut sig = module.make_signature();
    sig.params.extend([AbiParam::new(ptr), AbiParam::new(types::I64), AbiParam::new(types::F64), AbiParam::new(ptr), AbiParam::new(ptr)]);
    let fid = module.declare_function("step", Linkage::Local, &sig).map_err(|e| err("declare", &e))?;

    // Imported helpers: declared in the module, referenced from the function below.
    let mut math_ids = HashMap::new();
    for f in &used {
        let mut s = module.make_signature();
        s.params.extend(std::iter::repeat_n(AbiParam::new(sty), f.arity()));
        s.returns.push(AbiParam::new(sty));
        let id = module.declare_function(f.symbol(f64_).0, Linkage::Import, &s).map_err(|e| err("declare", &e))?;
        math_ids.insert(*f, id);
    }
    let random_id = if uses_random {
        let mut s = module.make_signature();
        s.params.extend([AbiParam::new(ptr), AbiParam::new(types::I64), AbiParam::new(types::I32), AbiParam::new(types::I32)]);
        s.returns.push(AbiParam::new(types::F64));
        Some(module.declare_function(helpers::RANDOM_SYMBOL, Linkage::Import, &s).map_err(|e| err("declare", &e))?)
    } else {
        None
    };

    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = ir::UserFuncName::user(0, fid.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    // f32: exp and exprel as polynomials in IR (a call would block vectorisation, and
    // COBA's exp_euler needs one exprel per element); f64 keeps the interpreter's
    // functions, to stay bit-exact.
    let inline_exp = !f64_;
    let vectorised = !needs_calls(p, inline_exp);
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let math: HashMap<MathFn, FuncRef> =
            math_ids.iter().map(|(f, id)| (*f, module.declare_func_in_func(*id, b.func))).collect();
        let random = random_id.map(|id| module.declare_func_in_func(id, b.func));

        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let [ptrs, n, t, rctx, non_finite] = b.block_params(entry)[..] else { unreachable!("five params declared") };
        let flags = MemFlagsData::new().with_notrap();
        let base: Vec<Value> =
            (0..slices.count()).map(|j| b.ins().load(ptr, MemFlagsData::trusted(), ptrs, (j * ptr.bytes() as usize) as i32)).collect();
        let t = if f64_ { t } else { b.ins().fdemote(types::F32, t) };
        // (lanes, copies per iteration) of each loop, widest first.
        let lanes = if f64_ { 2 } else { 4 };
        let stages: Vec<(usize, usize)> = match (vectorised, UNROLL) {
            (false, _) => vec![(1, 1)],
            (true, 1) => vec![(lanes, 1), (1, 1)],
            (true, _) => vec![(lanes, UNROLL), (lanes, 1), (1, 1)],
        };
        // The non-finite accumulators (integer bits of `x - x`), per width: 0 to start.
        let mut acc = HashMap::new();
        for w in [lanes, 1].into_iter().filter(|w| stages.iter().any(|s| s.0 == *w)) {
            let ity = int_bits(sty, w);
            let var = b.declare_var(ity);
            let zero = b.ins().iconst(ity.lane_type(), 0);
            let zero = if w == 1 { zero } else { b.ins().splat(ity, zero) };
            b.def_var(var, zero);
            acc.insert(w, var);
        }
        let mut g = Gen { p, slices, sty, flags, base, t, rctx, math, random, vals: Vec::new(), acc };
        let heads: Vec<ir::Block> = stages.iter().map(|_| b.create_block()).collect();
        let exit = b.create_block();
        let zero = b.ins().iconst(types::I64, 0);
        b.ins().jump(heads[0], &[BlockArg::Value(zero)]);
        for (s, &(lanes, copies)) in stages.iter().enumerate() {
            let head = heads[s];
            let body = b.create_block();
            let after = heads.get(s + 1).copied().unwrap_or(exit);
            let i = b.append_block_param(head, types::I64);
            b.switch_to_block(head);
            let per_iter = (lanes * copies) as i64;
            let end = b.ins().iadd_imm_s(i, per_iter);
            let fits = b.ins().icmp(IntCC::SignedLessThanOrEqual, end, n);
            let after_args: &[BlockArg] = if after == exit { &[] } else { &[BlockArg::Value(i)] };
            b.ins().brif(fits, body, &[BlockArg::Value(i)], after, after_args);

            let i = b.append_block_param(body, types::I64);
            b.switch_to_block(body);
            let bytes = b.ins().ishl_imm_u(i, i64::from(sty.bytes().trailing_zeros()));
            let addrs: Vec<Value> = g.base.clone().into_iter().map(|p| b.ins().iadd(p, bytes)).collect();
            for c in 0..copies {
                let off = (c * lanes) as i64;
                let index = if off == 0 { i } else { b.ins().iadd_imm_s(i, off) };
                g.element(&mut b, lanes, &addrs, (off * i64::from(sty.bytes())) as i32, index)?;
            }
            let next = b.ins().iadd_imm_s(i, per_iter);
            b.ins().jump(head, &[BlockArg::Value(next)]);
        }
        b.switch_to_block(exit);
        // Any bit set in any accumulator: some state was not finite.
        let mut any = None;
        for (&w, &var) in &g.acc {
            let v = b.use_var(var);
            let set = if w == 1 { b.ins().icmp_imm_u(IntCC::NotEqual, v, 0) } else { b.ins().vany_true(v) };
            any = Some(match any {
                None => set,
                Some(a) => b.ins().bor(a, set),
            });
        }
        let any = match any {
            Some(a) => b.ins().uextend(types::I32, a),
            None => b.ins().iconst(types::I32, 0),
        };
        b.ins().store(MemFlagsData::trusted(), any, non_finite, 0);
        b.ins().return_(&[]);
        b.seal_all_blocks();
        b.finalize(module.target_config());
    }
    ctx.set_disasm(listing);
    module.define_function(fid, &mut ctx).map_err(|e| err("codegen", &format!("{e:?}")))?;
    let listing = listing.then(|| {
        let asm = ctx.compiled_code().and_then(|c| c.vcode.clone()).unwrap_or_default();
        format!("; Cranelift IR (optimised)\n{}\n; machine code\n{asm}", ctx.func.display())
    });
    module.clear_context(&mut ctx);
    module.finalize_definitions().map_err(|e| err("link", &e))?;
    let addr = module.get_finalized_function(fid);
    // SAFETY: the function was declared with exactly this signature (pointer, i64, f64,
    // pointer; no return) in the host's default calling convention.
    let func = unsafe { std::mem::transmute::<*const u8, KernelFn>(addr) };
    Ok(Code { module: Some(module), func, vectorised, listing })
}

fn math_fn(op: Op) -> Option<MathFn> {
    Some(match op {
        Op::Exp => MathFn::Exp,
        Op::Log => MathFn::Log,
        Op::Tanh => MathFn::Tanh,
        Op::Sin => MathFn::Sin,
        Op::Cos => MathFn::Cos,
        Op::Exprel => MathFn::Exprel,
        Op::Sigmoid => MathFn::Sigmoid,
        Op::Pow => MathFn::Pow,
        _ => return None,
    })
}

/// A node's value in the element being generated: a float, a mask, or both.
#[derive(Clone, Copy, Default)]
struct Val {
    f: Option<Value>,
    m: Option<Value>,
}

struct Gen<'a> {
    p: &'a Prepared,
    slices: &'a Slices,
    /// F32 or F64.
    sty: Type,
    flags: MemFlagsData,
    /// The slice pointers (for the whole function).
    base: Vec<Value>,
    /// Time in the kernel's precision.
    t: Value,
    rctx: Value,
    math: HashMap<MathFn, FuncRef>,
    random: Option<FuncRef>,
    vals: Vec<Val>,
    /// The non-finite accumulator of each loop width (see the module doc).
    acc: HashMap<usize, Variable>,
}

/// The integer type of the same width and lanes as `sty` x `lanes`.
fn int_bits(sty: Type, lanes: usize) -> Type {
    let i = if sty == types::F64 { types::I64 } else { types::I32 };
    if lanes == 1 { i } else { i.by(lanes as u32).expect("i32x4 / i64x2") }
}

impl Gen<'_> {
    fn vty(&self, lanes: usize) -> Type {
        if lanes == 1 { self.sty } else { self.sty.by(lanes as u32).expect("f32x4 / f64x2") }
    }

    fn fconst(&self, b: &mut FunctionBuilder, lanes: usize, v: f64) -> Value {
        let s = if self.sty == types::F64 { b.ins().f64const(v) } else { b.ins().f32const(v as f32) };
        if lanes == 1 { s } else { b.ins().splat(self.vty(lanes), s) }
    }

    fn float(&mut self, b: &mut FunctionBuilder, lanes: usize, id: NodeId) -> Value {
        let v = self.vals[id.index()];
        if let Some(f) = v.f {
            return f;
        }
        let m = v.m.expect("node generated before its users");
        let one = self.fconst(b, lanes, 1.0);
        let f = if lanes == 1 {
            let zero = self.fconst(b, lanes, 0.0);
            b.ins().select(m, one, zero)
        } else {
            let m = b.ins().bitcast(self.vty(lanes), MemFlagsData::new(), m);
            b.ins().band(m, one)
        };
        self.vals[id.index()].f = Some(f);
        f
    }

    /// The rewrites this kernel shares with the x86 generator.
    fn rw(&self) -> Rewrites<'_> {
        Rewrites { graph: &self.p.graph, f32: self.sty == types::F32 }
    }

    /// A vector mask made by bit operations on compare masks, as a compare again
    /// (all-ones lanes are a NaN, not equal to 0): Cranelift turns a select on a
    /// compare into one blend, on any other mask into three bit operations.
    fn compare_mask(&self, b: &mut FunctionBuilder, lanes: usize, m: Value) -> Value {
        if lanes == 1 {
            return m;
        }
        let f = b.ins().bitcast(self.vty(lanes), MemFlagsData::new(), m);
        let zero = self.fconst(b, lanes, 0.0);
        b.ins().fcmp(FloatCC::NotEqual, f, zero)
    }

    /// Whether a node's value is a condition (0 or 1), held as a mask only.
    fn is_mask(&self, id: NodeId) -> bool {
        matches!(self.vals[id.index()], Val { f: None, m: Some(_) })
    }

    /// The "non-zero" mask of a node (NaN counts as non-zero, as `a != 0.0` in Rust).
    fn mask(&mut self, b: &mut FunctionBuilder, lanes: usize, id: NodeId) -> Value {
        if let Some(m) = self.vals[id.index()].m {
            return m;
        }
        let f = self.float(b, lanes, id);
        let zero = self.fconst(b, lanes, 0.0);
        let m = b.ins().fcmp(FloatCC::NotEqual, f, zero);
        self.vals[id.index()].m = Some(m);
        m
    }

    fn select(&self, b: &mut FunctionBuilder, lanes: usize, m: Value, x: Value, y: Value) -> Value {
        if lanes == 1 {
            b.ins().select(m, x, y)
        } else {
            let m = b.ins().bitcast(self.vty(lanes), MemFlagsData::new(), m);
            b.ins().bitselect(m, x, y)
        }
    }

    /// Generates one element group (`lanes` elements) at `addrs + off`: loads, the whole
    /// graph, stores. `index` is the element index of the first lane (for random draws).
    fn element(&mut self, b: &mut FunctionBuilder, lanes: usize, addrs: &[Value], off: i32, index: Value) -> Result<(), JitError> {
        let p = self.p;
        let ty = self.vty(lanes);
        self.vals = vec![Val::default(); p.graph.len()];
        let (ns, ni) = (self.slices.states, self.slices.inputs);
        let mut draws: HashMap<u32, Value> = HashMap::new();
        for (id, node) in p.graph.nodes() {
            let a = &node.args;
            let fl = |g: &mut Self, b: &mut FunctionBuilder, k: usize| g.float(b, lanes, a[k]);
            let v = match node.op {
                Op::Const(c) => Val { f: Some(self.fconst(b, lanes, c)), m: None },
                Op::State(k) => Val { f: Some(b.ins().load(ty, self.flags, addrs[k as usize], off)), m: None },
                Op::Input(k) => Val { f: Some(b.ins().load(ty, self.flags, addrs[ns + k as usize], off)), m: None },
                Op::Param(k) => {
                    let j = p.per_neuron.get(k as usize).copied().flatten().ok_or_else(|| internal(node.op))?;
                    Val { f: Some(b.ins().load(ty, self.flags, addrs[ns + ni + j], off)), m: None }
                }
                Op::Time => {
                    let t = if lanes == 1 { self.t } else { b.ins().splat(ty, self.t) };
                    Val { f: Some(t), m: None }
                }
                Op::Rand(k) | Op::Randn(k) => {
                    // Scalar code only (random ops force the scalar loop).
                    if lanes != 1 {
                        return Err(internal(node.op));
                    }
                    let v = match draws.get(&k) {
                        Some(v) => *v,
                        None => {
                            let f = self.random.ok_or_else(|| internal(node.op))?;
                            let slot = b.ins().iconst(types::I32, i64::from(k));
                            let normal = b.ins().iconst(types::I32, i64::from(p.normal[k as usize]));
                            let call = b.ins().call(f, &[self.rctx, index, slot, normal]);
                            let d = b.inst_results(call)[0];
                            let d = if self.sty == types::F64 { d } else { b.ins().fdemote(types::F32, d) };
                            draws.insert(k, d);
                            d
                        }
                    };
                    Val { f: Some(v), m: None }
                }
                Op::Add => Val { f: Some({ let (x, y) = (fl(self, b, 0), fl(self, b, 1)); b.ins().fadd(x, y) }), m: None },
                Op::Sub => Val { f: Some({ let (x, y) = (fl(self, b, 0), fl(self, b, 1)); b.ins().fsub(x, y) }), m: None },
                // The product of two conditions (a spike gated by refractoriness) is their
                // `and`: 0/1 times 0/1, exactly, without converting either to a float.
                Op::Mul if self.is_mask(a[0]) && self.is_mask(a[1]) => {
                    let (x, y) = (self.mask(b, lanes, a[0]), self.mask(b, lanes, a[1]));
                    let m = b.ins().band(x, y);
                    Val { f: None, m: Some(self.compare_mask(b, lanes, m)) }
                }
                Op::Mul | Op::Div if self.rw().folded_scale(id).is_some() => {
                    let (x, k) = self.rw().folded_scale(id).expect("checked");
                    Val { f: Some({ let (x, k) = (self.float(b, lanes, x), self.fconst(b, lanes, k)); b.ins().fmul(x, k) }), m: None }
                }
                Op::Mul => Val { f: Some({ let (x, y) = (fl(self, b, 0), fl(self, b, 1)); b.ins().fmul(x, y) }), m: None },
                Op::Div => match self.rw().reciprocal(a[1]) {
                    // f32: a division by a constant is a multiplication by its reciprocal
                    // (within 1.5 ulp of the quotient; f64 keeps the interpreter's division).
                    Some(r) => Val { f: Some({ let (x, r) = (fl(self, b, 0), self.fconst(b, lanes, r)); b.ins().fmul(x, r) }), m: None },
                    None => Val { f: Some({ let (x, y) = (fl(self, b, 0), fl(self, b, 1)); b.ins().fdiv(x, y) }), m: None },
                },
                Op::Neg => Val { f: Some({ let x = fl(self, b, 0); b.ins().fneg(x) }), m: None },
                Op::Abs => Val { f: Some({ let x = fl(self, b, 0); b.ins().fabs(x) }), m: None },
                Op::Sqrt => Val { f: Some({ let x = fl(self, b, 0); b.ins().sqrt(x) }), m: None },
                Op::StopGradient => self.vals[a[0].index()],
                Op::PowI(e) => {
                    let x = fl(self, b, 0);
                    Val { f: Some(self.powi(b, lanes, x, e)), m: None }
                }
                // Rust's f64::min/max: a NaN operand yields the other one.
                Op::Min | Op::Max => {
                    let (x, y) = (fl(self, b, 0), fl(self, b, 1));
                    // `x < y` / `y < x` picks x: in vector code the select is one
                    // minps / maxps (Cranelift matches exactly these forms).
                    let pick_x = if node.op == Op::Min { b.ins().fcmp(FloatCC::LessThan, x, y) } else { b.ins().fcmp(FloatCC::LessThan, y, x) };
                    let r = self.select(b, lanes, pick_x, x, y);
                    // A constant y is never NaN (the refractory clock's floor): no fix-up.
                    let v = if matches!(p.graph.node(a[1]).op, Op::Const(c) if !c.is_nan()) {
                        r
                    } else {
                        let y_nan = b.ins().fcmp(FloatCC::Unordered, y, y);
                        self.select(b, lanes, y_nan, x, r)
                    };
                    Val { f: Some(v), m: None }
                }
                Op::Select => {
                    let c = self.mask(b, lanes, a[0]);
                    let (x, y) = (fl(self, b, 1), fl(self, b, 2));
                    Val { f: Some(self.select(b, lanes, c, x, y)), m: None }
                }
                Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => {
                    let cc = match node.op {
                        Op::Lt => FloatCC::LessThan,
                        Op::Le => FloatCC::LessThanOrEqual,
                        Op::Gt => FloatCC::GreaterThan,
                        Op::Ge => FloatCC::GreaterThanOrEqual,
                        Op::Eq => FloatCC::Equal,
                        // Unordered or not equal: NaN != x is true, as in Rust.
                        _ => FloatCC::NotEqual,
                    };
                    let (x, y) = (fl(self, b, 0), fl(self, b, 1));
                    Val { f: None, m: Some(b.ins().fcmp(cc, x, y)) }
                }
                Op::Heaviside(_) => {
                    let m = match self.rw().threshold(a[0]) {
                        // `x >= c` instead of `(x - c) * k >= 0`: the same mask, two
                        // operations and a constant fewer (see `threshold`).
                        Some((x, c)) => {
                            let (x, c) = (self.float(b, lanes, x), self.fconst(b, lanes, c));
                            b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, c)
                        }
                        None => {
                            let x = fl(self, b, 0);
                            let zero = self.fconst(b, lanes, 0.0);
                            b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, zero)
                        }
                    };
                    Val { f: None, m: Some(m) }
                }
                Op::And | Op::Or => {
                    let (x, y) = (self.mask(b, lanes, a[0]), self.mask(b, lanes, a[1]));
                    let m = if node.op == Op::And { b.ins().band(x, y) } else { b.ins().bor(x, y) };
                    Val { f: None, m: Some(self.compare_mask(b, lanes, m)) }
                }
                Op::Not => {
                    let x = self.mask(b, lanes, a[0]);
                    let m = if lanes == 1 { b.ins().bxor_imm_u(x, 1) } else { b.ins().bnot(x) };
                    Val { f: None, m: Some(self.compare_mask(b, lanes, m)) }
                }
                op => match math_fn(op) {
                    Some(f @ (MathFn::Exp | MathFn::Exprel | MathFn::Sigmoid)) if self.sty == types::F32 => {
                        let x = fl(self, b, 0);
                        let v = match f {
                            MathFn::Exp => self.exp_f32(b, lanes, x),
                            MathFn::Exprel => self.exprel_f32(b, lanes, x),
                            _ => {
                                // 1 / (1 + exp(-x)), as the interpreter.
                                let nx = b.ins().fneg(x);
                                let e = self.exp_f32(b, lanes, nx);
                                let one = self.fconst(b, lanes, 1.0);
                                let d = b.ins().fadd(one, e);
                                b.ins().fdiv(one, d)
                            }
                        };
                        Val { f: Some(v), m: None }
                    }
                    Some(f) if lanes == 1 => {
                        let func = *self.math.get(&f).ok_or_else(|| internal(op))?;
                        let args: Vec<Value> = (0..f.arity()).map(|k| fl(self, b, k)).collect();
                        let call = b.ins().call(func, &args);
                        Val { f: Some(b.inst_results(call)[0]), m: None }
                    }
                    // Dt, Weight, PreSpike and Post are gone after preparation, and
                    // SurrogateGrad after expansion; calls never reach vector code.
                    _ => return Err(internal(op)),
                },
            };
            self.vals[id.index()] = v;
        }
        // The new states, stored, and their sum checked: a sum is finite when every
        // term is (a finite sum that overflows only makes the runtime look, and find
        // nothing), so one `x - x` per element serves all states.
        let mut sum = None;
        for (k, &id) in p.next.iter().enumerate() {
            let v = self.float(b, lanes, id);
            b.ins().store(self.flags, v, addrs[k], off);
            sum = Some(match sum {
                None => v,
                Some(s) => b.ins().fadd(s, v),
            });
        }
        if let Some(sum) = sum {
            let var = self.acc[&lanes];
            let acc = b.use_var(var);
            let d = b.ins().fsub(sum, sum);
            let d = b.ins().bitcast(int_bits(self.sty, lanes), MemFlagsData::new(), d);
            let acc = b.ins().bor(acc, d);
            b.def_var(var, acc);
        }
        if let (Some(s), true) = (p.spike, self.slices.spike) {
            let v = self.float(b, lanes, s);
            let at = addrs[self.slices.count() - 1];
            b.ins().store(self.flags, v, at, off);
        }
        // The inputs to clear, after every load of them.
        if !p.cleared.is_empty() {
            let zero = self.fconst(b, lanes, 0.0);
            for &k in &p.cleared {
                b.ins().store(self.flags, zero, addrs[self.slices.states + k], off);
            }
        }
        Ok(())
    }

    /// `exp(x)` in f32 (Cephes `expf`: x = n ln2 + r, |r| <= ln2/2, a degree-7 polynomial
    /// for exp(r), times 2^n built in the exponent bits): within 2 ulp. x is clamped to
    /// [-87, 88] so 2^n stays a normal float (below, exp is < 2e-38 anyway).
    fn exp_f32(&self, b: &mut FunctionBuilder, lanes: usize, x: Value) -> Value {
        let c = |g: &Self, b: &mut FunctionBuilder, v: f64| g.fconst(b, lanes, v);
        let (lo, hi) = (c(self, b, EXP_RANGE.0), c(self, b, EXP_RANGE.1));
        let x = b.ins().fmax(x, lo);
        let x = b.ins().fmin(x, hi);
        let log2e = c(self, b, std::f64::consts::LOG2_E);
        let xl = b.ins().fmul(x, log2e);
        let n = b.ins().nearest(xl);
        // r = x - n ln2 in two steps (ln2 = 0.693359375 - 2.12194440e-4, exact product).
        let (c1, c2) = (c(self, b, EXP_LN2.0), c(self, b, EXP_LN2.1));
        let t = b.ins().fmul(n, c1);
        let r = b.ins().fsub(x, t);
        let t = b.ins().fmul(n, c2);
        let r = b.ins().fsub(r, t);
        let mut p = c(self, b, EXP_COEF[0]);
        for &k in &EXP_COEF[1..] {
            let m = b.ins().fmul(p, r);
            let k = c(self, b, k);
            p = b.ins().fadd(m, k);
        }
        let r2 = b.ins().fmul(r, r);
        let p = b.ins().fmul(p, r2);
        let p = b.ins().fadd(p, r);
        let one = c(self, b, 1.0);
        let p = b.ins().fadd(p, one);
        let ity = if lanes == 1 { types::I32 } else { types::I32.by(lanes as u32).expect("i32x4") };
        let ni = b.ins().fcvt_to_sint_sat(ity, n);
        let bias = b.ins().iconst(types::I32, 127);
        let bias = if lanes == 1 { bias } else { b.ins().splat(ity, bias) };
        let e = b.ins().iadd(ni, bias);
        let e = b.ins().ishl_imm_u(e, 23);
        let scale = b.ins().bitcast(self.vty(lanes), MemFlagsData::new(), e);
        b.ins().fmul(p, scale)
    }

    /// `exprel(x) = (exp(x) - 1) / x` in f32: the Taylor series `sum x^k / (k+1)!` up to
    /// k = 8 where |x| < 0.5 (truncation < 1e-9, and no cancellation), else from `exp`.
    fn exprel_f32(&self, b: &mut FunctionBuilder, lanes: usize, x: Value) -> Value {
        let c = |g: &Self, b: &mut FunctionBuilder, v: f64| g.fconst(b, lanes, v);
        let inv = exprel_coef();
        let mut s = c(self, b, inv[8]);
        for &k in inv[..8].iter().rev() {
            let m = b.ins().fmul(s, x);
            let k = c(self, b, k);
            s = b.ins().fadd(m, k);
        }
        let e = self.exp_f32(b, lanes, x);
        let one = c(self, b, 1.0);
        let em1 = b.ins().fsub(e, one);
        let big = b.ins().fdiv(em1, x);
        let ax = b.ins().fabs(x);
        let half = c(self, b, 0.5);
        let small = b.ins().fcmp(FloatCC::LessThan, ax, half);
        self.select(b, lanes, small, s, big)
    }

    /// `x^e` in the interpreter's order of multiplications ([`crate::ir::interp::powi`]).
    fn powi(&self, b: &mut FunctionBuilder, lanes: usize, x: Value, e: i32) -> Value {
        let mut m = e.unsigned_abs();
        if m == 0 {
            return self.fconst(b, lanes, 1.0);
        }
        let (mut base, mut acc): (Value, Option<Value>) = (x, None);
        while m > 0 {
            if m & 1 == 1 {
                acc = Some(match acc {
                    None => base,
                    Some(a) => b.ins().fmul(a, base),
                });
            }
            m >>= 1;
            if m > 0 {
                base = b.ins().fmul(base, base);
            }
        }
        let r = acc.expect("m > 0 has a set bit");
        if e < 0 {
            let one = self.fconst(b, lanes, 1.0);
            b.ins().fdiv(one, r)
        } else {
            r
        }
    }
}

fn internal(op: Op) -> JitError {
    JitError(format!("internal: `{}` left in a prepared step", op.name()))
}
