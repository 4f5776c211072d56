//! Alignment: a 5-point similarity transform (rotation, uniform scale, translation; never a
//! reflection) from detected landmarks onto the embedder's template, and a bilinear warp of the
//! original image into the aligned crop. Pure functions, no model involved.
//!
//! The estimate is the least-squares similarity of Umeyama (1991) restricted to proper rotations,
//! which in 2-D has a closed form: with centred points `s` (source) and `d` (destination),
//! `a = Σ s·d / Σ|s|²`, `b = Σ s×d / Σ|s|²`, and the transform is
//! `(x, y) ↦ (a·x − b·y + tx, b·x + a·y + ty)`. This is what OpenCV's `FaceRecognizerSF::alignCrop`
//! computes before `warpAffine` (bilinear, black outside the image), and what SFace was trained on.
//!
//! A *mirrored* landmark set (e.g. left and right swapped) cannot be matched by a proper
//! similarity. The estimate is then still the best proper one — no reflection is ever introduced —
//! but its scale shrinks and the fit residual ([`rms_error`]) is large; [`is_mirrored`] detects the
//! case (the cross-covariance has a negative determinant). YuNet's landmarks of real faces are never
//! mirrored, so the pipeline aligns whatever it is given and does not special-case it.
use image::{Rgb, RgbImage};

/// A 2-D similarity transform `(x, y) ↦ (a·x − b·y + tx, b·x + a·y + ty)`.
///
/// `scale = √(a² + b²)`, `rotation = atan2(b, a)`; the determinant `a² + b²` is never negative, so
/// it never mirrors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// `scale · cos(rotation)`.
    pub a: f64,
    /// `scale · sin(rotation)`.
    pub b: f64,
    /// Translation in x.
    pub tx: f64,
    /// Translation in y.
    pub ty: f64,
}

impl Similarity {
    /// The identity transform.
    pub const IDENTITY: Similarity = Similarity {
        a: 1.0,
        b: 0.0,
        tx: 0.0,
        ty: 0.0,
    };

    /// A transform from its scale, rotation (radians; positive turns +x towards +y, which is
    /// clockwise on screen in y-down pixel coordinates) and translation.
    pub fn new(scale: f64, rotation: f64, tx: f64, ty: f64) -> Similarity {
        Similarity {
            a: scale * rotation.cos(),
            b: scale * rotation.sin(),
            tx,
            ty,
        }
    }

    /// Uniform scale factor.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// Rotation angle in radians.
    pub fn rotation(&self) -> f64 {
        self.b.atan2(self.a)
    }

    /// The 2×3 matrix `[[a, −b, tx], [b, a, ty]]` (OpenCV's `warpAffine` layout).
    pub fn matrix(&self) -> [[f64; 3]; 2] {
        [[self.a, -self.b, self.tx], [self.b, self.a, self.ty]]
    }

    /// Maps one point.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// The inverse transform, or `None` when the scale is zero.
    pub fn inverse(&self) -> Option<Similarity> {
        let det = self.a * self.a + self.b * self.b;
        if det <= f64::MIN_POSITIVE || !det.is_finite() {
            return None;
        }
        // Inverse of [[a, −b], [b, a]] is [[a, b], [−b, a]] / det.
        let (ia, ib) = (self.a / det, -self.b / det);
        Some(Similarity {
            a: ia,
            b: ib,
            tx: -(ia * self.tx - ib * self.ty),
            ty: -(ib * self.tx + ia * self.ty),
        })
    }
}

fn centred(points: &[[f32; 2]]) -> (Vec<[f64; 2]>, [f64; 2]) {
    let n = points.len() as f64;
    let mean = points.iter().fold([0.0, 0.0], |m, p| {
        [m[0] + p[0] as f64 / n, m[1] + p[1] as f64 / n]
    });
    (
        points
            .iter()
            .map(|p| [p[0] as f64 - mean[0], p[1] as f64 - mean[1]])
            .collect(),
        mean,
    )
}

