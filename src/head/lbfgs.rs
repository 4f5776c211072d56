//! Limited-memory BFGS with a strong-Wolfe line search (Nocedal & Wright, algorithms 7.4, 3.5,
//! 3.6), over a space with a metric: every vector `v` travels with its image `M v`, and
//! `⟨u, v⟩ = u · M v` (the identity for the primal form).
//!
//! It knows nothing about the head: [`Objective`] is all it sees of a problem.
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How one L-BFGS run ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SolverStats {
    /// Iterations taken.
    pub iterations: usize,
    /// Objective and gradient evaluations.
    pub evaluations: usize,
    /// Final objective (per-sample mean).
    pub objective: f64,
    /// Largest absolute gradient component at the end.
    pub grad_max: f32,
    /// Whether the gradient tolerance (or the relative-decrease test) was met.
    pub converged: bool,
}

const MEMORY: usize = 10;
const C1: f64 = 1e-4;
const C2: f64 = 0.9;
const MAX_LINE_EVALS: usize = 20;
/// Relative decrease of the objective below which the run stops (scipy's `factr=1e7`).
const FTOL: f64 = 1e7 * f64::EPSILON;

/// A smooth objective, seen along search lines.
pub(super) trait Objective {
    /// Value at `x`; writes the gradient `g` and its image `mg`.
    fn start(&mut self, x: &[f32], g: &mut [f32], mg: &mut [f32]) -> f64;
    /// The next line: from the current point along `d` (image `md`).
    fn line(&mut self, d: &[f32], md: &[f32]);
    /// Value and slope at `current + step · d`.
    fn at(&mut self, step: f64) -> (f64, f64);
    /// Moves to the point last passed to `at`: writes it to `x`, its gradient and image.
    fn accept(&mut self, x: &mut [f32], g: &mut [f32], mg: &mut [f32]);
    /// The largest absolute component of the gradient, or an estimate above `tol` when it is
    /// certainly above it.
    fn gradient_max(&mut self, g: &[f32], mg: &[f32], tol: f64) -> f32;
}

/// A plain function `f(x, grad) -> value` with the identity metric.
pub(super) struct Closure<F> {
    f: F,
    x: Vec<f32>,
    d: Vec<f32>,
    xt: Vec<f32>,
    gt: Vec<f32>,
}

impl<F: FnMut(&[f32], &mut [f32]) -> f64> Closure<F> {
    pub(super) fn new(f: F) -> Self {
        Closure {
            f,
            x: Vec::new(),
            d: Vec::new(),
            xt: Vec::new(),
            gt: Vec::new(),
        }
    }
}

impl<F: FnMut(&[f32], &mut [f32]) -> f64> Objective for Closure<F> {
    fn start(&mut self, x: &[f32], g: &mut [f32], mg: &mut [f32]) -> f64 {
        self.x = x.to_vec();
        self.xt = x.to_vec();
        self.gt = vec![0.0; x.len()];
        self.d = vec![0.0; x.len()];
        let f = (self.f)(x, g);
        mg.copy_from_slice(g);
        f
    }

    fn line(&mut self, d: &[f32], _md: &[f32]) {
        self.d.copy_from_slice(d);
    }

    fn at(&mut self, step: f64) -> (f64, f64) {
        let t = step as f32;
        for ((o, x), d) in self.xt.iter_mut().zip(&self.x).zip(&self.d) {
            *o = x + t * d;
        }
        let f = (self.f)(&self.xt, &mut self.gt);
        (f, dot(&self.gt, &self.d))
    }

    fn accept(&mut self, x: &mut [f32], g: &mut [f32], mg: &mut [f32]) {
        std::mem::swap(&mut self.x, &mut self.xt);
        x.copy_from_slice(&self.x);
        g.copy_from_slice(&self.gt);
        mg.copy_from_slice(&self.gt);
    }

    fn gradient_max(&mut self, g: &[f32], _mg: &[f32], _tol: f64) -> f32 {
        max_abs(g)
    }
}

