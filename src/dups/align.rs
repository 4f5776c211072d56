//! Verification of a candidate pair of near-duplicates by aligning one image onto the other.
//!
//! Hashes and feature cosines say that two images *look alike*; so do two different photos of one
//! person against one wall, or two shots of a burst. A copy, though — flipped, cropped, resized,
//! re-encoded, slightly rotated or colour-shifted — can be laid onto its original so that the
//! pixels agree. [`align`] finds that placement: an exhaustive coarse search over flip, scale
//! (separately per axis, as crops change the aspect ratio) and offset on 12×12 thumbnails, then
//! Gauss–Newton refinement of a full affine map (so small rotations fit too) on 16, 32 and 64 pixel
//! thumbnails, with brightness and contrast fitted at each step. The answer is the normalised
//! cross-correlation (NCC) of the overlapping pixels at 64×64, and how much of the smaller image
//! the overlap covers.
//!
//! Thumbnails squash the image to a square, so a crop with another aspect ratio is still an
//! axis-aligned affine map of it. They are luminance only, and NCC ignores brightness and contrast.
//!
//! Written here rather than taken from a crate: OpenCV's `findTransformECC` does the refinement
//! step, but no well-kept pure-Rust crate offers dense alignment of two images; `imageproc` has
//! keypoints and BRIEF descriptors, which need textured images of some size and a RANSAC on top.

use image::RgbImage;
use serde::Serialize;

/// Side of the finest thumbnail.
pub const SIDE: usize = 64;
/// Sides of the pyramid, coarsest first.
const LEVELS: [usize; 4] = [12, 16, 32, 64];
/// Scales (one axis of the second image, in units of the first) tried by the coarse search:
/// crops keeping 60–100% of a side, either way. Refinement takes it from there.
const SCALES: [f32; 5] = [0.65, 0.8, 1.0, 1.0 / 0.8, 1.0 / 0.65];
/// Offset step of the coarse search, in units of the image's side.
const STEP: f32 = 0.1;
/// Hypotheses of the coarse search refined.
const KEEP: usize = 4;
/// Smallest share of the smaller image the overlap must cover to count.
pub const MIN_OVERLAP: f32 = 0.5;
/// Below this standard deviation of luminance (0–255) over the overlap, an image is too flat for
/// its correlation to mean anything.
const MIN_STD: f32 = 2.0;

/// A luminance thumbnail pyramid of one image, squashed to squares.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumb {
    /// Levels of [`LEVELS`]' sides, row-major luminance 0–255.
    levels: Vec<Vec<f32>>,
}

impl Thumb {
    /// The pyramid of `img` (any size; images smaller than 64 pixels are scaled up).
    pub fn of(img: &RgbImage) -> Thumb {
        let levels = LEVELS
            .iter()
            .map(|&n| {
                let small = image::imageops::resize(
                    img,
                    n as u32,
                    n as u32,
                    image::imageops::FilterType::Triangle,
                );
                small
                    .pixels()
                    .map(|p| 0.299 * p.0[0] as f32 + 0.587 * p.0[1] as f32 + 0.114 * p.0[2] as f32)
                    .collect()
            })
            .collect();
        Thumb { levels }
    }

    fn level(&self, l: usize) -> &[f32] {
        &self.levels[l]
    }
}

/// How well the second image of a pair lies on the first.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Alignment {
    /// Normalised cross-correlation of the overlapping pixels at 64×64 (−1 to 1; 0 when the
    /// images do not overlap enough or are too flat).
    pub ncc: f32,
    /// Share of the smaller image (in area) that the overlap covers.
    pub overlap: f32,
    /// NCC of the fine detail (each pixel minus the mean of its 3×3 neighbourhood) at 64×64:
    /// edges of eyes, mouths and leaves, which move between two shots of one scene.
    pub detail_ncc: f32,
    /// Whether the second image is mirrored relative to the first.
    pub flipped: bool,
}

/// Affine map from the second image's unit square to the first's:
/// `x_a = p[0]·x + p[1]·y + p[4]`, `y_a = p[2]·x + p[3]·y + p[5]`.
type Warp = [f32; 6];

/// Bilinear sample of an `n`×`n` image at unit coordinates (pixel centres at `(i + 0.5) / n`);
/// `None` outside.
#[inline]
fn sample(px: &[f32], n: usize, x: f32, y: f32) -> Option<f32> {
    let fx = x * n as f32 - 0.5;
    let fy = y * n as f32 - 0.5;
    if !(fx >= 0.0 && fy >= 0.0 && fx <= (n - 1) as f32 && fy <= (n - 1) as f32) {
        return None;
    }
    let (x0, y0) = (fx as usize, fy as usize);
    let (x1, y1) = ((x0 + 1).min(n - 1), (y0 + 1).min(n - 1));
    let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
    let top = px[y0 * n + x0] * (1.0 - tx) + px[y0 * n + x1] * tx;
    let bottom = px[y1 * n + x0] * (1.0 - tx) + px[y1 * n + x1] * tx;
    Some(top * (1.0 - ty) + bottom * ty)
}

