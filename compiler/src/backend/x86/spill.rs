//! Spills for a body with more values live at once than registers (AVX2's twelve):
//! a pass over the straight-line program that makes room where a value or a reload
//! needs a register by storing the live value read again the latest (Belady's choice)
//! to a stack slot, and reloads it before its next reader, which reads the reloaded
//! copy. After it, no point of the program has more than `regs` values live, so the
//! allocator (`emit::allocate`) never runs out. Values are never written twice, so a
//! value spilled once keeps its slot for any later eviction.

use super::lower::{Inst, Program, last_readers};

/// Rewrites `prog` so that at most `regs` values are live at once (the step's time, in
/// a register of its own, is not counted), with [`Inst::Spill`] and [`Inst::Reload`];
/// the number of stack slots it uses is [`Program::slots`]. `last`: each value's last
/// reader (`lower::live`). Returns the last readers of the new program.
pub(super) fn fit(prog: &mut Program, last: &[usize], regs: usize) -> Vec<usize> {
    let n = prog.insts.len();
    // Each value's readers, in order.
    let mut uses: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (k, i) in prog.insts.iter().enumerate() {
        for r in i.reads() {
            if uses[r as usize].last() != Some(&k) {
                uses[r as usize].push(k);
            }
        }
    }
    let next_use = |v: usize, k: usize| uses[v].iter().copied().find(|&u| u >= k).unwrap_or(usize::MAX);
    let mut out: Vec<Inst> = Vec::with_capacity(n);
    // Each original value's name in `out`, whether it is in a register, and its slot.
    let mut name = vec![u32::MAX; n];
    let mut in_reg: Vec<usize> = Vec::new();
    let mut slot: Vec<Option<usize>> = vec![None; n];
    let mut slots = 0;
    let counted = |i: &Inst| i.has_result() && !matches!(i, Inst::Time);
    for k in 0..n {
        let mut inst = prog.insts[k].clone();
        let reads = inst.reads();
        // Room for one more value: evict those read again the latest (not by `k`).
        let make_room = |out: &mut Vec<Inst>, in_reg: &mut Vec<usize>, slot: &mut Vec<Option<usize>>, slots: &mut usize, name: &[u32]| {
            while in_reg.len() >= regs {
                let (at, &u) = in_reg.iter().enumerate().filter(|(_, u)| !reads.contains(&(**u as u32))).max_by_key(|(_, u)| next_use(**u, k)).expect("more registers than one instruction reads");
                in_reg.swap_remove(at);
                if slot[u].is_none() {
                    slot[u] = Some(*slots);
                    *slots += 1;
                    out.push(Inst::Spill(slot[u].expect("given"), name[u]));
                }
            }
        };
        for &r in &reads {
            let r = r as usize;
            if counted(&prog.insts[r]) && !in_reg.contains(&r) {
                make_room(&mut out, &mut in_reg, &mut slot, &mut slots, &name);
                name[r] = out.len() as u32;
                out.push(Inst::Reload(slot[r].expect("a value out of registers was spilled")));
                in_reg.push(r);
            }
        }
        // Operands read for the last time free their registers before the result.
        in_reg.retain(|&v| last[v] != k);
        if counted(&inst) {
            make_room(&mut out, &mut in_reg, &mut slot, &mut slots, &name);
            in_reg.push(k);
        }
        inst.rename_reads(&name);
        name[k] = out.len() as u32;
        out.push(inst);
    }
    prog.insts = out;
    prog.slots = slots;
    last_readers(prog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::x86::lower::{Bin, Opd, last_readers, live};

    /// The values a program stores (slot, value), run on one lane of f64s with
    /// `load slice j` = j + 1; and the most values live at once.
    fn run(prog: &Program, last: &[usize]) -> (Vec<(usize, u64)>, usize) {
        let (mut vals, mut stack, mut stored) = (vec![0.0f64; prog.insts.len()], vec![0.0; prog.slots], Vec::new());
        let (mut live_now, mut most) = (0usize, 0);
        let get = |vals: &[f64], o: Opd| match o {
            Opd::V(v) => vals[v as usize],
            Opd::K(bits) => f64::from_bits(bits),
        };
        for (k, i) in prog.insts.iter().enumerate() {
            let mut reads = i.reads();
            reads.sort_unstable();
            reads.dedup();
            live_now -= reads.iter().filter(|&&r| last[r as usize] == k).count();
            vals[k] = match *i {
                Inst::Load(j) => (j + 1) as f64,
                Inst::Bin(Bin::Add, x, y) => get(&vals, x) + get(&vals, y),
                Inst::Bin(Bin::Mul, x, y) => get(&vals, x) * get(&vals, y),
                Inst::Store(j, x) => {
                    stored.push((j, vals[x as usize].to_bits()));
                    0.0
                }
                Inst::Spill(s, x) => {
                    stack[s] = vals[x as usize];
                    0.0
                }
                Inst::Reload(s) => stack[s],
                ref other => unreachable!("{other:?}"),
            };
            if i.has_result() {
                live_now += 1;
                most = most.max(live_now);
            }
        }
        (stored, most)
    }

    /// Twenty loads, read back in the reverse order into products and sums, stored: at
    /// most `regs` values live once fitted, the same values stored as before.
    #[test]
    fn a_program_fitted_to_few_registers_stores_what_it_did() {
        let mut prog = Program::default();
        for j in 0..20 {
            prog.insts.push(Inst::Load(j));
        }
        let mut push = |i: Inst| {
            prog.insts.push(i);
            (prog.insts.len() - 1) as u32
        };
        let mut acc = 19u32;
        for v in (0..19u32).rev() {
            let m = push(Inst::Bin(Bin::Mul, Opd::V(v), Opd::K(1.5f64.to_bits())));
            acc = push(Inst::Bin(Bin::Add, Opd::V(acc), Opd::V(m)));
            if v % 5 == 0 {
                push(Inst::Store(v as usize, acc));
            }
        }
        prog.insts.push(Inst::Store(99, acc));
        let last = live(&mut prog, false);
        let (want, before) = run(&prog, &last);
        assert!(before > 12, "{before} live at most: nothing to spill");
        for regs in [3, 4, 12] {
            let mut fitted = prog.clone();
            let last = fit(&mut fitted, &last_readers(&prog), regs);
            let (got, most) = run(&fitted, &last);
            assert_eq!(got, want, "{regs} registers");
            assert!(most <= regs, "{most} live with {regs} registers");
            assert!(fitted.slots > 0 && fitted.insts.iter().any(|i| matches!(i, Inst::Reload(_))));
        }
    }
}
