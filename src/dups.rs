//! Near-duplicate groups: the same photo saved twice, re-encoded, resized, cropped, flipped or
//! slightly rotated, found within a dataset so that a split can keep every copy on one side.
//!
//! Three kinds of evidence join two images, and joined images are merged into groups
//! (union-find):
//!
//! - **identical content**: the same sha256 of the file's bytes (the feature cache's content key);
//! - **perceptual hash** ([`PerceptualHash`]): a 63-bit DCT hash of the image's 32×32 luminance,
//!   compared with the other image *and with its mirror image*, so a horizontal flip matches;
//! - **backbone features**: cosine similarity of the cached feature vectors, when the model's
//!   manifest gives a measured threshold (`[output] near_duplicate_cosine`). Features come from
//!   [`crate::extract`] through the cache, so they cost no backbone run beyond what extraction
//!   caches anyway. Models without a threshold (face models, whose embeddings are *meant* to be
//!   alike for every photo of a person, and test fixtures) use only the first two.
//!
//! The perceptual hash is our own (about 60 lines), not the `image_hasher` crate: we need the
//! mirrored hash of the same DCT (a sign change of the odd horizontal frequencies, so flips cost
//! nothing extra), a way to tell that an image is too flat for its hash to mean anything
//! ([`PerceptualHash::of`] returns `None`, and such images are matched only by content and
//! features), and no second copy of the `image` crate in the build.
//!
//! Thresholds were chosen by measurement (`benches/dups.sh`): synthetic copies made from registry
//! photos (flip, 90% crop, JPEG at quality 70, half size, 5° rotation, colour jitter) against
//! distinct photos of the same class.
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use crate::cache::FeatureCache;
use crate::dataset::{Dataset, Skipped};
use crate::error::Result;
use crate::extract::{extract, ExtractOptions};
use crate::models::Model;
use crate::pipeline::Pipeline;
use crate::progress::Reporter;

/// Largest Hamming distance (of 63 bits) at which two perceptual hashes are near-duplicates.
///
/// Measured (`benches/dups.sh`): flips, JPEG re-saves, half-size copies and colour jitter of
/// registry photos lie at 0–10 (95% at 0–8), 90% crops and 5° rotations at 4–28 (the features
/// catch those); distinct photos of the same class (hymenoptera) at 10–42, 5% below 24.
pub const DEFAULT_MAX_HASH_DISTANCE: u32 = 6;

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

/// How near two images must be to be near-duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DupsOptions {
    /// Largest perceptual-hash distance (of 63 bits) that joins two images.
    pub max_hash_distance: u32,
    /// Smallest feature cosine that joins two images (`None`: features are not used).
    pub min_cosine: Option<f32>,
}

impl DupsOptions {
    /// The defaults for `model`: [`DEFAULT_MAX_HASH_DISTANCE`], and the cosine threshold its
    /// manifest gives (none for face models).
    pub fn for_model(model: &Model) -> DupsOptions {
        DupsOptions {
            max_hash_distance: DEFAULT_MAX_HASH_DISTANCE,
            min_cosine: model
                .manifest
                .whole()
                .and_then(|w| w.output.near_duplicate_cosine),
        }
    }
}

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

/// What joined two images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The same file content (sha256).
    Identical,
    /// Perceptual hashes within the distance.
    Hash,
    /// Feature vectors above the cosine.
    Features,
}

/// Two images found to be near-duplicates, and why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pair {
    /// The first image (an index into the inputs; the smaller one).
    pub a: usize,
    /// The second image.
    pub b: usize,
    /// The first evidence that joined them (identical, then hash, then features).
    pub by: Evidence,
    /// Perceptual-hash distance, when both images have a hash.
    pub hash_distance: Option<u32>,
    /// Feature cosine, when both images have features.
    pub cosine: Option<f32>,
}

/// What is known about each image: its content key, perceptual hash and feature vector, each
/// `None` when unavailable (unreadable file, flat image, no features).
#[derive(Debug, Clone, Default)]
pub struct Evidences {
    /// Content keys (sha256 of the bytes).
    pub keys: Vec<Option<String>>,
    /// Perceptual hashes.
    pub hashes: Vec<Option<PerceptualHash>>,
    /// Feature vectors.
    pub features: Vec<Option<Vec<f32>>>,
}

