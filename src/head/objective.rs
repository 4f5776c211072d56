//! The training objective and what its fits share: standardisation, sample weights, and the
//! [`Trainer`], which minimises the per-sample mean objective with [`lbfgs`] in the primal form
//! (`θ = [W, b]`, [`Problem`]) or, with fewer than twice as many samples as features, in the Gram
//! form (`W = Aᵀ X`, [`GramLine`]).
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis, CowArray, Ix2};
use rayon::prelude::*;

use super::lbfgs::{self, SolverStats};
use super::params::{ClassWeight, SoftmaxValidParams};

/// Per-feature mean and population standard deviation (0 where a feature is constant up to
/// rounding: it carries no information; [`super::scale_of`] leaves such a feature unscaled).
pub(super) fn standardisation(x: ArrayView2<f32>) -> (Vec<f32>, Vec<f32>) {
    let n = x.nrows() as f64;
    let d = x.ncols();
    let mut sum = vec![0.0f64; d];
    for row in x.rows() {
        for (s, v) in sum.iter_mut().zip(row) {
            *s += *v as f64;
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let mut var = vec![0.0f64; d];
    for row in x.rows() {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            let c = *v as f64 - m;
            *s += c * c;
        }
    }
    let scale = var
        .iter()
        .zip(&mean)
        .map(|(v, m)| {
            let sd = (v / n).sqrt();
            if sd <= 1e-6 * m.abs().max(1e-6) {
                0.0
            } else {
                sd as f32
            }
        })
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), scale)
}

pub(super) fn standardise(x: ArrayView2<f32>, mean: &[f32], scale: &[f32]) -> Array2<f32> {
    let mut xs = x.as_standard_layout().into_owned();
    let d = mean.len();
    xs.as_slice_mut()
        .expect("standard layout")
        .par_chunks_mut(d)
        .for_each(|row| {
            for ((v, m), s) in row.iter_mut().zip(mean).zip(scale) {
                *v = (*v - m) / s;
            }
        });
    xs
}

/// Sample weights (see [`ClassWeight`]) and their sum.
fn sample_weights(y: &[usize], k: usize, cw: ClassWeight) -> (Vec<f32>, f64) {
    let n = y.len();
    let sw = match cw {
        ClassWeight::None => vec![1.0; n],
        ClassWeight::Balanced => {
            let mut counts = vec![0usize; k];
            for &c in y {
                counts[c] += 1;
            }
            let present = counts.iter().filter(|&&c| c > 0).count();
            y.iter()
                .map(|&c| n as f32 / (present * counts[c]) as f32)
                .collect()
        }
    };
    let s = sw.iter().map(|&v| v as f64).sum();
    (sw, s)
}

/// Turns logits `z` (rows × k, bias not yet added) into weighted residuals `sᵢ (pᵢ − e_yᵢ)` in
/// place, adds their column sums to `gb`, and returns `Σ sᵢ CEᵢ`.
fn residuals(z: &mut [f32], b: &[f32], y: &[usize], sw: &[f32], k: usize, gb: &mut [f64]) -> f64 {
    let mut loss = 0.0f64;
    for ((r, &label), &s) in z.chunks_exact_mut(k).zip(y).zip(sw) {
        let mut max = f32::NEG_INFINITY;
        for (v, bj) in r.iter_mut().zip(b) {
            *v += bj;
            max = max.max(*v);
        }
        let mut sum = 0.0f32;
        for v in r.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        // −log p_label = log Σ exp(z − max) − (z_label − max)
        loss += s as f64 * ((sum as f64).ln() - (r[label] as f64).ln());
        let inv = s / sum;
        for (j, v) in r.iter_mut().enumerate() {
            *v *= inv;
            if j == label {
                *v -= s;
            }
            gb[j] += *v as f64;
        }
    }
    loss
}

/// Index of the largest value (the first on ties).
pub(super) fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// `out = a · b`, with the rows of `a` (and `out`) split into chunks run in parallel.
fn par_gemm(a: ArrayView2<f32>, b: ArrayView2<f32>, out: &mut ArrayViewMut2<f32>) {
    let rows = a.nrows();
    let chunk = rows.div_ceil(2 * rayon::current_num_threads()).max(64);
    let pairs: Vec<_> = a
        .axis_chunks_iter(Axis(0), chunk)
        .zip(out.axis_chunks_iter_mut(Axis(0), chunk))
        .collect();
    pairs.into_par_iter().for_each(|(ac, mut oc)| {
        general_mat_mul(1.0, &ac, &b, 0.0, &mut oc);
    });
}

