//! Physical dimensions and SI units.
//!
//! A [`Dim`] is a vector of exponents over the SI base dimensions plus one symbolic
//! slot, `[w]`, the dimension of a synapse's weight before the synapse is connected.
//! Exponents are stored doubled so that `sqrt` and white noise (`xi`, s^-1/2) are exact.

use std::fmt;

/// Index of each base dimension in [`Dim`].
const M: usize = 0; // metre
const KG: usize = 1; // kilogram
const S: usize = 2; // second
const A: usize = 3; // ampere
const K: usize = 4; // kelvin
const MOL: usize = 5; // mole
const CD: usize = 6; // candela
/// The symbolic weight dimension of a synapse model (solved when it is connected).
pub const W: usize = 7;
const N: usize = 8;

/// Physical dimension: exponents (times two) of m, kg, s, A, K, mol, cd and `[w]`.
/// Exponents are exact: the front end refuses any beyond [`Dim::MAX_EXP`] (see
/// [`Dim::checked_mul`], [`Dim::checked_powi`]), so arithmetic on them never overflows.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Dim(pub [i32; N]);

impl Dim {
    pub const ONE: Dim = Dim([0; N]);
    /// The largest exponent (in absolute value) a dimension may have: `m^1000`.
    pub const MAX_EXP: i32 = 1000;

    const fn base(i: usize, exp: i32) -> Dim {
        let mut d = [0; N];
        d[i] = 2 * exp;
        Dim(d)
    }

    pub const TIME: Dim = Dim::base(S, 1);
    pub const WEIGHT: Dim = Dim::base(W, 1);

    pub fn is_dimensionless(self) -> bool {
        self == Dim::ONE
    }

    pub fn mul(self, o: Dim) -> Dim {
        let mut d = self.0;
        for (x, y) in d.iter_mut().zip(o.0) {
            *x = x.saturating_add(y);
        }
        Dim(d)
    }

    pub fn div(self, o: Dim) -> Dim {
        self.mul(o.powi(-1))
    }

    pub fn powi(self, e: i32) -> Dim {
        Dim(self.0.map(|x| x.saturating_mul(e)))
    }

    /// `self * o`, or `None` if an exponent would exceed [`Dim::MAX_EXP`].
    pub fn checked_mul(self, o: Dim) -> Option<Dim> {
        Dim::bounded(std::array::from_fn(|i| i64::from(self.0[i]) + i64::from(o.0[i])))
    }

    /// `self / o`, or `None` if an exponent would exceed [`Dim::MAX_EXP`].
    pub fn checked_div(self, o: Dim) -> Option<Dim> {
        Dim::bounded(std::array::from_fn(|i| i64::from(self.0[i]) - i64::from(o.0[i])))
    }

    /// `self ^ e`, or `None` if an exponent would exceed [`Dim::MAX_EXP`].
    pub fn checked_powi(self, e: i64) -> Option<Dim> {
        Dim::bounded(self.0.map(|x| i64::from(x).saturating_mul(e)))
    }

    /// `self ^ (half / 2)`: `None` if an exponent stops being a multiple of one half or
    /// would exceed [`Dim::MAX_EXP`].
    pub fn checked_pow_halves(self, half: i64) -> Option<Dim> {
        let doubled = self.0.map(|x| i64::from(x).saturating_mul(half));
        if doubled.iter().any(|x| x % 2 != 0) {
            return None;
        }
        Dim::bounded(doubled.map(|x| x / 2))
    }

    /// Doubled exponents as a dimension, if each is within [`Dim::MAX_EXP`].
    fn bounded(doubled: [i64; N]) -> Option<Dim> {
        let max = 2 * i64::from(Dim::MAX_EXP);
        doubled.iter().all(|x| x.abs() <= max).then(|| Dim(doubled.map(|x| x as i32)))
    }

    /// `sqrt`, if every exponent stays a multiple of one half.
    pub fn sqrt(self) -> Option<Dim> {
        self.0.iter().all(|x| x % 2 == 0).then(|| Dim(self.0.map(|x| x / 2)))
    }

    /// The exponent of the symbolic weight slot (doubled).
    pub fn weight_power(self) -> i32 {
        self.0[W]
    }

    /// Replaces the symbolic weight dimension `[w]` by `w`.
    pub fn substitute_weight(self, w: Dim) -> Option<Dim> {
        let k = self.0[W];
        if k == 0 {
            return Some(self);
        }
        if k % 2 != 0 {
            return None;
        }
        let mut rest = self;
        rest.0[W] = 0;
        Some(rest.mul(w.powi((k / 2) as i32)))
    }

    /// Solves `self == other` for `[w]`, where the two differ in their weight power.
    pub fn solve_weight(self, other: Dim) -> Option<Dim> {
        let k = self.0[W] - other.0[W];
        if k == 0 || k % 2 != 0 {
            return None;
        }
        let k = k / 2;
        let mut lhs = self;
        lhs.0[W] = 0;
        let mut rhs = other;
        rhs.0[W] = 0;
        // w^k * lhs == rhs  =>  w = (rhs / lhs)^(1/k)
        let q = rhs.div(lhs);
        if q.0.iter().all(|x| x % k == 0) {
            Some(Dim(q.0.map(|x| x / k)))
        } else {
            None
        }
    }
}

