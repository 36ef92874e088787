//! Checking a `conv(...)` or `pool(...)` connection: its sizes, that they match the
//! populations it joins, and the clauses that mean nothing for a shared kernel.
//!
//! A population joined by one is an image laid out channel-major, `(c, y, x)` at
//! index `(c * height + y) * width + x`, so flattening is no projection at all: a dense
//! connection from a conv layer reads it flat.

use super::*;

/// The shape of a convolution (or of average pooling, a fixed per-channel convolution)
/// between two image-shaped populations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Average pooling: channel `c` reads only channel `c`, one weight for all.
    pub pool: bool,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvShape {
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel) / self.stride + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel) / self.stride + 1
    }

    pub fn n_pre(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn n_post(&self) -> usize {
        self.out * self.out_height() * self.out_width()
    }

    /// The shared weights: `out x (channels * kernel * kernel)` for a convolution,
    /// `1 x 1` for pooling (one weight, every window averaged alike).
    pub fn kernel_dim(&self) -> (usize, usize) {
        if self.pool { (1, 1) } else { (self.out, self.channels * self.kernel * self.kernel) }
    }
}

/// The settings each kind takes, with their defaults (`None`: required).
const CONV_ARGS: &[(&str, Option<usize>)] =
    &[("channels", Some(1)), ("height", None), ("width", None), ("out", None), ("kernel", None), ("stride", Some(1)), ("padding", Some(0))];
const POOL_ARGS: &[(&str, Option<usize>)] = &[("channels", Some(1)), ("height", None), ("width", None), ("kernel", None), ("stride", None), ("padding", Some(0))];

impl NetCx<'_, '_> {
    /// `conv(...)` / `pool(...)` between `from` and `to`: whole positive sizes, a kernel
    /// that fits the padded image, and populations of the sizes the shape gives.
    pub(super) fn conv_topology(&mut self, c: &ast::Connect, pool: bool, args: &[ast::Setting], from: Source, to: usize) -> Option<Topology> {
        let what = if pool { "pool" } else { "conv" };
        let allowed = if pool { POOL_ARGS } else { CONV_ARGS };
        let mut vals: Vec<Option<usize>> = vec![None; allowed.len()];
        for a in args {
            let Some(k) = allowed.iter().position(|(n, _)| *n == a.name.name) else {
                let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
                self.diags.push(
                    Diagnostic::error("E0440", a.name.span, format!("`{what}` has no setting `{}`", a.name.name)).with_label("unknown setting").with_help(format!("`{what}` takes {}", names.join(", "))),
                );
                return None;
            };
            if vals[k].is_some() {
                self.diags.push(Diagnostic::error("E0440", a.name.span, format!("`{}` is given twice", a.name.name)).with_label("repeated setting"));
                return None;
            }
            let (v, d) = self.constant(&a.value)?;
            let least = if a.name.name == "padding" { 0.0 } else { 1.0 };
            if !d.is_dimensionless() || v < least || v.fract() != 0.0 || v > f64::from(u32::MAX) {
                self.diags.push(
                    Diagnostic::error("E0440", a.value.span, format!("`{}` must be a whole number of at least {least}", a.name.name))
                        .with_label(if d.is_dimensionless() { format!("found {v}") } else { format!("found dimension {d}") }),
                );
                return None;
            }
            vals[k] = Some(v as usize);
        }
        let get = |n: &str| allowed.iter().position(|(m, _)| *m == n).and_then(|k| vals[k].or(allowed[k].1));
        if let Some((n, _)) = allowed.iter().find(|(n, d)| d.is_none() && get(n).is_none() && !(pool && *n == "stride")) {
            self.diags.push(Diagnostic::error("E0440", c.span, format!("`{what}` needs `{n}`")).with_label(format!("no `{n} = ...`")));
            return None;
        }
        let kernel = get("kernel").expect("required");
        let shape = ConvShape {
            pool,
            channels: get("channels").expect("defaulted"),
            height: get("height").expect("required"),
            width: get("width").expect("required"),
            out: if pool { get("channels").expect("defaulted") } else { get("out").expect("required") },
            kernel,
            // Pooling windows tile the image unless told otherwise.
            stride: get("stride").unwrap_or(kernel),
            padding: get("padding").expect("defaulted"),
        };
        if shape.kernel > shape.height.min(shape.width) + 2 * shape.padding {
            self.diags.push(
                Diagnostic::error("E0440", c.span, format!("a {k}x{k} kernel does not fit a {}x{} image padded by {}", shape.height, shape.width, shape.padding, k = shape.kernel))
                    .with_label("kernel larger than the image"),
            );
            return None;
        }
        let n_from = match from {
            Source::Input(i) => self.inputs[i].size,
            Source::Pop(p) => self.pops[p].size,
        };
        let n_to = self.pops[to].size;
        if n_from != shape.n_pre() || n_to != shape.n_post() {
            let (oh, ow) = (shape.out_height(), shape.out_width());
            self.diags.push(
                Diagnostic::error("E0441", c.span, format!("this `{what}` joins {} to {} neurons, the populations have {n_from} and {n_to}", shape.n_pre(), shape.n_post()))
                    .with_label(format!("{}x{}x{} -> {}x{oh}x{ow} (channels x height x width)", shape.channels, shape.height, shape.width, shape.out))
                    .with_help(format!("size the source {} and the target {}", shape.n_pre(), shape.n_post())),
            );
            return None;
        }
        Some(Topology::Conv(shape))
    }

    /// Clauses a shared kernel cannot honour: a sign, `no_self`, an adapter, a delay per
    /// synapse, an initialiser reading the synapse's indices, and training a pool.
    pub(super) fn conv_clauses(&mut self, c: &ast::Connect, shape: &ConvShape, init: Option<&SynInit>, delay: Option<&SynInit>, trainable: bool) -> Option<()> {
        let at = |kws: &[&str]| c.clauses.iter().find(|sc| kws.contains(&sc.keyword)).map_or(c.span, |sc| sc.span);
        let what = if shape.pool { "pool" } else { "conv" };
        let bad = if let Some(sc) = c.clauses.iter().find(|sc| matches!(sc.clause, ConnClause::Sign(_) | ConnClause::NoSelf | ConnClause::Adapter(_))) {
            Some((sc.span, format!("`{}` does not apply to a `{what}` connection", sc.keyword), "its weights are a shared kernel"))
        } else if matches!(init, Some(SynInit::Expr(_))) {
            Some((at(&["init", "weight"]), format!("a `{what}` kernel is drawn from an initialiser, not an expression of the indices"), "one value per kernel entry, not per synapse"))
        } else if delay.is_some_and(|d| d.constant().is_none()) {
            Some((at(&["delay"]), format!("a `{what}` connection has one delay for all its synapses"), "a delay per synapse"))
        } else if shape.pool && trainable {
            Some((at(&["trainable"]), "average pooling is fixed: a `pool` cannot be `trainable`".to_string(), "use `conv(...)` for a trained kernel"))
        } else {
            None
        };
        if let Some((span, msg, label)) = bad {
            self.diags.push(Diagnostic::error("E0442", span, msg).with_label(label));
            return None;
        }
        Some(())
    }
}
