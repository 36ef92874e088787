//! What the Cranelift backend adds to the shared specialisation
//! ([`specialise`](crate::backend::specialise)): whether the element loop can run on
//! vectors.

use crate::backend::specialise::Specialised;
use crate::ir::Op;

/// Whether the step needs a call per element (transcendental or random draw); such
/// steps are compiled as a scalar loop. With `inline_exp` (f32 kernels), `exp`,
/// `exprel` and `sigmoid` are generated inline and need no call.
pub(super) fn needs_calls(p: &Specialised, inline_exp: bool) -> bool {
    p.graph.nodes().any(|(_, n)| {
        use Op::*;
        match n.op {
            Exp | Exprel | Sigmoid => !inline_exp,
            Log | Tanh | Sin | Cos | Pow | Rand(_) | Randn(_) => true,
            _ => false,
        }
    })
}