/// Everything the fits of one training run share: the standardised features, the labels, and,
/// when there are fewer than twice as many samples as features, their Gram matrix `X Xᵀ`.
///
/// In the Gram form the weights are kept as `W = Aᵀ X` (`A`: one row of `k` coefficients per
/// training sample). At an L2 optimum `W` lies in the span of the training rows, and L-BFGS started
/// there never leaves it, so this is the same problem and, with the metric `⟨U, V⟩ = tr(Uᵀ K V)`,
/// the very same iterates — but each iteration costs one `n × n × k` product instead of two
/// `n × d × k` ones, and line-search steps cost almost nothing.
pub(super) struct Trainer<'a> {
    xs: &'a Array2<f32>,
    pub(super) y: &'a [usize],
    k: usize,
    gram: Option<Array2<f32>>,
    params: &'a SoftmaxValidParams,
}

/// The matrices of one fit: its training rows, and the held-out rows to score, if any.
pub(super) struct Part<'a> {
    /// Training rows of the standardised features.
    x: CowArray<'a, f32, Ix2>,
    y: Vec<usize>,
    /// Gram matrix of the training rows (Gram form).
    gram: Option<CowArray<'a, f32, Ix2>>,
    /// Held-out rows: features (primal form) or their products with the training rows (Gram).
    held: Array2<f32>,
    pub(super) held_y: Vec<usize>,
}

impl<'a> Trainer<'a> {
    pub(super) fn new(
        xs: &'a Array2<f32>,
        y: &'a [usize],
        k: usize,
        params: &'a SoftmaxValidParams,
    ) -> Self {
        let (n, d) = xs.dim();
        let gram = (n < 2 * d).then(|| {
            let mut g = Array2::zeros((n, n));
            par_gemm(xs.view(), xs.t(), &mut g.view_mut());
            g
        });
        Trainer {
            xs,
            y,
            k,
            gram,
            params,
        }
    }

    /// Length of the parameter vector of a fit on `rows` training rows.
    pub(super) fn param_len(&self, rows: usize) -> usize {
        match self.gram {
            Some(_) => rows * self.k + self.k,
            None => self.k * (self.xs.ncols() + 1),
        }
    }

