//! The perceptual hash: a 63-bit DCT hash of an image's 32×32 luminance and of its mirror image.
//!
//! Our own (about 60 lines), not the `image_hasher` crate: we need the mirrored hash of the same
//! DCT (a sign change of the odd horizontal frequencies, so flips cost nothing extra), a way to
//! tell that an image is too flat for its hash to mean anything ([`PerceptualHash::of`] returns
//! `None`), and no second copy of the `image` crate in the build.
use image::RgbImage;
use serde::Serialize;

/// Largest Hamming distance (of 63 bits) at which two perceptual hashes make a candidate pair
/// (verified by alignment before it joins).
///
/// Measured (`benches/dups.sh`): flips, JPEG re-saves, half-size copies and colour jitter of
/// registry photos lie at 0–10, 90% crops and 5° rotations at 4–28, tutorial-style 70–100% crops
/// mostly below 24; distinct photos of the same class (hymenoptera) at 10–42. Verification keeps
/// distinct photos out, so the hash may be loose: with features, 6 and 24 find the same groups;
/// without them (face models), 24 finds 0.986 of the tutorial-style copy pairs where 6 finds 0.016.
pub const DEFAULT_MAX_HASH_DISTANCE: u32 = 24;

/// Side of the luminance image the hash is computed on.
const SIDE: usize = 32;
/// Low frequencies kept per axis (8×8 minus the mean: 63 bits).
const LOW: usize = 8;
/// Below this root-mean-square of the 63 low-frequency coefficients (luminance 0–255, orthonormal
/// DCT), an image is too flat for its hash bits to say much: one colour with faint or fine texture
/// measures 20–33 here, and images differing only in colour would match. Photos measured 39–310
/// (registry photos 68 and up; the lowest hymenoptera photos 39–57); below it they are matched by
/// content and features only.
const MIN_STRUCTURE: f32 = 36.0;

/// A 63-bit DCT perceptual hash of an image and of its mirror image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PerceptualHash {
    /// Hash of the image.
    pub plain: u64,
    /// Hash of the image flipped left to right.
    pub mirrored: u64,
}

impl PerceptualHash {
    /// The hash of `img`, or `None` when the image has too little structure (nearly one colour,
    /// or only fine texture) for a hash to tell it from another.
    pub fn of(img: &RgbImage) -> Option<PerceptualHash> {
        let small = image::imageops::resize(
            img,
            SIDE as u32,
            SIDE as u32,
            image::imageops::FilterType::Triangle,
        );
        let luma: Vec<f32> = small
            .pixels()
            .map(|p| 0.299 * p.0[0] as f32 + 0.587 * p.0[1] as f32 + 0.114 * p.0[2] as f32)
            .collect();
        let coef = low_dct(&luma);
        // Coefficient (u, v): u the horizontal frequency. A mirror image negates odd u.
        let ac = |mirror: bool| -> Vec<f32> {
            (0..LOW * LOW)
                .skip(1)
                .map(|k| {
                    let (v, u) = (k / LOW, k % LOW);
                    if mirror && u % 2 == 1 {
                        -coef[v * LOW + u]
                    } else {
                        coef[v * LOW + u]
                    }
                })
                .collect()
        };
        let plain = ac(false);
        let rms = (plain.iter().map(|c| c * c).sum::<f32>() / plain.len() as f32).sqrt();
        if !rms.is_finite() || rms < MIN_STRUCTURE {
            return None;
        }
        Some(PerceptualHash {
            plain: bits(&plain),
            mirrored: bits(&ac(true)),
        })
    }

    /// Hamming distance to `other`, or to `other`'s mirror image when that is nearer.
    pub fn distance(&self, other: &PerceptualHash) -> u32 {
        (self.plain ^ other.plain)
            .count_ones()
            .min((self.plain ^ other.mirrored).count_ones())
    }
}

/// The 8×8 lowest frequencies of the orthonormal DCT-II of a 32×32 image, row-major by (v, u).
fn low_dct(px: &[f32]) -> [f32; LOW * LOW] {
    static BASIS: std::sync::OnceLock<[[f32; SIDE]; LOW]> = std::sync::OnceLock::new();
    let basis = BASIS.get_or_init(|| {
        let n = SIDE as f32;
        let mut b = [[0f32; SIDE]; LOW];
        for (k, row) in b.iter_mut().enumerate() {
            let scale = if k == 0 {
                (1.0 / n).sqrt()
            } else {
                (2.0 / n).sqrt()
            };
            for (x, v) in row.iter_mut().enumerate() {
                *v = scale
                    * (std::f32::consts::PI * (2 * x + 1) as f32 * k as f32 / (2.0 * n)).cos();
            }
        }
        b
    });
    // Rows first: rows[y][u], then columns.
    let mut rows = [[0f32; LOW]; SIDE];
    for (y, row) in rows.iter_mut().enumerate() {
        let line = &px[y * SIDE..(y + 1) * SIDE];
        for (u, r) in row.iter_mut().enumerate() {
            *r = line.iter().zip(&basis[u]).map(|(p, b)| p * b).sum();
        }
    }
    let mut out = [0f32; LOW * LOW];
    for v in 0..LOW {
        for u in 0..LOW {
            out[v * LOW + u] = (0..SIDE).map(|y| rows[y][u] * basis[v][y]).sum();
        }
    }
    out
}

/// One bit per coefficient: above the median or not.
fn bits(coef: &[f32]) -> u64 {
    let mut sorted = coef.to_vec();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[sorted.len() / 2];
    coef.iter()
        .enumerate()
        .fold(0u64, |h, (i, &c)| h | (u64::from(c > median) << i))
}
