//! The recommendation rule of `qcyn compare` (see the parent module): the best mean accuracy,
//! or the simplest recipe within noise of it.
use super::{stats, HeadKind, Recommended, Row, Weighting};

/// The simplicity key of a recipe (lower is simpler).
fn simplicity(row: &Row, size: u64) -> (HeadKind, u8, u64) {
    let w = match row.class_weight {
        Weighting::None | Weighting::NotApplicable => 0,
        Weighting::Balanced => 1,
    };
    (row.head, w, size)
}

/// Applies the rule in the module docs.
pub(super) fn recommend(rows: &[Row], sizes: &[u64], ratio: f64) -> Recommended {
    let mut best = 0;
    for (i, r) in rows.iter().enumerate() {
        let b = &rows[best];
        if r.accuracy_mean > b.accuracy_mean
            || (r.accuracy_mean == b.accuracy_mean
                && simplicity(r, sizes[i]) < simplicity(b, sizes[best]))
        {
            best = i;
        }
    }
    let b = &rows[best];
    let mut pick = best;
    let mut diff = (0.0, 0.0);
    for (i, r) in rows.iter().enumerate() {
        if i == best || simplicity(r, sizes[i]) >= simplicity(&rows[pick], sizes[pick]) {
            continue;
        }
        let (d, h) =
            stats::paired_difference(&b.accuracy_per_repeat, &r.accuracy_per_repeat, ratio);
        if d <= h {
            pick = i;
            diff = (d, h);
        }
    }
    let label = |r: &Row| {
        format!(
            "{} + {} (class weights {})",
            r.model,
            r.head.name(),
            r.class_weight.name()
        )
    };
    let p = &rows[pick];
    let why = if pick == best {
        let simpler = rows
            .iter()
            .enumerate()
            .filter(|&(i, r)| simplicity(r, sizes[i]) < simplicity(b, sizes[best]))
            .count();
        format!(
            "best mean accuracy, {:.3} [{:.3}, {:.3}]; {}",
            b.accuracy_mean,
            b.accuracy_ci95[0],
            b.accuracy_ci95[1],
            if simpler == 0 {
                "it is also the simplest recipe compared".to_string()
            } else {
                format!("none of the {simpler} simpler recipe(s) is within noise of it (paired 95% interval of the difference excludes 0)")
            }
        )
    } else {
        format!(
            "within noise of the best mean accuracy ({} at {:.3}): {:.3}, paired difference {:.3} ± {:.3} (95%), and simpler",
            label(b),
            b.accuracy_mean,
            p.accuracy_mean,
            diff.0,
            diff.1
        )
    };
    Recommended {
        model: p.model.clone(),
        head: p.head,
        class_weight: p.class_weight,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, head: HeadKind, w: Weighting, acc: &[f64]) -> Row {
        Row {
            model: model.into(),
            head,
            class_weight: w,
            accuracy_mean: stats::mean_sd(acc).0,
            accuracy_ci95: stats::interval(acc, 0.25),
            accuracy_sd: stats::mean_sd(acc).1,
            macro_f1_mean: 0.0,
            macro_f1_ci95: [0.0, 0.0],
            n_repeats: acc.len(),
            accuracy_per_repeat: acc.to_vec(),
            macro_f1_per_repeat: vec![0.0; acc.len()],
            chosen: Vec::new(),
        }
    }

    #[test]
    fn the_simplest_recipe_within_noise_of_the_best_is_recommended() {
        let best = row(
            "m",
            HeadKind::Softmax,
            Weighting::None,
            &[0.95, 0.96, 0.94, 0.95],
        );
        // Behind on average, but ahead on one repeat: within noise, and simpler.
        let close = row(
            "m",
            HeadKind::Centroid,
            Weighting::NotApplicable,
            &[0.94, 0.97, 0.92, 0.95],
        );
        // Always far behind: not within noise.
        let far = row(
            "m",
            HeadKind::Centroid,
            Weighting::NotApplicable,
            &[0.80, 0.82, 0.79, 0.81],
        );
        let knn = row(
            "m",
            HeadKind::Knn,
            Weighting::Balanced,
            &[0.95, 0.96, 0.93, 0.95],
        );
        let r = recommend(
            &[best.clone(), close.clone(), knn.clone()],
            &[1, 1, 1],
            0.25,
        );
        assert_eq!(
            (r.head, r.class_weight),
            (HeadKind::Centroid, Weighting::NotApplicable)
        );
        assert!(r.why.contains("within noise"), "{}", r.why);
        let r = recommend(&[best.clone(), far.clone()], &[1, 1], 0.25);
        assert_eq!(r.head, HeadKind::Softmax);
        assert!(r.why.contains("none of the 1 simpler"), "{}", r.why);
        // knn beats far centroid: among tied recipes knn is the simplest.
        let r = recommend(&[best.clone(), far, knn], &[1, 1, 1], 0.25);
        assert_eq!(
            (r.head, r.class_weight),
            (HeadKind::Knn, Weighting::Balanced)
        );
        // Equal recipes on two models: the smaller model file.
        let big = row(
            "big",
            HeadKind::Softmax,
            Weighting::None,
            &best.accuracy_per_repeat,
        );
        let r = recommend(&[big, best], &[10, 5], 0.25);
        assert_eq!(r.model, "m");
    }
}
