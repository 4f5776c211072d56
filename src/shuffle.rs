//! The one seeded shuffler: the split, the head's cross-validation folds and the open set's
//! calibration folds all draw from it, so "the same seed gives the same result on every machine"
//! holds in one place.
//!
//! The stream is ChaCha8 seeded from a `u64`. A split shuffles each class on its own stream, chosen
//! by the class *name* ([`class_rng`]), so adding images to one class never changes how another
//! was split; folds are dealt from one stream over all classes ([`stratified_folds`]).
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The random stream a seed gives.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// The stream of one class: the seed picks the key, the class name the stream.
pub fn class_rng(seed: u64, class: &str) -> ChaCha8Rng {
    let mut rng = rng(seed);
    rng.set_stream(fnv1a64(class.as_bytes()));
    rng
}

/// Shuffles `items` in place with `rng` (Fisher–Yates, as `rand` does it).
pub fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    items.shuffle(rng);
}

/// Assigns every row to one of `folds` folds, stratified by label: class by class (labels in
/// ascending order), the class's rows are shuffled and dealt round-robin, continuing where the
/// previous class stopped, so fold sizes stay within one of each other and every class is spread
/// over the folds as evenly as its size allows.
pub fn stratified_folds(labels: &[usize], folds: usize, seed: u64) -> Vec<usize> {
    let folds = folds.max(1);
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut rng = rng(seed);
    let mut fold_of = vec![0; labels.len()];
    let mut next = 0;
    for c in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        shuffle(&mut members, &mut rng);
        for i in members {
            fold_of[i] = next;
            next = (next + 1) % folds;
        }
    }
    fold_of
}

/// Like [`stratified_folds`], but rows with the same `units` value (a near-duplicate group's id)
/// always share a fold: class by class (a unit's class is its first row's label), the class's
/// units, in order of first appearance, are shuffled and dealt round-robin. When every row is a
/// unit of its own, the result is exactly [`stratified_folds`]'s.
pub fn stratified_group_folds(
    labels: &[usize],
    units: &[usize],
    folds: usize,
    seed: u64,
) -> Vec<usize> {
    assert_eq!(labels.len(), units.len(), "one unit per row");
    let folds = folds.max(1);
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    // Each unit's rows, units in order of first appearance.
    let mut order: Vec<usize> = Vec::new();
    let mut rows: std::collections::HashMap<usize, Vec<usize>> = std::collections::HashMap::new();
    for (i, &u) in units.iter().enumerate() {
        rows.entry(u)
            .or_insert_with(|| {
                order.push(u);
                Vec::new()
            })
            .push(i);
    }
    let mut rng = rng(seed);
    let mut fold_of = vec![0; labels.len()];
    let mut next = 0;
    for c in 0..classes {
        let mut members: Vec<usize> = order
            .iter()
            .copied()
            .filter(|u| labels[rows[u][0]] == c)
            .collect();
        shuffle(&mut members, &mut rng);
        for u in members {
            for &i in &rows[&u] {
                fold_of[i] = next;
            }
            next = (next + 1) % folds;
        }
    }
    fold_of
}

/// 64-bit FNV-1a: a small, stable hash (std's hasher may change between releases).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_balanced_and_seeded() {
        let labels: Vec<usize> = (0..23).map(|i| i % 3).collect();
        let a = stratified_folds(&labels, 5, 7);
        assert_eq!(a, stratified_folds(&labels, 5, 7));
        assert_ne!(a, stratified_folds(&labels, 5, 8));
        let mut sizes = [0usize; 5];
        for &f in &a {
            sizes[f] += 1;
        }
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
    }

    #[test]
    fn group_folds_keep_units_together_and_match_plain_folds_for_singletons() {
        let labels: Vec<usize> = (0..23).map(|i| i % 3).collect();
        let singletons: Vec<usize> = (0..23).collect();
        assert_eq!(
            stratified_group_folds(&labels, &singletons, 5, 7),
            stratified_folds(&labels, 5, 7)
        );
        // Rows 0, 3, 6, 9 (class 0) are one unit; so are 1 and 4 (class 1).
        let mut units = singletons.clone();
        for i in [3, 6, 9] {
            units[i] = 0;
        }
        units[4] = 1;
        for seed in 0..10 {
            let f = stratified_group_folds(&labels, &units, 4, seed);
            assert!(
                [3, 6, 9].iter().all(|&i| f[i] == f[0]),
                "seed {seed}: {f:?}"
            );
            assert_eq!(f[4], f[1], "seed {seed}");
            assert!(f.iter().all(|&x| x < 4));
        }
    }

    #[test]
    fn class_streams_differ_by_name() {
        let mut a: Vec<usize> = (0..20).collect();
        let mut b = a.clone();
        shuffle(&mut a, &mut class_rng(0, "ants"));
        shuffle(&mut b, &mut class_rng(0, "bees"));
        assert_ne!(a, b);
    }
}
