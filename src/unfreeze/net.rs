//! The trainable tail in Rust: forward and backward passes of the layers a backbone's last
//! block(s) are made of (1×1 convolution as one GEMM, depthwise 3×3 convolution, clipped ReLU),
//! global average pooling and the softmax head on standardised features.
//!
//! Activations of a batch of `n` maps are one matrix `[channels, n · H · W]` (column `i · HW + p`
//! is pixel `p` of sample `i`), so a 1×1 convolution of the whole batch is a single matrix product.
//! Batch norm is folded into the convolutions' biases by the models script, so it is frozen.
use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// One layer of the tail, in graph order.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// 1×1 convolution: weights `[out, in]`, bias `[out]`.
    Pointwise {
        /// Weights, `[out, in]`.
        w: Array2<f32>,
        /// Bias, `[out]`.
        b: Array1<f32>,
    },
    /// Depthwise 3×3 convolution, stride 1, padding 1: weights `[channels, 9]`, bias `[channels]`.
    Depthwise {
        /// Weights, `[channels, 9]` (row-major 3×3 kernels).
        w: Array2<f32>,
        /// Bias, `[channels]`.
        b: Array1<f32>,
    },
    /// Element-wise clip to `[min, max]` (ReLU6 is `[0, 6]`, ReLU `[0, ∞)`).
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
}

/// The tail: its layers, then global average pooling over the `h × w` map.
#[derive(Debug, Clone, PartialEq)]
pub struct Tail {
    /// Layers in order.
    pub layers: Vec<Layer>,
    /// Channels of the input map.
    pub channels: usize,
    /// Map height.
    pub h: usize,
    /// Map width.
    pub w: usize,
}

/// What the forward pass keeps for the backward pass: each layer's input.
#[derive(Debug)]
pub struct Trace {
    inputs: Vec<Array2<f32>>,
    n: usize,
}

impl Tail {
    /// Pixels per map.
    pub fn hw(&self) -> usize {
        self.h * self.w
    }

    /// Channels of the pooled output (the feature dimension).
    pub fn out_channels(&self) -> usize {
        self.layers
            .iter()
            .rev()
            .find_map(|l| match l {
                Layer::Pointwise { w, .. } | Layer::Depthwise { w, .. } => Some(w.nrows()),
                Layer::Clip { .. } => None,
            })
            .unwrap_or(self.channels)
    }

    /// Lays `n` maps (each `channels · h · w` values, NCHW order) out as one `[channels, n · hw]`
    /// matrix.
    pub fn batch(&self, maps: &[&[f32]]) -> Array2<f32> {
        let (c, hw) = (self.channels, self.hw());
        let n = maps.len();
        let mut x = Array2::<f32>::zeros((c, n * hw));
        for (i, m) in maps.iter().enumerate() {
            assert_eq!(m.len(), c * hw, "a map holds channels · h · w values");
            for ch in 0..c {
                x.slice_mut(s![ch, i * hw..(i + 1) * hw])
                    .as_slice_mut()
                    .expect("rows of a standard-layout matrix are contiguous")
                    .copy_from_slice(&m[ch * hw..(ch + 1) * hw]);
            }
        }
        x
    }

    /// Pooled features `[n, dim]` of a batch laid out by [`Tail::batch`] (no trace kept).
    pub fn features(&self, x: Array2<f32>, n: usize) -> Array2<f32> {
        let mut a = x;
        for layer in &self.layers {
            a = forward_layer(layer, a.view(), n, self.h, self.w);
        }
        pool(a.view(), n, self.hw()).reversed_axes().to_owned()
    }

    /// Forward pass keeping what backward needs; returns the pooled features `[dim, n]`.
    pub fn forward(&self, x: Array2<f32>, n: usize) -> (Array2<f32>, Trace) {
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut a = x;
        for layer in &self.layers {
            let next = forward_layer(layer, a.view(), n, self.h, self.w);
            inputs.push(a);
            a = next;
        }
        let pooled = pool(a.view(), n, self.hw());
        (pooled, Trace { inputs, n })
    }