    /// The matrices for training on `train` and scoring `held` (both sorted row indices).
    pub(super) fn part(&self, train: &[usize], held: &[usize]) -> Part<'_> {
        let everything = train.len() == self.xs.nrows();
        let x = if everything {
            CowArray::from(self.xs.view())
        } else {
            CowArray::from(self.xs.select(Axis(0), train))
        };
        let gram = self.gram.as_ref().map(|g| {
            if everything {
                CowArray::from(g.view())
            } else {
                CowArray::from(g.select(Axis(0), train).select(Axis(1), train))
            }
        });
        let held_m = match &self.gram {
            Some(g) => g.select(Axis(0), held).select(Axis(1), train),
            None => self.xs.select(Axis(0), held),
        };
        Part {
            x,
            y: train.iter().map(|&i| self.y[i]).collect(),
            gram,
            held: held_m,
            held_y: held.iter().map(|&i| self.y[i]).collect(),
        }
    }

    /// Minimises the objective at strength `l2` on `part`, from `theta` (updated).
    pub(super) fn solve(&self, part: &Part, l2: f32, theta: &mut [f32]) -> SolverStats {
        let (sw, s) = sample_weights(&part.y, self.k, self.params.class_weight);
        let (max_iter, tol) = (self.params.max_iter, self.params.tol as f64);
        match &part.gram {
            Some(g) => {
                let mut obj = GramLine::new(g.view(), part.x.view(), &part.y, &sw, self.k, s, l2);
                lbfgs::minimize(&mut obj, theta, max_iter, tol)
            }
            None => {
                let problem = Problem {
                    x: part.x.view(),
                    y: &part.y,
                    sw: &sw,
                    k: self.k,
                    inv_s: 1.0 / s,
                    l2_over_s: l2 as f64 / s,
                };
                let mut obj = lbfgs::Closure::new(|t: &[f32], g: &mut [f32]| problem.eval(t, g));
                lbfgs::minimize(&mut obj, theta, max_iter, tol)
            }
        }
    }

    /// Logits (bias added) of the held-out rows of `part`.
    pub(super) fn held_out_logits(&self, part: &Part, theta: &[f32]) -> Array2<f32> {
        let k = self.k;
        let m = part.held.nrows();
        let split = theta.len() - k;
        let mut z = Array2::zeros((m, k));
        match part.gram {
            Some(_) => {
                let a = ArrayView2::from_shape((part.x.nrows(), k), &theta[..split]).expect("A");
                general_mat_mul(1.0, &part.held, &a, 0.0, &mut z);
            }
            None => {
                let w = ArrayView2::from_shape((k, self.xs.ncols()), &theta[..split]).expect("W");
                general_mat_mul(1.0, &part.held, &w.t(), 0.0, &mut z);
            }
        }
        for mut row in z.rows_mut() {
            row += &ArrayView1::from(&theta[split..]);
        }
        z
    }

    /// `theta` of a fit on `train` rows, in the coordinates of a fit on all rows.
    pub(super) fn embed(&self, theta: &[f32], train: &[usize]) -> Vec<f32> {
        let k = self.k;
        match self.gram {
            None => theta.to_vec(),
            Some(_) => {
                let n = self.xs.nrows();
                let mut out = vec![0.0f32; n * k + k];
                for (j, &i) in train.iter().enumerate() {
                    out[i * k..(i + 1) * k].copy_from_slice(&theta[j * k..(j + 1) * k]);
                }
                out[n * k..].copy_from_slice(&theta[train.len() * k..]);
                out
            }
        }
    }

    /// The head's weights (`k × d`, row-major) and bias from a fit's parameters.
    pub(super) fn weights_and_bias(&self, part: &Part, theta: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let k = self.k;
        let split = theta.len() - k;
        let bias = theta[split..].to_vec();
        match part.gram {
            None => (theta[..split].to_vec(), bias),
            Some(_) => {
                let a = ArrayView2::from_shape((part.x.nrows(), k), &theta[..split]).expect("A");
                let mut w = Array2::zeros((k, part.x.ncols()));
                par_gemm(a.t(), part.x.view(), &mut w.view_mut());
                (w.into_raw_vec_and_offset().0, bias)
            }
        }
    }
}

/// The per-sample mean objective of one fit: `(1/S) Σ sᵢ CEᵢ + l2/(2S) ‖W‖²`, `S = Σ sᵢ`.
/// Parameters `θ = [W (k×d, row-major), b (k)]`.
struct Problem<'a> {
    x: ArrayView2<'a, f32>,
    y: &'a [usize],
    sw: &'a [f32],
    k: usize,
    inv_s: f64,
    l2_over_s: f64,
}

/// Rows per parallel chunk of an evaluation.
const CHUNK_ROWS: usize = 256;

impl Problem<'_> {
    /// Objective at `theta`; writes its gradient into `grad`.
    fn eval(&self, theta: &[f32], grad: &mut [f32]) -> f64 {
        let (n, d) = self.x.dim();
        let k = self.k;
        let w = ArrayView2::from_shape((k, d), &theta[..k * d]).expect("theta shape");
        let b = &theta[k * d..];
        let chunks = n.div_ceil(CHUNK_ROWS).max(1);
        let partial: Vec<(f64, Array2<f32>, Vec<f64>)> = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let r0 = c * CHUNK_ROWS;
                let r1 = ((c + 1) * CHUNK_ROWS).min(n);
                let xc = self.x.slice(s![r0..r1, ..]);
                let mut z = Array2::<f32>::zeros((r1 - r0, k));
                general_mat_mul(1.0, &xc, &w.t(), 0.0, &mut z);
                let mut gb = vec![0.0f64; k];
                let zs = z.as_slice_mut().expect("contiguous");
                let loss = residuals(zs, b, &self.y[r0..r1], &self.sw[r0..r1], k, &mut gb);
                let mut g = Array2::<f32>::zeros((k, d));
                general_mat_mul(1.0, &z.t(), &xc, 0.0, &mut g);
                (loss, g, gb)
            })
            .collect();
        let mut loss = 0.0;
        let mut gw = ArrayViewMut2::from_shape((k, d), &mut grad[..k * d]).expect("grad shape");
        gw.fill(0.0);
        let mut gb = vec![0.0f64; k];
        for (l, g, b) in &partial {
            loss += l;
            gw += g;
            for (a, v) in gb.iter_mut().zip(b) {
                *a += v;
            }
        }
        let (inv_s, l2s) = (self.inv_s as f32, self.l2_over_s as f32);
        let mut wsq = 0.0f64;
        for (g, wv) in grad[..k * d].iter_mut().zip(&theta[..k * d]) {
            *g = *g * inv_s + l2s * wv;
            wsq += (*wv as f64) * (*wv as f64);
        }
        for (g, v) in grad[k * d..].iter_mut().zip(&gb) {
            *g = (v * self.inv_s) as f32;
        }
        loss * self.inv_s + 0.5 * self.l2_over_s * wsq
    }
}