/// Running sums of a pair of signals, for their normalised cross-correlation.
#[derive(Default)]
struct Moments {
    sa: f64,
    sb: f64,
    saa: f64,
    sbb: f64,
    sab: f64,
    n: usize,
}

impl Moments {
    fn add(&mut self, a: f32, b: f32) {
        let (a, b) = (a as f64, b as f64);
        self.sa += a;
        self.sb += b;
        self.saa += a * a;
        self.sbb += b * b;
        self.sab += a * b;
        self.n += 1;
    }

    /// The NCC, or 0 with fewer than 8 samples or when either signal's standard deviation is
    /// below `min_std` (too flat for a correlation to mean anything).
    fn ncc(&self, min_std: f32) -> f32 {
        if self.n < 8 {
            return 0.0;
        }
        let c = self.n as f64;
        let va = self.saa / c - (self.sa / c).powi(2);
        let vb = self.sbb / c - (self.sb / c).powi(2);
        let min = (min_std as f64).powi(2);
        if va < min || vb < min {
            return 0.0;
        }
        ((self.sab / c - self.sa / c * self.sb / c) / (va * vb).sqrt()) as f32
    }
}

/// `a` sampled at every pixel of `b` warped onto it, row-major at level `l` (`None` outside `a`).
/// An iterator, so that the coarse search allocates nothing per hypothesis.
fn warp_onto<'t>(a: &'t Thumb, l: usize, w: &'t Warp) -> impl Iterator<Item = Option<f32>> + 't {
    let n = LEVELS[l];
    let pa = a.level(l);
    (0..n * n).map(move |k| {
        let (i, j) = (k % n, k / n);
        let (x, y) = ((i as f32 + 0.5) / n as f32, (j as f32 + 0.5) / n as f32);
        sample(
            pa,
            n,
            w[0] * x + w[1] * y + w[4],
            w[2] * x + w[3] * y + w[5],
        )
    })
}

/// NCC and overlap share (of the second image's pixels) of `b` warped onto `a` at level `l`.
fn score(a: &Thumb, b: &Thumb, l: usize, w: &Warp) -> (f32, f32) {
    let n = LEVELS[l];
    let pb = b.level(l);
    let mut m = Moments::default();
    for (va, &vb) in warp_onto(a, l, w).zip(pb) {
        if let Some(va) = va {
            m.add(va, vb);
        }
    }
    (m.ncc(MIN_STD), m.n as f32 / (n * n) as f32)
}

/// NCC, overlap share and detail NCC (see [`Alignment`]) of `b` warped onto `a` at the finest
/// level, from one sampling.
fn judge(a: &Thumb, b: &Thumb, w: &Warp) -> (f32, f32, f32) {
    let l = LEVELS.len() - 1;
    let n = LEVELS[l];
    let pb = b.level(l);
    let warped: Vec<Option<f32>> = warp_onto(a, l, w).collect();
    let mut whole = Moments::default();
    for (va, &vb) in warped.iter().zip(pb) {
        if let Some(va) = *va {
            whole.add(va, vb);
        }
    }
    // High-pass: the pixel minus its 3×3 mean, where all nine are inside the overlap.
    let high = |k: usize, img: &dyn Fn(usize) -> Option<f32>| -> Option<f32> {
        let (i, j) = (k % n, k / n);
        if i == 0 || j == 0 || i + 1 == n || j + 1 == n {
            return None;
        }
        let mut sum = 0.0;
        for dj in 0..3 {
            for di in 0..3 {
                sum += img((j + dj - 1) * n + (i + di - 1))?;
            }
        }
        Some(img(k)? - sum / 9.0)
    };
    let (wa, wb) = (|k: usize| warped[k], |k: usize| Some(pb[k]));
    let mut fine = Moments::default();
    for k in 0..n * n {
        if let (Some(x), Some(y)) = (high(k, &wa), high(k, &wb)) {
            fine.add(x, y);
        }
    }
    (
        whole.ncc(MIN_STD),
        whole.n as f32 / (n * n) as f32,
        fine.ncc(0.5),
    )
}

/// Share of the smaller image the overlap covers, given the share of the second image's pixels
/// inside the first and the warp's area scale.
fn overlap_of(share_b: f32, w: &Warp) -> f32 {
    let det = (w[0] * w[3] - w[1] * w[2]).abs();
    // Overlap area in the first image's units is share_b · det; as a share of the smaller image
    // (area 1 for the first, det for the second):
    let area = share_b * det;
    (area / det.min(1.0)).min(1.0)
}

