//! Near-duplicate groups: the same photo saved twice, re-encoded, resized, cropped, flipped or
//! slightly rotated, found within a dataset so that a split can keep every copy on one side.
//!
//! Two images are joined in two steps, and joined images are merged into groups (union-find):
//!
//! 1. **Candidates.** Identical content (the same sha256 of the file's bytes, the feature cache's
//!    content key) joins at once. Otherwise a pair is a candidate when its perceptual hashes
//!    ([`PerceptualHash`], compared with the mirror image too) are within a distance, or its
//!    cached backbone features are above a cosine (the model manifest's measured
//!    `[output] near_duplicate_cosine`; features come from [`crate::extract`] through the cache,
//!    so they cost no backbone run beyond what extraction caches anyway). Each image keeps its
//!    [`DupsOptions::neighbours`] most similar candidates.
//! 2. **Verification** ([`align`]): the second image is laid onto the first — flip, crop,
//!    rescale, small rotation, brightness and contrast — and the pair is joined only when the
//!    aligned pixels agree, as a whole and in their fine detail ([`DupsOptions::min_ncc`],
//!    [`DupsOptions::min_detail`]). This is what tells a copy from a second
//!    photo that merely looks alike: two shots of one person against one wall have close hashes
//!    and features, but their pixels do not lie on each other.
//!
//! Face models give no cosine (their embeddings are *meant* to be alike for every photo of a
//! person); they use the hash and content only.
//!
//! Thresholds were chosen by measurement (`benches/dups.sh`, `benches/tutorial.sh`): synthetic
//! copies made from registry photos (flip, 90% crop, JPEG at quality 70, half size, 5° rotation,
//! colour jitter) and tutorial-style augmented copies (flip, 70–100% crops, jitter) against
//! distinct photos of the same class.
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::cache::FeatureCache;
use crate::dataset::{Dataset, Skipped};
use crate::error::Result;
use crate::extract::{extract, ExtractOptions};
use crate::models::Model;
use crate::pipeline::Pipeline;
use crate::progress::Reporter;

mod align;
mod hash;

pub use align::{align, Alignment, Thumb};
pub use hash::{PerceptualHash, DEFAULT_MAX_HASH_DISTANCE};

/// Smallest normalised cross-correlation of the aligned pixels that confirms a candidate pair.
///
/// Measured (`benches/dups.sh`): copies of registry photos at 0.97 and above (95%), tutorial-style
/// copies at 0.976 and above; distinct photos of one class: hymenoptera 95% below 0.72, but
/// orl_faces (one person, one wall) 25% above 0.9 — hence the detail test too.
pub const DEFAULT_MIN_NCC: f32 = 0.9;
/// Smallest NCC of the aligned fine detail ([`Alignment::detail_ncc`]) that confirms a pair.
///
/// Measured (`benches/dups.sh`): copies of registry photos 0.92 and above (95%; flat ones lower),
/// tutorial-style copies 0.86 and above (99%; each copy needs one partner above it); distinct
/// photos of one class: hymenoptera at most 0.43, orl_faces 95% below 0.71.
pub const DEFAULT_MIN_DETAIL: f32 = 0.9;
/// Candidates each image keeps for verification (its most similar ones).
pub const DEFAULT_NEIGHBOURS: usize = 10;

/// How near two images must be to be near-duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DupsOptions {
    /// Largest perceptual-hash distance (of 63 bits) that makes two images a candidate pair.
    pub max_hash_distance: u32,
    /// Smallest feature cosine that makes two images a candidate pair (`None`: features are not
    /// used).
    pub min_cosine: Option<f32>,
    /// Smallest normalised cross-correlation of the aligned pixels that joins a candidate pair.
    pub min_ncc: f32,
    /// Smallest NCC of the aligned fine detail that joins a candidate pair.
    pub min_detail: f32,
    /// Candidates each image keeps for verification, its most similar first.
    pub neighbours: usize,
}

impl DupsOptions {
    /// The defaults for `model`: [`DEFAULT_MAX_HASH_DISTANCE`], and the cosine threshold its
    /// manifest gives (none for face models).
    pub fn for_model(model: &Model) -> DupsOptions {
        DupsOptions {
            max_hash_distance: DEFAULT_MAX_HASH_DISTANCE,
            min_ncc: DEFAULT_MIN_NCC,
            min_detail: DEFAULT_MIN_DETAIL,
            neighbours: DEFAULT_NEIGHBOURS,
            min_cosine: model
                .manifest
                .whole()
                .and_then(|w| w.output.near_duplicate_cosine),
        }
    }
}