/// The least-squares similarity that maps `src` onto `dst` (same length, at least 2 points).
///
/// Returns `None` when the lengths differ, fewer than 2 points are given, a value is not finite,
/// or all source points coincide (no scale can be estimated).
pub fn estimate_similarity(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Similarity> {
    if src.len() != dst.len()
        || src.len() < 2
        || src.iter().chain(dst).flatten().any(|v| !v.is_finite())
    {
        return None;
    }
    let (s, ms) = centred(src);
    let (d, md) = centred(dst);
    let var: f64 = s.iter().map(|p| p[0] * p[0] + p[1] * p[1]).sum();
    if var <= 1e-12 {
        return None;
    }
    let dot: f64 = s
        .iter()
        .zip(&d)
        .map(|(p, q)| p[0] * q[0] + p[1] * q[1])
        .sum();
    let cross: f64 = s
        .iter()
        .zip(&d)
        .map(|(p, q)| p[0] * q[1] - p[1] * q[0])
        .sum();
    let (a, b) = (dot / var, cross / var);
    Some(Similarity {
        a,
        b,
        tx: md[0] - (a * ms[0] - b * ms[1]),
        ty: md[1] - (b * ms[0] + a * ms[1]),
    })
}

/// Root-mean-square distance between `t(src)` and `dst`.
pub fn rms_error(t: &Similarity, src: &[[f32; 2]], dst: &[[f32; 2]]) -> f64 {
    let n = src.len().min(dst.len()).max(1) as f64;
    let sum: f64 = src
        .iter()
        .zip(dst)
        .map(|(p, q)| {
            let m = t.apply([p[0] as f64, p[1] as f64]);
            (m[0] - q[0] as f64).powi(2) + (m[1] - q[1] as f64).powi(2)
        })
        .sum();
    (sum / n).sqrt()
}

/// True when the best *general* linear fit of `src` onto `dst` would need a reflection (the
/// centred cross-covariance has a negative determinant), e.g. a landmark set with left and right
/// swapped.
pub fn is_mirrored(src: &[[f32; 2]], dst: &[[f32; 2]]) -> bool {
    let (s, _) = centred(src);
    let (d, _) = centred(dst);
    let mut c = [[0f64; 2]; 2];
    for (p, q) in s.iter().zip(&d) {
        for i in 0..2 {
            for j in 0..2 {
                c[i][j] += q[i] * p[j];
            }
        }
    }
    c[0][0] * c[1][1] - c[0][1] * c[1][0] < 0.0
}

/// Warps `img` by `to_crop` (original pixels → crop pixels) into a `size`×`size` image, sampling
/// bilinearly; crop pixels that map outside the image are black (OpenCV `warpAffine` with
/// `INTER_LINEAR` and a constant zero border). Pixel centres are at integer coordinates.
pub fn warp_bilinear(img: &RgbImage, to_crop: &Similarity, size: u32) -> RgbImage {
    let mut out = RgbImage::new(size, size);
    let Some(inv) = to_crop.inverse() else {
        return out;
    };
    let (w, h) = (img.width() as i64, img.height() as i64);
    let raw = img.as_raw();
    let px = |x: i64, y: i64| -> [f64; 3] {
        if x < 0 || y < 0 || x >= w || y >= h {
            return [0.0; 3];
        }
        let i = 3 * (y * w + x) as usize;
        [raw[i] as f64, raw[i + 1] as f64, raw[i + 2] as f64]
    };
    for v in 0..size {
        for u in 0..size {
            let [sx, sy] = inv.apply([u as f64, v as f64]);
            if !(sx > -1.0 && sy > -1.0 && sx < w as f64 && sy < h as f64) {
                continue;
            }
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let (p00, p10, p01, p11) = (
                px(x0, y0),
                px(x0 + 1, y0),
                px(x0, y0 + 1),
                px(x0 + 1, y0 + 1),
            );
            let mut rgb = [0u8; 3];
            for c in 0..3 {
                let top = p00[c] * (1.0 - fx) + p10[c] * fx;
                let bottom = p01[c] * (1.0 - fx) + p11[c] * fx;
                rgb[c] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
            }
            out.put_pixel(u, v, Rgb(rgb));
        }
    }
    out
}

/// The aligned `size`×`size` crop of a face: similarity from `landmarks` onto `template`, then
/// [`warp_bilinear`]. `None` when no similarity can be estimated (degenerate landmarks).
pub fn align_crop(
    img: &RgbImage,
    landmarks: &[[f32; 2]],
    template: &[[f32; 2]],
    size: u32,
) -> Option<RgbImage> {
    let t = estimate_similarity(landmarks, template)?;
    Some(warp_bilinear(img, &t, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_round_trips() {
        let t = Similarity::new(2.5, 0.3, -4.0, 7.0);
        let i = t.inverse().unwrap();
        let p = i.apply(t.apply([3.0, -8.0]));
        assert!((p[0] - 3.0).abs() < 1e-12 && (p[1] + 8.0).abs() < 1e-12);
        assert!(Similarity {
            a: 0.0,
            b: 0.0,
            tx: 1.0,
            ty: 1.0
        }
        .inverse()
        .is_none());
    }

    #[test]
    fn degenerate_input_gives_none() {
        assert!(estimate_similarity(
            &[[1.0, 1.0]; 5],
            &[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 2.0]]
        )
        .is_none());
        assert!(estimate_similarity(&[[0.0, 0.0]], &[[1.0, 1.0]]).is_none());
        assert!(
            estimate_similarity(&[[0.0, 0.0], [f32::NAN, 1.0]], &[[1.0, 1.0], [2.0, 2.0]])
                .is_none()
        );
    }
}