/// The coarse search: every flip, per-axis scale and offset on the coarsest level; the best
/// [`KEEP`] warps whose overlap counts.
fn coarse(a: &Thumb, b: &Thumb) -> Vec<(f32, Warp)> {
    // Offsets along one axis for scale s: the second image spans [o, o + s] in the first's units.
    let offsets = |s: f32| -> Vec<f32> {
        let (lo, hi) = ((1.0 - s).min(0.0) - 0.1, (1.0 - s).max(0.0) + 0.1);
        let steps = ((hi - lo) / STEP).round() as usize;
        (0..=steps).map(|k| lo + k as f32 * STEP).collect()
    };
    let mut best: Vec<(f32, Warp)> = Vec::new();
    for flip in [false, true] {
        for &sx in &SCALES {
            for &sy in &SCALES {
                for ox in offsets(sx) {
                    for oy in offsets(sy) {
                        // A flip maps x to o + s·(1 − x).
                        let w: Warp = if flip {
                            [-sx, 0.0, 0.0, sy, ox + sx, oy]
                        } else {
                            [sx, 0.0, 0.0, sy, ox, oy]
                        };
                        let (ncc, share) = score(a, b, 0, &w);
                        if overlap_of(share, &w) < MIN_OVERLAP {
                            continue;
                        }
                        best.push((ncc, w));
                    }
                }
            }
        }
    }
    best.sort_by(|x, y| y.0.total_cmp(&x.0));
    best.truncate(KEEP);
    best
}

/// Gauss–Newton steps on level `l`: minimises Σ (a(W(x)) − α·b(x) − β)² over the six warp
/// parameters, α and β refitted each step.
fn refine(a: &Thumb, b: &Thumb, l: usize, w: &mut Warp, steps: usize) {
    let n = LEVELS[l];
    let (pa, pb) = (a.level(l), b.level(l));
    let h = 1.0 / n as f32;
    for _ in 0..steps {
        // Photometric fit α, β of b to a over the overlap.
        let mut pts = Vec::with_capacity(n * n);
        for j in 0..n {
            let y = (j as f32 + 0.5) * h;
            for i in 0..n {
                let x = (i as f32 + 0.5) * h;
                let (xa, ya) = (w[0] * x + w[1] * y + w[4], w[2] * x + w[3] * y + w[5]);
                let (Some(v), Some(l), Some(r), Some(u), Some(d)) = (
                    sample(pa, n, xa, ya),
                    sample(pa, n, xa - h, ya),
                    sample(pa, n, xa + h, ya),
                    sample(pa, n, xa, ya - h),
                    sample(pa, n, xa, ya + h),
                ) else {
                    continue;
                };
                pts.push((
                    x,
                    y,
                    v,
                    pb[j * n + i],
                    (r - l) / (2.0 * h),
                    (d - u) / (2.0 * h),
                ));
            }
        }
        if pts.len() < 16 {
            return;
        }
        let c = pts.len() as f32;
        let (ma, mb) = (
            pts.iter().map(|p| p.2).sum::<f32>() / c,
            pts.iter().map(|p| p.3).sum::<f32>() / c,
        );
        let vb = pts.iter().map(|p| (p.3 - mb).powi(2)).sum::<f32>();
        if vb <= 0.0 {
            return;
        }
        let alpha = pts.iter().map(|p| (p.2 - ma) * (p.3 - mb)).sum::<f32>() / vb;
        let beta = ma - alpha * mb;
        let mut jtj = [[0f64; 6]; 6];
        let mut jtr = [0f64; 6];
        for &(x, y, v, vb, gx, gy) in &pts {
            let r = (v - alpha * vb - beta) as f64;
            let jac = [gx * x, gx * y, gy * x, gy * y, gx, gy].map(|g| g as f64);
            for p in 0..6 {
                jtr[p] += jac[p] * r;
                for q in 0..6 {
                    jtj[p][q] += jac[p] * jac[q];
                }
            }
        }
        // Levenberg damping keeps a step on a flat region small.
        for (p, row) in jtj.iter_mut().enumerate() {
            row[p] = row[p] * 1.01 + 1e-6;
        }
        let Some(delta) = solve6(jtj, jtr) else {
            return;
        };
        let mut next = *w;
        for p in 0..6 {
            next[p] -= delta[p] as f32;
        }
        if !next.iter().all(|v| v.is_finite()) {
            return;
        }
        *w = next;
        if delta.iter().map(|d| d.abs()).fold(0.0, f64::max) < 1e-4 {
            return;
        }
    }
}

