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
    fn class_streams_differ_by_name() {
        let mut a: Vec<usize> = (0..20).collect();
        let mut b = a.clone();
        shuffle(&mut a, &mut class_rng(0, "ants"));
        shuffle(&mut b, &mut class_rng(0, "bees"));
        assert_ne!(a, b);
    }
}