/// The objective in the Gram form (see [`Trainer`]): `θ = [A (n×k, row-major), b (k)]`,
/// `W = Aᵀ X`, logits `K A + b`, `‖W‖² = ⟨A, K A⟩`. Vectors carry their metric image
/// `[K A, b]`; along a line `K (A + t D) = K A + t K D`, so only accepting a step needs a product.
struct GramLine<'a> {
    kmat: ArrayView2<'a, f32>,
    x: ArrayView2<'a, f32>,
    y: &'a [usize],
    sw: &'a [f32],
    k: usize,
    inv_s: f64,
    l2_over_s: f64,
    /// Current point and `K A`.
    a: Vec<f32>,
    ka: Vec<f32>,
    /// Search direction and its metric image.
    d: Vec<f32>,
    kd: Vec<f32>,
    /// Last trial point, its `K A` and its gradient.
    ta: Vec<f32>,
    tka: Vec<f32>,
    tg: Vec<f32>,
    z: Vec<f32>,
    /// Estimated ratio of the largest weight-gradient component to its Frobenius norm.
    ratio: f32,
}

impl<'a> GramLine<'a> {
    fn new(
        kmat: ArrayView2<'a, f32>,
        x: ArrayView2<'a, f32>,
        y: &'a [usize],
        sw: &'a [f32],
        k: usize,
        s: f64,
        l2: f32,
    ) -> Self {
        let n = kmat.nrows();
        let p = n * k + k;
        GramLine {
            kmat,
            x,
            y,
            sw,
            k,
            inv_s: 1.0 / s,
            l2_over_s: l2 as f64 / s,
            a: vec![0.0; p],
            ka: vec![0.0; n * k],
            d: vec![0.0; p],
            kd: vec![0.0; p],
            ta: vec![0.0; p],
            tka: vec![0.0; n * k],
            tg: vec![0.0; p],
            z: vec![0.0; n * k],
            ratio: 1.0 / ((k * x.ncols()) as f32).sqrt(),
        }
    }

    /// `out = K v` for `v` of shape n × k.
    fn kmul(&self, v: &[f32], out: &mut [f32]) {
        let n = self.kmat.nrows();
        let v = ArrayView2::from_shape((n, self.k), v).expect("n × k");
        let mut o = ArrayViewMut2::from_shape((n, self.k), out).expect("n × k");
        par_gemm(self.kmat, v, &mut o);
    }

    /// Objective at `a` (with `ka = K A`); writes the coefficient gradient into `g`.
    #[allow(clippy::too_many_arguments)]
    fn value(
        a: &[f32],
        ka: &[f32],
        g: &mut [f32],
        z: &mut [f32],
        y: &[usize],
        sw: &[f32],
        k: usize,
        inv_s: f64,
        l2_over_s: f64,
    ) -> f64 {
        let nk = ka.len();
        z.copy_from_slice(ka);
        let mut gb = vec![0.0f64; k];
        let loss = residuals(z, &a[nk..], y, sw, k, &mut gb);
        let (inv, l2s) = (inv_s as f32, l2_over_s as f32);
        let mut wsq = 0.0f64;
        for i in 0..nk {
            g[i] = z[i] * inv + l2s * a[i];
            wsq += a[i] as f64 * ka[i] as f64;
        }
        for (gj, v) in g[nk..].iter_mut().zip(&gb) {
            *gj = (v * inv_s) as f32;
        }
        loss * inv_s + 0.5 * l2_over_s * wsq
    }

    fn image(&self, g: &[f32], mg: &mut [f32]) {
        let nk = self.ka.len();
        self.kmul(&g[..nk], &mut mg[..nk]);
        mg[nk..].copy_from_slice(&g[nk..]);
    }
}