/// Solves the 6×6 system by Gaussian elimination with partial pivoting.
fn solve6(mut m: [[f64; 6]; 6], mut v: [f64; 6]) -> Option<[f64; 6]> {
    for col in 0..6 {
        let pivot = (col..6).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
        if m[pivot][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, pivot);
        v.swap(col, pivot);
        for row in col + 1..6 {
            let f = m[row][col] / m[col][col];
            let pivot_row = m[col];
            for (dst, src) in m[row].iter_mut().zip(pivot_row).skip(col) {
                *dst -= f * src;
            }
            v[row] -= f * v[col];
        }
    }
    let mut x = [0f64; 6];
    for row in (0..6).rev() {
        let s: f64 = (row + 1..6).map(|k| m[row][k] * x[k]).sum();
        x[row] = (v[row] - s) / m[row][row];
    }
    Some(x)
}

/// Lays `b` onto `a` as well as a flip, crop, rescale and small rotation allow, and says how well
/// the pixels agree. Costs about a millisecond.
pub fn align(a: &Thumb, b: &Thumb) -> Alignment {
    let mut best = Alignment {
        ncc: 0.0,
        overlap: 0.0,
        detail_ncc: 0.0,
        flipped: false,
    };
    // Every hypothesis refined on the coarse levels; only the best one on the finest.
    let finest = LEVELS.len() - 1;
    let mut chosen: Option<(f32, Warp)> = None;
    for (_, mut w) in coarse(a, b) {
        refine(a, b, 0, &mut w, 4);
        refine(a, b, 1, &mut w, 6);
        refine(a, b, 2, &mut w, 5);
        let (ncc, share) = score(a, b, 2, &w);
        if overlap_of(share, &w) >= MIN_OVERLAP && chosen.is_none_or(|c| ncc > c.0) {
            chosen = Some((ncc, w));
        }
    }
    if let Some((_, mut w)) = chosen {
        refine(a, b, finest, &mut w, 2);
        let (ncc, share, detail_ncc) = judge(a, b, &w);
        let overlap = overlap_of(share, &w);
        if overlap >= MIN_OVERLAP {
            best = Alignment {
                ncc,
                overlap,
                detail_ncc,
                flipped: w[0] * w[3] - w[1] * w[2] < 0.0,
            };
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A scene with structure at several scales.
    fn scene(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let s = seed as f32;
            let v = 128.0
                + 60.0 * ((fx * (7.0 + s) + fy * 3.0).sin())
                + 40.0 * ((fy * (11.0 + 2.0 * s) - fx * 5.0).cos())
                + 20.0 * ((fx * 31.0 * fy + s).sin())
                + 30.0 * ((fx * (60.0 + 7.0 * s)).sin() * (fy * (50.0 + 5.0 * s)).cos());
            let v = v.clamp(0.0, 255.0) as u8;
            Rgb([v, v.saturating_add(20), 255 - v])
        })
    }

    #[test]
    fn crops_flips_and_resizes_align_and_other_scenes_do_not() {
        let img = scene(240, 180, 0);
        let t = Thumb::of(&img);
        let crop = image::imageops::crop_imm(&img, 30, 10, 170, 150).to_image();
        let flipped = image::imageops::flip_horizontal(&crop);
        let small = image::imageops::resize(&img, 120, 90, image::imageops::FilterType::Triangle);
        for (name, copy) in [
            ("crop", &crop),
            ("flipped crop", &flipped),
            ("half size", &small),
        ] {
            let al = align(&t, &Thumb::of(copy));
            assert!(al.ncc > 0.97, "{name}: {al:?}");
            assert_eq!(al.flipped, name == "flipped crop", "{name}: {al:?}");
        }
        // Smooth scenes can be laid on each other as a whole; their fine detail does not agree.
        let other = align(&t, &Thumb::of(&scene(240, 180, 3)));
        assert!(
            other.detail_ncc < 0.8,
            "a different scene aligned: {other:?}"
        );
        for (name, copy) in [("crop", &crop), ("half size", &small)] {
            let al = align(&t, &Thumb::of(copy));
            assert!(al.detail_ncc > 0.9, "{name}: {al:?}");
        }
    }

    #[test]
    fn flat_images_never_align() {
        let flat = RgbImage::from_pixel(50, 50, Rgb([90, 90, 90]));
        let al = align(&Thumb::of(&flat), &Thumb::of(&flat));
        assert_eq!(al.ncc, 0.0);
    }

    #[test]
    fn solve6_solves_a_known_system() {
        let mut m = [[0f64; 6]; 6];
        for (i, row) in m.iter_mut().enumerate() {
            row[i] = 2.0;
            row[(i + 1) % 6] = 1.0;
        }
        let x = [1.0, -2.0, 3.0, 0.5, 0.0, 4.0];
        let v: Vec<f64> = m
            .iter()
            .map(|row| row.iter().zip(&x).map(|(a, b)| a * b).sum())
            .collect();
        let got = solve6(m, v.try_into().unwrap()).unwrap();
        for (g, e) in got.iter().zip(&x) {
            assert!((g - e).abs() < 1e-9);
        }
    }
}