/// What made two images a candidate pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The same file content (sha256): joined without verification.
    Identical,
    /// Perceptual hashes within the distance, then verified by alignment.
    Hash,
    /// Feature vectors above the cosine, then verified by alignment.
    Features,
}

/// Two images found to be near-duplicates, and why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pair {
    /// The first image (an index into the inputs; the smaller one).
    pub a: usize,
    /// The second image.
    pub b: usize,
    /// What made them a candidate (identical first, then hash, then features).
    pub by: Evidence,
    /// Perceptual-hash distance, when both images have a hash.
    pub hash_distance: Option<u32>,
    /// Feature cosine, when both images have features.
    pub cosine: Option<f32>,
    /// Normalised cross-correlation of the aligned pixels (none for identical content).
    pub ncc: Option<f32>,
    /// The alignment that verified the pair (none for identical content).
    pub alignment: Option<Alignment>,
}

/// What is known about each image: its content key, perceptual hash, feature vector and
/// thumbnails, each `None` when unavailable (unreadable file, flat image, no features).
#[derive(Debug, Clone, Default)]
pub struct Evidences {
    /// Content keys (sha256 of the bytes).
    pub keys: Vec<Option<String>>,
    /// Perceptual hashes.
    pub hashes: Vec<Option<PerceptualHash>>,
    /// Feature vectors.
    pub features: Vec<Option<Vec<f32>>>,
    /// Thumbnails for the verification by alignment (an image without one joins by content
    /// only).
    pub thumbs: Vec<Option<Thumb>>,
}

/// A candidate pair before verification.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    b: usize,
    by: Evidence,
    hash_distance: Option<u32>,
    cosine: Option<f32>,
    /// Similarity used to keep each image's nearest candidates.
    rank: f32,
}