impl lbfgs::Objective for GramLine<'_> {
    fn start(&mut self, x: &[f32], g: &mut [f32], mg: &mut [f32]) -> f64 {
        let nk = self.ka.len();
        self.a.copy_from_slice(x);
        let mut ka = std::mem::take(&mut self.ka);
        self.kmul(&x[..nk], &mut ka);
        self.ka = ka;
        let f = Self::value(
            &self.a,
            &self.ka,
            g,
            &mut self.z,
            self.y,
            self.sw,
            self.k,
            self.inv_s,
            self.l2_over_s,
        );
        self.image(g, mg);
        f
    }

    fn line(&mut self, d: &[f32], md: &[f32]) {
        self.d.copy_from_slice(d);
        self.kd.copy_from_slice(md);
    }

    fn at(&mut self, step: f64) -> (f64, f64) {
        let t = step as f32;
        let nk = self.ka.len();
        for ((o, a), d) in self.ta.iter_mut().zip(&self.a).zip(&self.d) {
            *o = a + t * d;
        }
        for ((o, a), d) in self.tka.iter_mut().zip(&self.ka).zip(&self.kd[..nk]) {
            *o = a + t * d;
        }
        let f = Self::value(
            &self.ta,
            &self.tka,
            &mut self.tg,
            &mut self.z,
            self.y,
            self.sw,
            self.k,
            self.inv_s,
            self.l2_over_s,
        );
        (f, lbfgs::dot(&self.tg, &self.kd))
    }

    fn accept(&mut self, x: &mut [f32], g: &mut [f32], mg: &mut [f32]) {
        std::mem::swap(&mut self.a, &mut self.ta);
        std::mem::swap(&mut self.ka, &mut self.tka);
        x.copy_from_slice(&self.a);
        g.copy_from_slice(&self.tg);
        self.image(g, mg);
    }

    fn gradient_max(&mut self, g: &[f32], mg: &[f32], tol: f64) -> f32 {
        let nk = self.ka.len();
        let bias_max = lbfgs::max_abs(&g[nk..]);
        let frob = lbfgs::dot(&g[..nk], &mg[..nk]).max(0.0).sqrt() as f32;
        let estimate = (frob * self.ratio).max(bias_max);
        if estimate as f64 > tol {
            return estimate;
        }
        // Close: compute the weight gradient Gᵀ X exactly.
        let n = self.kmat.nrows();
        let ga = ArrayView2::from_shape((n, self.k), &g[..nk]).expect("n × k");
        let mut gw = Array2::zeros((self.k, self.x.ncols()));
        par_gemm(ga.t(), self.x, &mut gw.view_mut());
        let exact = gw.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if frob > 0.0 {
            let floor = 1.0 / ((self.k * self.x.ncols()) as f32).sqrt();
            self.ratio = (exact / frob).max(floor);
        }
        exact.max(bias_max)
    }
}