    /// Backward pass from the gradient of the pooled features `[dim, n]`; accumulates each
    /// parameter's gradient into `grad` (a tail of the same shape). The input map's own gradient
    /// is not computed.
    pub fn backward(&self, trace: Trace, d_pooled: ArrayView2<f32>, grad: &mut Tail) {
        let hw = self.hw();
        let n = trace.n;
        // Pooling: every pixel gets its channel's gradient / hw.
        let mut dy = Array2::<f32>::zeros((d_pooled.nrows(), n * hw));
        for (mut row, drow) in dy.outer_iter_mut().zip(d_pooled.outer_iter()) {
            for i in 0..n {
                row.slice_mut(s![i * hw..(i + 1) * hw])
                    .fill(drow[i] / hw as f32);
            }
        }
        for (k, (layer, x)) in self.layers.iter().zip(trace.inputs).enumerate().rev() {
            let need_dx = k > 0;
            dy = match (layer, &mut grad.layers[k]) {
                (Layer::Clip { min, max }, _) => {
                    let mut d = dy;
                    d.zip_mut_with(&x, |g, &v| {
                        if !(v > *min && v < *max) {
                            *g = 0.0;
                        }
                    });
                    d
                }
                (Layer::Pointwise { w, .. }, Layer::Pointwise { w: gw, b: gb }) => {
                    gw.scaled_add(1.0, &dy.dot(&x.t()));
                    *gb += &dy.sum_axis(Axis(1));
                    if need_dx {
                        w.t().dot(&dy)
                    } else {
                        Array2::zeros((0, 0))
                    }
                }
                (Layer::Depthwise { w, .. }, Layer::Depthwise { w: gw, b: gb }) => {
                    depthwise_backward(w.view(), x.view(), dy.view(), gw, gb, self.h, self.w, n)
                }
                _ => unreachable!("the gradient tail has the same layers"),
            };
        }
    }

    /// A tail of the same shape with every parameter zero (a gradient accumulator).
    pub fn zeros_like(&self) -> Tail {
        let mut t = self.clone();
        for p in t.params_mut() {
            p.fill(0.0);
        }
        t
    }

    /// Every parameter as a flat slice, in a fixed order (each convolution's weights, then bias).
    pub fn params(&self) -> Vec<&[f32]> {
        let mut out = Vec::new();
        for l in &self.layers {
            if let Layer::Pointwise { w, b } | Layer::Depthwise { w, b } = l {
                out.push(w.as_slice().expect("standard layout"));
                out.push(b.as_slice().expect("standard layout"));
            }
        }
        out
    }

    /// Every parameter as a flat mutable slice, in [`Tail::params`]'s order.
    pub fn params_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out = Vec::new();
        for l in &mut self.layers {
            if let Layer::Pointwise { w, b } | Layer::Depthwise { w, b } = l {
                out.push(w.as_slice_mut().expect("standard layout"));
                out.push(b.as_slice_mut().expect("standard layout"));
            }
        }
        out
    }
}

fn forward_layer(layer: &Layer, x: ArrayView2<f32>, n: usize, h: usize, w: usize) -> Array2<f32> {
    match layer {
        Layer::Pointwise { w: wt, b } => {
            let mut y = wt.dot(&x);
            for (mut row, &bias) in y.outer_iter_mut().zip(b) {
                row += bias;
            }
            y
        }
        Layer::Depthwise { w: wt, b } => depthwise_forward(wt.view(), b, x, h, w, n),
        Layer::Clip { min, max } => x.mapv(|v| v.clamp(*min, *max)),
    }
}

/// Offsets (row, column) of the 9 taps of a 3×3 kernel, row-major.
const TAPS: [(isize, isize); 9] = [
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 0),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
];