pub(super) fn dot(a: &[f32], b: &[f32]) -> f64 {
    // Four partial sums: vectorises, and is more accurate than one running sum.
    let mut acc = [0.0f64; 4];
    let (ca, ra) = a.split_at(a.len() / 4 * 4);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(4).zip(cb.chunks_exact(4)) {
        for i in 0..4 {
            acc[i] += x[i] as f64 * y[i] as f64;
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| *x as f64 * *y as f64).sum();
    acc.iter().sum::<f64>() + tail
}

pub(super) fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

fn axpy(y: &mut [f32], a: f64, x: &[f32]) {
    let a = a as f32;
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

/// One stored correction pair: `s`, `M s`, `y`, `M y`, `1 / ⟨s, y⟩`.
struct Pair {
    s: Vec<f32>,
    ms: Vec<f32>,
    y: Vec<f32>,
    my: Vec<f32>,
    rho: f64,
}

/// Minimises `obj` from `x` (updated in place).
pub(super) fn minimize<O: Objective>(
    obj: &mut O,
    x: &mut [f32],
    max_iter: usize,
    gtol: f64,
) -> SolverStats {
    let p = x.len();
    let (mut g, mut mg) = (vec![0.0f32; p], vec![0.0f32; p]);
    let (mut g_new, mut mg_new) = (vec![0.0f32; p], vec![0.0f32; p]);
    let mut fx = obj.start(x, &mut g, &mut mg);
    let mut evals = 1;
    let mut hist: VecDeque<Pair> = VecDeque::with_capacity(MEMORY);
    let (mut d, mut md) = (vec![0.0f32; p], vec![0.0f32; p]);
    let mut alpha = [0.0f64; MEMORY];
    let mut iterations = 0;
    let mut grad_max = obj.gradient_max(&g, &mg, gtol);
    let mut converged = grad_max as f64 <= gtol;
    while !converged && iterations < max_iter {
        // Two-loop recursion: d = −H g.
        d.copy_from_slice(&g);
        md.copy_from_slice(&mg);
        for (i, pair) in hist.iter().enumerate().rev() {
            let a = pair.rho * dot(&pair.s, &md);
            alpha[i] = a;
            axpy(&mut d, -a, &pair.y);
            axpy(&mut md, -a, &pair.my);
        }
        if let Some(last) = hist.back() {
            let gamma = (dot(&last.s, &last.my) / dot(&last.y, &last.my)) as f32;
            d.iter_mut().for_each(|v| *v *= gamma);
            md.iter_mut().for_each(|v| *v *= gamma);
        }
        for (i, pair) in hist.iter().enumerate() {
            let beta = pair.rho * dot(&pair.y, &md);
            axpy(&mut d, alpha[i] - beta, &pair.s);
            axpy(&mut md, alpha[i] - beta, &pair.ms);
        }
        d.iter_mut().for_each(|v| *v = -*v);
        md.iter_mut().for_each(|v| *v = -*v);
        let mut dg = dot(&d, &mg);
        if dg.is_nan() || dg >= 0.0 {
            // Not a descent direction (rounding): restart from steepest descent.
            hist.clear();
            for i in 0..p {
                d[i] = -g[i];
                md[i] = -mg[i];
            }
            dg = dot(&d, &mg);
        }
        let step0 = if hist.is_empty() {
            (1.0 / dot(&d, &md).sqrt()).min(1.0)
        } else {
            1.0
        };
        obj.line(&d, &md);
        let Some((step, f_new)) = line_search(obj, fx, dg, step0, &mut evals) else {
            if hist.is_empty() {
                break;
            }
            hist.clear();
            continue;
        };
        iterations += 1;
        obj.accept(x, &mut g_new, &mut mg_new);
        let mut pair = match hist.len() {
            MEMORY => hist.pop_front().expect("full"),
            _ => Pair {
                s: vec![0.0; p],
                ms: vec![0.0; p],
                y: vec![0.0; p],
                my: vec![0.0; p],
                rho: 0.0,
            },
        };
        let t = step as f32;
        for i in 0..p {
            pair.s[i] = t * d[i];
            pair.ms[i] = t * md[i];
            pair.y[i] = g_new[i] - g[i];
            pair.my[i] = mg_new[i] - mg[i];
        }
        let sy = dot(&pair.s, &pair.my);
        if sy > 1e-10 * dot(&pair.y, &pair.my) {
            pair.rho = 1.0 / sy;
            hist.push_back(pair);
        }
        std::mem::swap(&mut g, &mut g_new);
        std::mem::swap(&mut mg, &mut mg_new);
        let f_old = fx;
        fx = f_new;
        grad_max = obj.gradient_max(&g, &mg, gtol);
        if grad_max as f64 <= gtol || (f_old - fx) <= FTOL * f_old.abs().max(fx.abs()).max(1.0) {
            converged = true;
        }
    }
    SolverStats {
        iterations,
        evaluations: evals,
        objective: fx,
        grad_max,
        converged,
    }
}

/// Minimiser of the cubic through two points with slopes, or `None` when it is not defined.
fn cubic_min(a: f64, fa: f64, da: f64, b: f64, fb: f64, db: f64) -> Option<f64> {
    let d1 = da + db - 3.0 * (fa - fb) / (a - b);
    let disc = d1 * d1 - da * db;
    if disc.is_nan() || disc < 0.0 {
        return None;
    }
    let d2 = (b - a).signum() * disc.sqrt();
    let t = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2);
    t.is_finite().then_some(t)
}

/// Strong-Wolfe line search along the objective's current line. Returns the step and the
/// objective there, with that point the last one evaluated, or `None` when no step decreased
/// the objective.
fn line_search<O: Objective>(
    obj: &mut O,
    f0: f64,
    dphi0: f64,
    step0: f64,
    evals: &mut usize,
) -> Option<(f64, f64)> {
    let armijo = |a: f64, fa: f64| fa <= f0 + C1 * a * dphi0;
    let curvature = |da: f64| da.abs() <= -C2 * dphi0;
    let mut phi = |a: f64| {
        *evals += 1;
        obj.at(a)
    };
    let (mut a_prev, mut f_prev, mut d_prev) = (0.0, f0, dphi0);
    let mut a = step0;
    let mut used = 0;
    let (mut lo, mut hi);
    loop {
        let (fa, da) = phi(a);
        used += 1;
        if !fa.is_finite() {
            // Overflow: shrink towards the last good point.
            hi = (a, f64::INFINITY, f64::INFINITY);
            lo = (a_prev, f_prev, d_prev);
            break;
        }
        if !armijo(a, fa) || (used > 1 && fa >= f_prev) {
            lo = (a_prev, f_prev, d_prev);
            hi = (a, fa, da);
            break;
        }
        if curvature(da) {
            return Some((a, fa));
        }
        if da >= 0.0 {
            lo = (a, fa, da);
            hi = (a_prev, f_prev, d_prev);
            break;
        }
        if used >= MAX_LINE_EVALS {
            return Some((a, fa));
        }
        a_prev = a;
        f_prev = fa;
        d_prev = da;
        a *= 4.0;
    }
    // Zoom: lo satisfies Armijo and has the lowest value seen; the minimiser lies between.
    while used < MAX_LINE_EVALS {
        let (a_lo, a_hi) = (lo.0, hi.0);
        let width = (a_hi - a_lo).abs();
        if width <= 1e-12 * a_lo.abs().max(a_hi.abs()) {
            break;
        }
        let (left, right) = (a_lo.min(a_hi), a_lo.max(a_hi));
        let mut aj = if hi.1.is_finite() {
            cubic_min(lo.0, lo.1, lo.2, hi.0, hi.1, hi.2)
        } else {
            None
        }
        .unwrap_or(0.5 * (a_lo + a_hi));
        if !(aj > left + 0.1 * width && aj < right - 0.1 * width) {
            aj = 0.5 * (a_lo + a_hi);
        }
        let (fj, dj) = phi(aj);
        used += 1;
        if !fj.is_finite() || !armijo(aj, fj) || fj >= lo.1 {
            hi = (aj, fj, dj);
        } else {
            if curvature(dj) {
                return Some((aj, fj));
            }
            if dj * (hi.0 - lo.0) >= 0.0 {
                hi = lo;
            }
            lo = (aj, fj, dj);
        }
    }
    // Out of evaluations: take the best Armijo point found, if it moved at all.
    if lo.0 > 0.0 && lo.1 < f0 {
        let (fl, _) = phi(lo.0);
        return Some((lo.0, fl));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// L-BFGS finds the minimum of a badly scaled quadratic.
    #[test]
    fn lbfgs_minimises_a_quadratic() {
        let scales: Vec<f32> = (0..50).map(|i| 1.0 + i as f32 * 2.0).collect();
        let mut x = vec![1.0f32; 50];
        let mut obj = Closure::new(|x: &[f32], g: &mut [f32]| {
            let mut f = 0.0;
            for i in 0..x.len() {
                let c = x[i] - 0.5;
                g[i] = scales[i] * c;
                f += 0.5 * (scales[i] * c * c) as f64;
            }
            f
        });
        let stats = minimize(&mut obj, &mut x, 500, 1e-5);
        assert!(stats.converged, "{stats:?}");
        assert!(x.iter().all(|v| (v - 0.5).abs() < 1e-4), "{x:?}");
    }
}