#[cfg(test)]
mod tests {
    use super::super::params::SoftmaxParams;
    use super::*;
    use linfa::ParamGuard;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_problem(
        n: usize,
        d: usize,
        k: usize,
        seed: u64,
    ) -> (Array2<f32>, Vec<usize>, ChaCha8Rng) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, d), |_| rng.gen_range(-1.0f32..1.0));
        let y: Vec<usize> = (0..n).map(|i| i % k).collect();
        (x, y, rng)
    }

    /// The analytic gradient agrees with finite differences of the objective.
    #[test]
    fn gradient_matches_finite_differences() {
        let (n, d, k) = (30, 5, 3);
        let (x, y, mut rng) = random_problem(n, d, k, 1);
        let (sw, s) = sample_weights(&y, k, ClassWeight::Balanced);
        let problem = Problem {
            x: x.view(),
            y: &y,
            sw: &sw,
            k,
            inv_s: 1.0 / s,
            l2_over_s: 0.7 / s,
        };
        let theta: Vec<f32> = (0..k * (d + 1))
            .map(|_| rng.gen_range(-0.5f32..0.5))
            .collect();
        let mut g = vec![0.0; theta.len()];
        problem.eval(&theta, &mut g);
        let mut scratch = vec![0.0; theta.len()];
        for j in 0..theta.len() {
            let h = 1e-2f32;
            let mut tp = theta.clone();
            tp[j] += h;
            let mut tm = theta.clone();
            tm[j] -= h;
            let fd = (problem.eval(&tp, &mut scratch) - problem.eval(&tm, &mut scratch))
                / (2.0 * h as f64);
            assert!(
                (fd - g[j] as f64).abs() < 1e-3,
                "component {j}: analytic {} vs numeric {fd}",
                g[j]
            );
        }
    }

    /// The Gram form computes the same objective and weight gradient as the primal form at
    /// `W = Aᵀ X`.
    #[test]
    fn gram_form_matches_primal_form() {
        let (n, d, k) = (12, 20, 3);
        let (x, y, mut rng) = random_problem(n, d, k, 2);
        let (sw, s) = sample_weights(&y, k, ClassWeight::None);
        let mut kmat = Array2::zeros((n, n));
        par_gemm(x.view(), x.t(), &mut kmat.view_mut());
        let theta: Vec<f32> = (0..n * k + k)
            .map(|_| rng.gen_range(-0.1f32..0.1))
            .collect();
        let a = ArrayView2::from_shape((n, k), &theta[..n * k]).unwrap();
        let w = a.t().dot(&x);
        let mut primal_theta = w.iter().copied().collect::<Vec<_>>();
        primal_theta.extend_from_slice(&theta[n * k..]);
        let problem = Problem {
            x: x.view(),
            y: &y,
            sw: &sw,
            k,
            inv_s: 1.0 / s,
            l2_over_s: 0.3 / s,
        };
        let mut gp = vec![0.0; primal_theta.len()];
        let fp = problem.eval(&primal_theta, &mut gp);

        let mut line = GramLine::new(kmat.view(), x.view(), &y, &sw, k, s, 0.3);
        let (mut g, mut mg) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
        let fg = lbfgs::Objective::start(&mut line, &theta, &mut g, &mut mg);
        assert!((fp - fg).abs() < 1e-5, "{fp} vs {fg}");
        let ga = ArrayView2::from_shape((n, k), &g[..n * k]).unwrap();
        let gw = ga.t().dot(&x);
        for (u, v) in gw.iter().zip(&gp[..k * d]) {
            assert!((u - v).abs() < 1e-5, "{u} vs {v}");
        }
        for (u, v) in g[n * k..].iter().zip(&gp[k * d..]) {
            assert!((u - v).abs() < 1e-6, "{u} vs {v}");
        }
        // The exact gradient check agrees with the primal one.
        let gmax = lbfgs::Objective::gradient_max(&mut line, &g, &mg, f64::INFINITY);
        let exact = lbfgs::max_abs(&gp);
        assert!(gmax <= exact * 1.0001 + 1e-7, "{gmax} vs {exact}");
        let gmax = lbfgs::Objective::gradient_max(&mut line, &g, &mg, 0.0);
        assert!(gmax.max(0.0) > 0.0);
        let forced = {
            let mut l = GramLine::new(kmat.view(), x.view(), &y, &sw, k, s, 0.3);
            l.ratio = 1.0;
            lbfgs::Objective::gradient_max(&mut l, &g, &mg, 1e9)
        };
        assert!((forced - exact).abs() < 1e-5, "{forced} vs {exact}");
    }

    /// Fitting in the Gram form (n < 2d) and the primal form (n ≥ 2d) gives the same head.
    #[test]
    fn gram_and_primal_fits_agree() {
        let (n, d, k) = (40, 25, 3);
        let (mut x, y, _) = random_problem(n, d, k, 3);
        for (i, mut row) in x.rows_mut().into_iter().enumerate() {
            row[y[i]] += 1.0;
        }
        let params = SoftmaxParams::new()
            .l2(2.0)
            .tol(1e-7)
            .max_iter(2000)
            .check()
            .unwrap();
        let (mean, sd) = standardisation(x.view());
        let scale = super::super::scale_of(&sd, super::super::Scaling::Feature, &[], &[]);
        let xs = standardise(x.view(), &mean, &scale);
        let all: Vec<usize> = (0..n).collect();
        let mut primal = Trainer::new(&xs, &y, k, &params);
        primal.gram = None;
        let gram = Trainer::new(&xs, &y, k, &params);
        assert!(gram.gram.is_some());
        let fit = |t: &Trainer| {
            let part = t.part(&all, &[]);
            let mut theta = vec![0.0; t.param_len(n)];
            let stats = t.solve(&part, 2.0, &mut theta);
            assert!(stats.converged, "{stats:?}");
            t.weights_and_bias(&part, &theta)
        };
        let (wp, bp) = fit(&primal);
        let (wg, bg) = fit(&gram);
        for (u, v) in wp.iter().chain(&bp).zip(wg.iter().chain(&bg)) {
            assert!((u - v).abs() < 1e-3, "{u} vs {v}");
        }
    }
}