fn depthwise_forward(
    wt: ArrayView2<f32>,
    b: &Array1<f32>,
    x: ArrayView2<f32>,
    h: usize,
    w: usize,
    n: usize,
) -> Array2<f32> {
    let hw = h * w;
    let cols = n * hw;
    let mut y = Array2::<f32>::zeros(x.raw_dim());
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let ys = y.as_slice_mut().expect("standard layout");
    ys.par_chunks_mut(cols)
        .zip(xs.par_chunks(cols))
        .enumerate()
        .for_each(|(c, (yrow, xrow))| {
            let k = wt.row(c);
            for i in 0..n {
                let (xi, yi) = (&xrow[i * hw..(i + 1) * hw], &mut yrow[i * hw..(i + 1) * hw]);
                for r in 0..h {
                    for q in 0..w {
                        let mut acc = b[c];
                        for (t, &(dr, dq)) in TAPS.iter().enumerate() {
                            let (rr, qq) = (r as isize + dr, q as isize + dq);
                            if rr >= 0 && qq >= 0 && (rr as usize) < h && (qq as usize) < w {
                                acc += k[t] * xi[rr as usize * w + qq as usize];
                            }
                        }
                        yi[r * w + q] = acc;
                    }
                }
            }
        });
    y
}

#[allow(clippy::too_many_arguments)]
fn depthwise_backward(
    wt: ArrayView2<f32>,
    x: ArrayView2<f32>,
    dy: ArrayView2<f32>,
    gw: &mut Array2<f32>,
    gb: &mut Array1<f32>,
    h: usize,
    w: usize,
    n: usize,
) -> Array2<f32> {
    let hw = h * w;
    let cols = n * hw;
    let mut dx = Array2::<f32>::zeros(x.raw_dim());
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let dys = dy.as_standard_layout();
    let dys = dys.as_slice().expect("standard layout");
    let per_channel: Vec<([f32; 9], f32)> = dx
        .as_slice_mut()
        .expect("standard layout")
        .par_chunks_mut(cols)
        .zip(xs.par_chunks(cols).zip(dys.par_chunks(cols)))
        .enumerate()
        .map(|(c, (dxrow, (xrow, dyrow)))| {
            let k = wt.row(c);
            let mut dk = [0f32; 9];
            let mut db = 0f32;
            for i in 0..n {
                let base = i * hw;
                for r in 0..h {
                    for q in 0..w {
                        let g = dyrow[base + r * w + q];
                        if g == 0.0 {
                            continue;
                        }
                        db += g;
                        for (t, &(dr, dq)) in TAPS.iter().enumerate() {
                            let (rr, qq) = (r as isize + dr, q as isize + dq);
                            if rr >= 0 && qq >= 0 && (rr as usize) < h && (qq as usize) < w {
                                let at = base + rr as usize * w + qq as usize;
                                dk[t] += g * xrow[at];
                                dxrow[at] += g * k[t];
                            }
                        }
                    }
                }
            }
            (dk, db)
        })
        .collect();
    for (c, (dk, db)) in per_channel.into_iter().enumerate() {
        for t in 0..9 {
            gw[[c, t]] += dk[t];
        }
        gb[c] += db;
    }
    dx
}

/// Mean over each sample's pixels: `[channels, n · hw]` → `[channels, n]`.
fn pool(a: ArrayView2<f32>, n: usize, hw: usize) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((a.nrows(), n));
    for (row, mut o) in a.outer_iter().zip(out.outer_iter_mut()) {
        for i in 0..n {
            o[i] = row.slice(s![i * hw..(i + 1) * hw]).sum() / hw as f32;
        }
    }
    out
}

/// The softmax head on standardised features: `logits = W · ((f − mean) / scale) + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// Weights `[classes, dim]`.
    pub w: Array2<f32>,
    /// Bias `[classes]`.
    pub b: Array1<f32>,
    /// Per-feature mean (fixed).
    pub mean: Array1<f32>,
    /// Per-feature scale (fixed).
    pub scale: Array1<f32>,
}

impl Head {
    fn standardise(&self, f: ArrayView2<f32>) -> Array2<f32> {
        let mut z = f.to_owned();
        for ((mut row, &m), &s) in z.outer_iter_mut().zip(&self.mean).zip(&self.scale) {
            row.mapv_inplace(|v| (v - m) / s);
        }
        z
    }