/// The pairs of near-duplicates among `n` images and their groups of 2 or more (each sorted,
/// groups ordered by their first member). Comparing every pair costs n²/2 popcounts and, with
/// features, one n×n matrix product in blocks.
pub fn group(ev: &Evidences, opts: &DupsOptions) -> (Vec<Vec<usize>>, Vec<Pair>) {
    let n = ev.keys.len().max(ev.hashes.len()).max(ev.features.len());
    let key = |i: usize| ev.keys.get(i).and_then(|k| k.as_deref());
    let hash = |i: usize| ev.hashes.get(i).copied().flatten();
    // Unit-length features, so that a dot product is the cosine.
    let unit: Vec<Option<Vec<f32>>> = (0..n)
        .map(|i| {
            let v = ev.features.get(i)?.as_ref()?;
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            (norm > 0.0 && norm.is_finite()).then(|| v.iter().map(|x| x / norm).collect())
        })
        .collect();
    let pairs: Vec<Pair> = (0..n)
        .into_par_iter()
        .flat_map_iter(|a| {
            let unit = &unit;
            (a + 1..n).filter_map(move |b| {
                let hash_distance = match (hash(a), hash(b)) {
                    (Some(x), Some(y)) => Some(x.distance(&y)),
                    _ => None,
                };
                let cosine = match (&unit[a], &unit[b], opts.min_cosine) {
                    (Some(x), Some(y), Some(_)) => {
                        Some(x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>())
                    }
                    _ => None,
                };
                let identical = matches!((key(a), key(b)), (Some(x), Some(y)) if x == y);
                let by = if identical {
                    Evidence::Identical
                } else if hash_distance.is_some_and(|d| d <= opts.max_hash_distance) {
                    Evidence::Hash
                } else if matches!((cosine, opts.min_cosine), (Some(c), Some(t)) if c >= t) {
                    Evidence::Features
                } else {
                    return None;
                };
                Some(Pair {
                    a,
                    b,
                    by,
                    hash_distance,
                    cosine,
                })
            })
        })
        .collect();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for p in &pairs {
        let (ra, rb) = (root(&mut parent, p.a), root(&mut parent, p.b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut members: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        let r = root(&mut parent, i);
        members.entry(r).or_default().push(i);
    }
    let groups = members.into_values().filter(|g| g.len() > 1).collect();
    (groups, pairs)
}

/// The perceptual hash of an image file's bytes (decoded small when it is a large JPEG); `None`
/// when it cannot be decoded or is too flat.
pub fn hash_bytes(bytes: &[u8]) -> Option<PerceptualHash> {
    let img = crate::preprocess::decode_rgb_at_least(bytes, Some(2 * SIDE as u32)).ok()?;
    PerceptualHash::of(&img)
}

/// The near-duplicates of a dataset, as `qcyn dups` reports them.
#[derive(Debug, Clone, Serialize)]
pub struct Dups {
    /// Groups of 2 or more, as sample indices (sorted; groups ordered by first member).
    pub groups: Vec<Vec<usize>>,
    /// The groups whose images are in more than one class: likely labelling errors.
    pub cross_class: Vec<Vec<usize>>,
    /// Every pair found, with its evidence.
    pub pairs: Vec<Pair>,
    /// Thresholds used.
    pub options: DupsOptions,
    /// Images whose perceptual hash was not used (too flat, or not decodable).
    pub unhashed: usize,
    /// Images that could not be read or decoded (no features); still matched by content.
    pub skipped: Vec<Skipped>,
    /// Images that went through the backbone (0 when every feature was cached).
    pub backbone_runs: u64,
    /// Seconds spent on features (extraction through the cache).
    pub feature_seconds: f64,
    /// Seconds spent beyond the features: hashing the files, perceptual hashes, comparing.
    pub compare_seconds: f64,
}

/// Finds the near-duplicates of `dataset`'s samples: features through `cache` (the backbone runs
/// only on what is missing, and what it computes is cached for the next command), content keys,
/// perceptual hashes, then [`group`].
pub fn find(
    pipeline: &mut Pipeline,
    cache: Option<&FeatureCache>,
    dataset: &Dataset,
    opts: &DupsOptions,
    extract_opts: ExtractOptions,
    reporter: &dyn Reporter,
) -> Result<Dups> {
    let paths: Vec<PathBuf> = dataset.samples.iter().map(|s| s.path.clone()).collect();
    let features = if opts.min_cosine.is_some() {
        let out = extract(pipeline, cache, &paths, extract_opts, reporter)?;
        Some(out)
    } else {
        None
    };
    let start = Instant::now();
    let keys = crate::cache::content_keys(cache, &paths);
    let hashed: Vec<std::result::Result<Option<PerceptualHash>, String>> = paths
        .par_iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| format!("cannot read: {e}"))?;
            let img = crate::preprocess::decode_rgb_at_least(&bytes, Some(2 * SIDE as u32))
                .map_err(|e| e.0)?;
            Ok(PerceptualHash::of(&img))
        })
        .collect();
    // Without features, the hash's decoding is what finds unreadable images.
    let unreadable: Vec<Skipped> = paths
        .iter()
        .zip(&hashed)
        .filter_map(|(p, h)| {
            h.as_ref().err().map(|reason| Skipped {
                path: p.clone(),
                reason: reason.clone(),
            })
        })
        .collect();
    let hashes: Vec<Option<PerceptualHash>> =
        hashed.into_iter().map(|h| h.ok().flatten()).collect();
    let (feature_seconds, backbone_runs, skipped, vectors) = match features {
        Some(out) => (
            out.report.seconds,
            out.report.backbone_runs,
            out.report.skipped,
            out.embeddings
                .into_iter()
                .map(|e| e.and_then(|e| e.into_iter().next()).map(|e| e.vector))
                .collect(),
        ),
        None => (0.0, 0, unreadable, Vec::new()),
    };
    // An image that cannot be decoded is left out of every group: it is skipped wherever it is
    // used, and two copies of the same broken file are no evidence about the dataset's photos.
    let broken: std::collections::HashSet<&Path> =
        skipped.iter().map(|s| s.path.as_path()).collect();
    let keys = keys
        .into_iter()
        .zip(&paths)
        .map(|(k, p)| k.filter(|_| !broken.contains(p.as_path())))
        .collect();
    let ev = Evidences {
        keys,
        hashes,
        features: vectors,
    };
    let (groups, pairs) = group(&ev, opts);
    let cross_class = groups
        .iter()
        .filter(|g| {
            let first = dataset.samples[g[0]].class;
            g.iter().any(|&i| dataset.samples[i].class != first)
        })
        .cloned()
        .collect();
    Ok(Dups {
        groups,
        cross_class,
        pairs,
        options: *opts,
        unhashed: ev.hashes.iter().filter(|h| h.is_none()).count(),
        skipped,
        backbone_runs,
        feature_seconds,
        compare_seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn scene(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let v = 128.0 + 90.0 * (fx * 5.0).sin() * (fy * 3.0 + fx).cos();
            Rgb([v as u8, (255.0 * fy) as u8, (200.0 * fx) as u8])
        })
    }

    #[test]
    fn flips_and_resizes_match_and_flat_images_have_no_hash() {
        let a = scene(120, 90);
        let ha = PerceptualHash::of(&a).unwrap();
        let flipped = PerceptualHash::of(&image::imageops::flip_horizontal(&a)).unwrap();
        assert_eq!(ha.distance(&flipped), 0);
        assert_eq!(flipped.distance(&ha), 0);
        let half = image::imageops::resize(&a, 60, 45, image::imageops::FilterType::Triangle);
        assert!(ha.distance(&PerceptualHash::of(&half).unwrap()) <= 4);
        let other = PerceptualHash::of(&image::imageops::rotate90(&a)).unwrap();
        assert!(ha.distance(&other) > DEFAULT_MAX_HASH_DISTANCE);
        assert_eq!(
            PerceptualHash::of(&RgbImage::from_pixel(40, 30, Rgb([200, 30, 30]))),
            None
        );
    }

    #[test]
    fn union_find_merges_chains_and_keeps_singletons_out() {
        let h = |plain| {
            Some(PerceptualHash {
                plain,
                mirrored: plain,
            })
        };
        let ev = Evidences {
            keys: vec![Some("k".into()), None, Some("k".into()), None, None],
            hashes: vec![None, h(0), h(0b1), h(u64::MAX >> 1), None],
            features: vec![None, None, None, None, Some(vec![1.0, 0.0])],
        };
        let opts = DupsOptions {
            max_hash_distance: 2,
            min_cosine: Some(0.9),
        };
        let (groups, pairs) = group(&ev, &opts);
        // 0 = 2 by content, 1 ~ 2 by hash: one chain; 3 is far; 4 is alone.
        assert_eq!(groups, vec![vec![0, 1, 2]]);
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].by, Evidence::Identical);
    }
}