/// A unit: its scale to SI and its dimension. `mV` = (1e-3, voltage).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unit {
    pub scale: f64,
    pub dim: Dim,
}

const fn d(m: i32, kg: i32, s: i32, a: i32) -> Dim {
    let mut x = [0; N];
    x[M] = 2 * m;
    x[KG] = 2 * kg;
    x[S] = 2 * s;
    x[A] = 2 * a;
    Dim(x)
}

pub const VOLT: Dim = d(2, 1, -3, -1);
pub const AMPERE: Dim = d(0, 0, 0, 1);
pub const SIEMENS: Dim = d(-2, -1, 3, 2);
pub const FARAD: Dim = d(-2, -1, 4, 2);
pub const OHM: Dim = d(2, 1, -3, -2);
pub const COULOMB: Dim = d(0, 0, 1, 1);
pub const HERTZ: Dim = d(0, 0, -1, 0);
pub const METRE: Dim = d(1, 0, 0, 0);
pub const KILOGRAM: Dim = d(0, 1, 0, 0);
pub const WATT: Dim = d(2, 1, -3, 0);
pub const JOULE: Dim = d(2, 1, -2, 0);

/// Base unit names (no prefix) with their scale and dimension.
const BASE_UNITS: &[(&str, f64, Dim)] = &[
    ("s", 1.0, Dim::TIME),
    ("second", 1.0, Dim::TIME),
    ("V", 1.0, VOLT),
    ("volt", 1.0, VOLT),
    ("A", 1.0, AMPERE),
    ("amp", 1.0, AMPERE),
    ("S", 1.0, SIEMENS),
    ("siemens", 1.0, SIEMENS),
    ("F", 1.0, FARAD),
    ("farad", 1.0, FARAD),
    ("ohm", 1.0, OHM),
    ("C", 1.0, COULOMB),
    ("Hz", 1.0, HERTZ),
    ("m", 1.0, METRE),
    ("metre", 1.0, METRE),
    ("meter", 1.0, METRE),
    ("g", 1e-3, KILOGRAM),
    ("W", 1.0, WATT),
    ("J", 1.0, JOULE),
    ("K", 1.0, Dim::base(K, 1)),
    ("mol", 1.0, Dim::base(MOL, 1)),
    // molar = mol / litre = 1000 mol / m^3
    ("M", 1e3, Dim([-6, 0, 0, 0, 0, 2, 0, 0])),
    ("cd", 1.0, Dim::base(CD, 1)),
];

const PREFIXES: &[(&str, f64)] = &[
    ("f", 1e-15),
    ("p", 1e-12),
    ("n", 1e-9),
    ("u", 1e-6),
    ("m", 1e-3),
    ("c", 1e-2),
    ("d", 1e-1),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
];

/// Looks up a unit name such as `ms`, `mV`, `nS`, `Mohm`, `um2` (area) or `Hz`.
pub fn lookup(name: &str) -> Option<Unit> {
    let base = |n: &str| BASE_UNITS.iter().find(|(b, _, _)| *b == n).map(|(_, s, d)| Unit { scale: *s, dim: *d });
    // Brian-style area/volume suffixes for lengths: cm2, um2, m3.
    if let Some(stem) = name.strip_suffix('2').or_else(|| name.strip_suffix('3')) {
        let p = if name.ends_with('2') { 2 } else { 3 };
        if let Some(u) = lookup(stem).filter(|u| u.dim == METRE) {
            return Some(Unit { scale: u.scale.powi(p), dim: u.dim.powi(p) });
        }
        return None;
    }
    if let Some(u) = base(name) {
        return Some(u);
    }
    for (p, f) in PREFIXES {
        if let Some(rest) = name.strip_prefix(p) {
            // Prefixes attach to the short symbols only (`mV`, not `mvolt`).
            if rest.len() <= 3 {
                if let Some(u) = base(rest) {
                    return Some(Unit { scale: u.scale * f, dim: u.dim });
                }
            }
        }
    }
    None
}

/// Every unit name `lookup` accepts in its commonest forms, for suggestions.
pub fn common_names() -> Vec<String> {
    let mut out: Vec<String> = BASE_UNITS.iter().map(|(n, _, _)| n.to_string()).collect();
    for b in ["s", "V", "A", "S", "F", "ohm", "Hz", "m", "M"] {
        for (p, _) in PREFIXES {
            out.push(format!("{p}{b}"));
        }
    }
    out
}