/// The pairs of near-duplicates among the images and their groups of 2 or more (each sorted,
/// groups ordered by their first member). Finding candidates compares every pair (n²/2
/// popcounts and, with features, dot products); each image's [`DupsOptions::neighbours`] best
/// candidates are then verified by [`align`], about a millisecond each.
pub fn group(ev: &Evidences, opts: &DupsOptions) -> (Vec<Vec<usize>>, Vec<Pair>) {
    let n = ev
        .keys
        .len()
        .max(ev.hashes.len())
        .max(ev.features.len())
        .max(ev.thumbs.len());
    let key = |i: usize| ev.keys.get(i).and_then(|k| k.as_deref());
    let hash = |i: usize| ev.hashes.get(i).copied().flatten();
    let thumb = |i: usize| ev.thumbs.get(i).and_then(|t| t.as_ref());
    // Unit-length features, so that a dot product is the cosine.
    let unit: Vec<Option<Vec<f32>>> = (0..n)
        .map(|i| {
            let v = ev.features.get(i)?.as_ref()?;
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            (norm > 0.0 && norm.is_finite()).then(|| v.iter().map(|x| x / norm).collect())
        })
        .collect();
    let candidate = |a: usize, b: usize| -> Option<Candidate> {
        let hash_distance = match (hash(a), hash(b)) {
            (Some(x), Some(y)) => Some(x.distance(&y)),
            _ => None,
        };
        let cosine = match (&unit[a], &unit[b], opts.min_cosine) {
            (Some(x), Some(y), Some(_)) => Some(x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>()),
            _ => None,
        };
        let identical = matches!((key(a), key(b)), (Some(x), Some(y)) if x == y);
        let by_hash = hash_distance.is_some_and(|d| d <= opts.max_hash_distance);
        let by_features = matches!((cosine, opts.min_cosine), (Some(c), Some(t)) if c >= t);
        let by = if identical {
            Evidence::Identical
        } else if by_hash {
            Evidence::Hash
        } else if by_features {
            Evidence::Features
        } else {
            return None;
        };
        let rank = match by {
            Evidence::Identical => f32::INFINITY,
            _ => cosine
                .unwrap_or(f32::NEG_INFINITY)
                .max(hash_distance.map_or(f32::NEG_INFINITY, |d| 1.0 - d as f32 / 64.0)),
        };
        Some(Candidate {
            b,
            by,
            hash_distance,
            cosine,
            rank,
        })
    };
    // Each image's nearest candidates (identical content always), as pairs a < b.
    let mut wanted: Vec<(usize, Candidate)> = (0..n)
        .into_par_iter()
        .flat_map_iter(|a| {
            let mut near: Vec<Candidate> = (0..n)
                .filter(|&b| b != a)
                .filter_map(|b| candidate(a, b))
                .collect();
            near.sort_by(|x, y| y.rank.total_cmp(&x.rank).then(x.b.cmp(&y.b)));
            let keep = near
                .iter()
                .take_while(|c| c.by == Evidence::Identical)
                .count()
                .max(opts.neighbours.min(near.len()));
            near.truncate(keep);
            near.into_iter().map(move |c| {
                let (lo, hi) = (a.min(c.b), a.max(c.b));
                (lo, Candidate { b: hi, ..c })
            })
        })
        .collect();
    wanted.sort_by_key(|(a, c)| (*a, c.b));
    wanted.dedup_by_key(|(a, c)| (*a, c.b));
    let pairs: Vec<Pair> = wanted
        .into_par_iter()
        .filter_map(|(a, c)| {
            let alignment = match c.by {
                Evidence::Identical => None,
                _ => {
                    let al = align(thumb(a)?, thumb(c.b)?);
                    if al.ncc < opts.min_ncc || al.detail_ncc < opts.min_detail {
                        return None;
                    }
                    Some(al)
                }
            };
            Some(Pair {
                a,
                b: c.b,
                by: c.by,
                hash_distance: c.hash_distance,
                cosine: c.cosine,
                ncc: alignment.map(|al| al.ncc),
                alignment,
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

/// What an image file looks like to the near-duplicate search: its perceptual hash (`None` when
/// too flat) and its thumbnails, from one decoding (small, when it is a large JPEG). An error
/// says why the bytes cannot be decoded.
pub fn look(bytes: &[u8]) -> std::result::Result<(Option<PerceptualHash>, Thumb), String> {
    let img = crate::preprocess::decode_rgb_at_least(bytes, Some(2 * align::SIDE as u32))
        .map_err(|e| e.0)?;
    Ok((PerceptualHash::of(&img), Thumb::of(&img)))
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
    let looked: Vec<std::result::Result<(Option<PerceptualHash>, Thumb), String>> = paths
        .par_iter()
        .map(|p| look(&std::fs::read(p).map_err(|e| format!("cannot read: {e}"))?))
        .collect();
    // Without features, the hash's decoding is what finds unreadable images.
    let unreadable: Vec<Skipped> = paths
        .iter()
        .zip(&looked)
        .filter_map(|(p, h)| {
            h.as_ref().err().map(|reason| Skipped {
                path: p.clone(),
                reason: reason.clone(),
            })
        })
        .collect();
    let (hashes, thumbs): (Vec<Option<PerceptualHash>>, Vec<Option<Thumb>>) = looked
        .into_iter()
        .map(|l| match l {
            Ok((h, t)) => (h, Some(t)),
            Err(_) => (None, None),
        })
        .unzip();
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
        thumbs,
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
    use image::{Rgb, RgbImage};

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
        // With fine detail, which the verification compares.
        let a = RgbImage::from_fn(120, 90, |x, y| {
            let (fx, fy) = (x as f32 / 120.0, y as f32 / 90.0);
            let v = 128.0
                + 70.0 * (fx * 5.0).sin() * (fy * 3.0 + fx).cos()
                + 40.0 * (fx * 60.0).sin() * (fy * 50.0).cos();
            Rgb([v as u8, (255.0 * fy) as u8, (200.0 * fx) as u8])
        });
        let t = |img: &RgbImage| Some(Thumb::of(img));
        let other = image::imageops::rotate90(&a);
        let ev = Evidences {
            keys: vec![Some("k".into()), None, Some("k".into()), None, None, None],
            hashes: vec![None, h(0), h(0b1), h(u64::MAX >> 1), None, h(0b11)],
            features: vec![None, None, None, None, Some(vec![1.0, 0.0]), None],
            thumbs: vec![None, t(&a), t(&a), t(&a), None, t(&other)],
        };
        let opts = DupsOptions {
            max_hash_distance: 2,
            min_cosine: Some(0.9),
            min_ncc: DEFAULT_MIN_NCC,
            min_detail: DEFAULT_MIN_DETAIL,
            neighbours: DEFAULT_NEIGHBOURS,
        };
        let (groups, pairs) = group(&ev, &opts);
        // 0 = 2 by content, 1 ~ 2 by hash and alignment: one chain; 3 is far; 4 is alone; 5 is
        // near 1 and 2 by hash but its pixels do not lie on theirs.
        assert_eq!(groups, vec![vec![0, 1, 2]]);
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].by, Evidence::Identical);
        assert_eq!(pairs[0].ncc, None);
        assert!(pairs[1].ncc.unwrap() > 0.99, "{:?}", pairs[1]);
    }
}