    /// Class probabilities `[classes, n]` of pooled features `[dim, n]`.
    pub fn proba(&self, f: ArrayView2<f32>) -> Array2<f32> {
        self.proba_standardised(&self.standardise(f))
    }

    /// Class probabilities `[classes, n]` of standardised features `z`.
    fn proba_standardised(&self, z: &Array2<f32>) -> Array2<f32> {
        let mut logits = self.w.dot(z);
        for (mut row, &bias) in logits.outer_iter_mut().zip(&self.b) {
            row += bias;
        }
        for mut col in logits.columns_mut() {
            let max = col.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            col.mapv_inplace(|v| (v - max).exp());
            let sum = col.sum();
            col /= sum;
        }
        logits
    }

    /// Mean cross-entropy of a batch and its gradients: `(loss, d_features [dim, n])`, with the
    /// head's own gradients accumulated into `grad`.
    pub fn loss_backward(
        &self,
        f: ArrayView2<f32>,
        y: &[usize],
        grad: &mut Head,
    ) -> (f32, Array2<f32>) {
        let n = y.len();
        let z = self.standardise(f);
        let p = self.proba_standardised(&z);
        let mut loss = 0f64;
        let mut d = p;
        for (i, &c) in y.iter().enumerate() {
            // NaN stays NaN (f32::max would hide it), so the trainer sees a diverged step.
            let p = d[[c, i]];
            loss -= f64::from(if p.is_nan() { p } else { p.max(1e-30) }.ln());
            d[[c, i]] -= 1.0;
        }
        d /= n as f32;
        grad.w.scaled_add(1.0, &d.dot(&z.t()));
        grad.b += &d.sum_axis(Axis(1));
        let mut df = self.w.t().dot(&d);
        for (mut row, &s) in df.outer_iter_mut().zip(&self.scale) {
            row /= s;
        }
        ((loss / n as f64) as f32, df)
    }