/// Named dimensions used to print a [`Dim`] the way people write units.
const NAMED: &[(&str, Dim)] = &[
    ("s", Dim::TIME),
    ("V", VOLT),
    ("A", AMPERE),
    ("S", SIEMENS),
    ("F", FARAD),
    ("ohm", OHM),
    ("C", COULOMB),
    ("m", METRE),
    ("kg", KILOGRAM),
    ("mol", Dim::base(MOL, 1)),
    ("K", Dim::base(K, 1)),
    ("W", WATT),
    ("J", JOULE),
    ("cd", Dim::base(CD, 1)),
];

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Dim::ONE {
            return write!(f, "1 (dimensionless)");
        }
        let mut phys = *self;
        phys.0[W] = 0;
        let wp = self.0[W];
        let wtxt = match wp {
            0 => String::new(),
            2 => "[w]".into(),
            _ => format!("[w]^{}", fmt_exp(wp)),
        };
        let ptxt = physical_name(phys);
        match (ptxt.is_empty(), wtxt.is_empty()) {
            (_, true) => write!(f, "{ptxt}"),
            (true, false) => write!(f, "{wtxt}"),
            _ => write!(f, "{wtxt}*{ptxt}"),
        }
    }
}

impl fmt::Debug for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dim({self})")
    }
}

fn fmt_exp(doubled: i32) -> String {
    if doubled % 2 == 0 { (doubled / 2).to_string() } else { format!("{}/2", doubled) }
}

/// `V`, `V/s`, `S*V`, `1/s`, else the SI base form (`m^2*kg*s^-3`).
fn physical_name(dim: Dim) -> String {
    if dim == Dim::ONE {
        return String::new();
    }
    let pow = |n: &str, e: i32| if e == 1 { n.to_string() } else { format!("{n}^{e}") };
    // A named unit itself before powers of others (ohm, not 1/S).
    for e in [1, 2, 3, -1, -2] {
        for (n, nd) in NAMED {
            if nd.powi(e) == dim {
                return if e < 0 { format!("1/{}", pow(n, -e)) } else { pow(n, e) };
            }
        }
    }
    for (a, ad) in NAMED {
        for (b, bd) in NAMED {
            if a == b {
                continue;
            }
            if ad.div(*bd) == dim {
                return format!("{a}/{b}");
            }
            if ad.mul(*bd) == dim && a < b {
                return format!("{a}*{b}");
            }
            if ad.div(bd.powi(2)) == dim {
                return format!("{a}/{b}^2");
            }
        }
    }
    let names = ["m", "kg", "s", "A", "K", "mol", "cd"];
    let mut parts = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let e = dim.0[i];
        if e != 0 {
            parts.push(if e == 2 { n.to_string() } else { format!("{n}^{}", fmt_exp(e)) });
        }
    }
    parts.join("*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_scales() {
        let ms = lookup("ms").unwrap();
        assert_eq!(ms.dim, Dim::TIME);
        assert!((ms.scale - 1e-3).abs() < 1e-18);
        assert_eq!(lookup("mV").unwrap().dim, VOLT);
        assert!((lookup("pF").unwrap().scale - 1e-12).abs() < 1e-27);
        assert!((lookup("Mohm").unwrap().scale - 1e6).abs() < 1e-6);
        assert_eq!(lookup("um2").unwrap().dim, METRE.powi(2));
        assert!((lookup("cm2").unwrap().scale - 1e-4).abs() < 1e-18);
        assert!(lookup("tau").is_none());
        assert!(lookup("msec").is_none());
    }

    #[test]
    fn dimension_algebra() {
        // Ohm's law and the membrane equation: S*V = A, A/F = V/s.
        assert_eq!(SIEMENS.mul(VOLT), AMPERE);
        assert_eq!(AMPERE.div(FARAD), VOLT.div(Dim::TIME));
        assert_eq!(Dim::TIME.powi(-1), HERTZ);
        assert_eq!(HERTZ.sqrt().unwrap().powi(2), HERTZ);
    }

    #[test]
    fn printing() {
        assert_eq!(VOLT.to_string(), "V");
        assert_eq!(VOLT.div(Dim::TIME).to_string(), "V/s");
        assert_eq!(HERTZ.to_string(), "1/s");
        assert_eq!(SIEMENS.mul(VOLT).to_string(), "A");
        assert_eq!(Dim::ONE.to_string(), "1 (dimensionless)");
        assert_eq!(Dim::WEIGHT.mul(SIEMENS).to_string(), "[w]*S");
        assert_eq!(HERTZ.sqrt().unwrap().to_string(), "s^-1/2");
        assert_eq!(OHM.to_string(), "ohm");
    }

    #[test]
    fn weight_solving() {
        // g: nS, g += w  =>  w = S
        let w = Dim::WEIGHT.solve_weight(SIEMENS).unwrap();
        assert_eq!(w, SIEMENS);
        // w * pre = port (A)  =>  w = A
        assert_eq!(Dim::WEIGHT.substitute_weight(AMPERE), Some(AMPERE));
        assert_eq!(Dim::WEIGHT.mul(VOLT).solve_weight(AMPERE), Some(AMPERE.div(VOLT)));
    }
}