    /// Zeroed gradient accumulator of the same shape.
    pub fn zeros_like(&self) -> Head {
        Head {
            w: Array2::zeros(self.w.raw_dim()),
            b: Array1::zeros(self.b.raw_dim()),
            mean: self.mean.clone(),
            scale: self.scale.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(rng: &mut rand_chacha::ChaCha8Rng, shape: (usize, usize), amp: f32) -> Array2<f32> {
        Array2::from_shape_fn(shape, |_| rng.gen_range(-amp..amp))
    }

    fn tiny(rng: &mut rand_chacha::ChaCha8Rng) -> (Tail, Head) {
        let v = |rng: &mut rand_chacha::ChaCha8Rng, k: usize| {
            Array1::from_shape_fn(k, |_| rng.gen_range(-0.3f32..0.3))
        };
        let tail = Tail {
            layers: vec![
                Layer::Pointwise {
                    w: random(rng, (6, 4), 0.7),
                    b: v(rng, 6),
                },
                Layer::Clip { min: 0.0, max: 6.0 },
                Layer::Depthwise {
                    w: random(rng, (6, 9), 0.7),
                    b: v(rng, 6),
                },
                Layer::Clip { min: 0.0, max: 6.0 },
                Layer::Pointwise {
                    w: random(rng, (5, 6), 0.7),
                    b: v(rng, 5),
                },
            ],
            channels: 4,
            h: 3,
            w: 4,
        };
        let head = Head {
            w: random(rng, (3, 5), 0.8),
            b: v(rng, 3),
            mean: v(rng, 5),
            scale: Array1::from_shape_fn(5, |_| rng.gen_range(0.5f32..1.5)),
        };
        (tail, head)
    }

    fn loss(tail: &Tail, head: &Head, maps: &[Vec<f32>], y: &[usize]) -> f32 {
        let refs: Vec<&[f32]> = maps.iter().map(|m| m.as_slice()).collect();
        let (f, _) = tail.forward(tail.batch(&refs), refs.len());
        let mut g = head.zeros_like();
        head.loss_backward(f.view(), y, &mut g).0
    }

    /// Every parameter's analytic gradient matches a central finite difference (in f64 terms:
    /// relative error under 2% where the gradient is not tiny).
    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (tail, head) = tiny(&mut rng);
        let maps: Vec<Vec<f32>> = (0..3)
            .map(|_| (0..4 * 12).map(|_| rng.gen_range(-1.0f32..2.0)).collect())
            .collect();
        let y = [0usize, 2, 1];
        let refs: Vec<&[f32]> = maps.iter().map(|m| m.as_slice()).collect();
        let (f, trace) = tail.forward(tail.batch(&refs), 3);
        let mut gh = head.zeros_like();
        let (_, df) = head.loss_backward(f.view(), &y, &mut gh);
        let mut gt = tail.zeros_like();
        tail.backward(trace, df.view(), &mut gt);

        let eps = 1e-3f32;
        let (mut checked, mut kinks) = (0, 0);
        let base = loss(&tail, &head, &maps, &y);
        let grads: Vec<Vec<f32>> = gt.params().iter().map(|p| p.to_vec()).collect();
        for (pi, g) in grads.iter().enumerate() {
            for (j, &analytic) in g.iter().enumerate() {
                let mut plus = tail.clone();
                plus.params_mut()[pi][j] += eps;
                let mut minus = tail.clone();
                minus.params_mut()[pi][j] -= eps;
                let (lp, lm) = (
                    loss(&plus, &head, &maps, &y),
                    loss(&minus, &head, &maps, &y),
                );
                // A clip boundary crossed within ±eps: the one-sided slopes disagree; skip.
                let (right, left) = ((lp - base) / eps, (base - lm) / eps);
                if (right - left).abs() > 0.2 * right.abs().max(left.abs()) + 1e-3 {
                    kinks += 1;
                    continue;
                }
                let numeric = (lp - lm) / (2.0 * eps);
                let tol = 2e-2 * numeric.abs().max(analytic.abs()) + 2e-4;
                assert!(
                    (numeric - analytic).abs() <= tol,
                    "param {pi}[{j}]: analytic {analytic}, numeric {numeric}"
                );
                checked += 1;
            }
        }
        for (j, &analytic) in gh.w.iter().enumerate() {
            let mut plus = head.clone();
            plus.w.as_slice_mut().unwrap()[j] += eps;
            let mut minus = head.clone();
            minus.w.as_slice_mut().unwrap()[j] -= eps;
            let numeric =
                (loss(&tail, &plus, &maps, &y) - loss(&tail, &minus, &maps, &y)) / (2.0 * eps);
            assert!((numeric - analytic).abs() <= 2e-2 * numeric.abs().max(analytic.abs()) + 2e-4);
            checked += 1;
        }
        assert!(
            checked > 100 && kinks * 10 < checked,
            "{checked} checked, {kinks} at a kink"
        );
    }

    /// The depthwise convolution against a direct per-pixel sum, with the zero padding at the
    /// borders.
    #[test]
    fn depthwise_matches_direct_sum() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (h, w, c, n) = (3usize, 4usize, 2usize, 2usize);
        let wt = random(&mut rng, (c, 9), 1.0);
        let b = Array1::from_vec(vec![0.5, -0.25]);
        let x = random(&mut rng, (c, n * h * w), 1.0);
        let y = depthwise_forward(wt.view(), &b, x.view(), h, w, n);
        for ch in 0..c {
            for i in 0..n {
                for r in 0..h as isize {
                    for q in 0..w as isize {
                        let mut want = b[ch];
                        for kr in 0..3isize {
                            for kq in 0..3isize {
                                let (rr, qq) = (r + kr - 1, q + kq - 1);
                                if (0..h as isize).contains(&rr) && (0..w as isize).contains(&qq) {
                                    want += wt[[ch, (kr * 3 + kq) as usize]]
                                        * x[[ch, i * h * w + (rr * w as isize + qq) as usize]];
                                }
                            }
                        }
                        let got = y[[ch, i * h * w + (r * w as isize + q) as usize]];
                        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
                    }
                }
            }
        }
    }
}
