//! Which faces of a class's training photos are the class's person: the identity rule.
//!
//! Web photos of one person are often collages (several shots of her in one picture) or show her
//! with others. Box sizes cannot tell who the photo is *of*; the class's other photos can. For each
//! class, [`choose_by_identity`]:
//!
//! 1. starts from the faces of the class's single-face photos (when it has none, from the face of
//!    each photo that looks most like the faces of the class's other photos);
//! 2. compares every face of every photo with the class centroid built *without that photo*
//!    (normalised mean of the chosen, L2-normalised faces), so no photo votes for itself;
//! 3. in a photo with several faces takes the most similar face when its cosine is at least
//!    `match_cosine`, together with every other face that matches the centroid and looks like it
//!    (cosine between the two faces at least `match_cosine`): a collage contributes each shot;
//! 4. leaves a photo out when no face matches (listed with the best cosine), and calls it
//!    ambiguous only when another face, unlike the best one, matches the centroid about as well
//!    (within `margin`): two different people who both look like the class;
//! 5. repeats from 2 with the new choices, `iterations` times.
//!
//! A single-face photo is left out as not matching only when at least `min_references` other
//! photos of the class were chosen (a centroid of fewer says little). A class with a single photo
//! has nothing to compare with: its photo falls back to the most prominent face.
use serde::Serialize;

use crate::face::embed::{dot, l2_normalise};
use crate::features::Embedding;

/// What a "no face" reason adds, for people: why a face may not be found, and where to look.
pub const NO_FACE_HINT: &str = " (a face must be upright, sharp and not tiny; `qcyn faces` shows what the detector finds; a photo that shows sideways needs turning upright or its EXIF orientation)";

/// The identity rule's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IdentityOptions {
    /// Cosine at which a face matches a centroid, or two faces are the same person (SFace's
    /// published same-person threshold is 0.363).
    pub match_cosine: f32,
    /// Two different people whose cosines to the centroid are within this of each other match
    /// "equally": the photo is ambiguous.
    pub margin: f32,
    /// Rounds of re-choosing against the updated centroids.
    pub iterations: usize,
    /// Other chosen photos a class needs before a single-face photo can be left out as not its
    /// person.
    pub min_references: usize,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        IdentityOptions {
            match_cosine: 0.363,
            margin: 0.05,
            iterations: 3,
            min_references: 3,
        }
    }
}

/// What the identity rule chose for one training photo.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "choice")]
pub enum IdentityChoice {
    /// Train on these faces (indices into the photo's faces, most similar first).
    Faces {
        /// The faces.
        faces: Vec<usize>,
        /// Whether the photo has several faces and identity decided (not the only face).
        resolved: bool,
    },
    /// The photo has no face.
    NoFace,
    /// No face looks like the class's other photos.
    NoMatch {
        /// The best face's cosine to the class centroid.
        best: f32,
    },
    /// Two faces of different people match the class equally well.
    Ambiguous {
        /// The two faces.
        faces: [usize; 2],
        /// Their cosines to the class centroid.
        similarity: [f32; 2],
        /// Their cosine to each other.
        mutual: f32,
    },
}

impl IdentityChoice {
    /// Why the photo is not trained on, for people (`None` when it is).
    pub fn reason(&self, match_cosine: f32) -> Option<String> {
        match self {
            IdentityChoice::Faces { .. } => None,
            IdentityChoice::NoFace => Some(format!("no face found; not trained on{NO_FACE_HINT}")),
            IdentityChoice::NoMatch { best } => Some(format!(
                "no face looks like the class's other photos (best cosine {best:.2}, a match needs {match_cosine:.2}); not trained on: check the photo belongs to this class"
            )),
            IdentityChoice::Ambiguous {
                similarity, mutual, ..
            } => Some(format!(
                "two different people (cosine {mutual:.2} to each other) both look like the class (cosine {:.2} and {:.2}): which one it is, is unclear; crop the photo to one face",
                similarity[0], similarity[1]
            )),
        }
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let mut u = v.to_vec();
    l2_normalise(&mut u);
    u
}

/// Chooses the training faces of every photo (`photos[i]`: photo `i`'s faces, most prominent
/// first; `classes[i]`: its class) by the identity rule (module documentation).
pub fn choose_by_identity(
    photos: &[&[Embedding]],
    classes: &[usize],
    opts: &IdentityOptions,
) -> Vec<IdentityChoice> {
    assert_eq!(photos.len(), classes.len(), "one class per photo");
    let n_classes = classes.iter().copied().max().map_or(0, |c| c + 1);
    let faces: Vec<Vec<Vec<f32>>> = photos
        .iter()
        .map(|p| p.iter().map(|e| unit(&e.vector)).collect())
        .collect();
    let mut out: Vec<IdentityChoice> = photos
        .iter()
        .map(|p| {
            if p.is_empty() {
                IdentityChoice::NoFace
            } else {
                IdentityChoice::Faces {
                    faces: vec![0],
                    resolved: false,
                }
            }
        })
        .collect();
    for c in 0..n_classes {
        let members: Vec<usize> = (0..photos.len()).filter(|&i| classes[i] == c).collect();
        choose_class(&faces, &members, opts, &mut out);
    }
    out
}

fn choose_class(
    faces: &[Vec<Vec<f32>>],
    members: &[usize],
    opts: &IdentityOptions,
    out: &mut [IdentityChoice],
) {
    let with_faces: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| !faces[i].is_empty())
        .collect();
    if with_faces.len() < 2 {
        return; // nothing to compare with: the most prominent face (already set)
    }
    let dim = faces[with_faces[0]][0].len();
    // Seeds: single-face photos; without any, each photo's face most like the others' faces.
    let mut chosen: Vec<Vec<usize>> = vec![Vec::new(); faces.len()];
    let singles = with_faces.iter().filter(|&&i| faces[i].len() == 1).count();
    for &i in &with_faces {
        if faces[i].len() == 1 {
            chosen[i] = vec![0];
        } else if singles == 0 {
            let support = |f: &[f32]| -> f32 {
                with_faces
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| {
                        faces[j]
                            .iter()
                            .map(|g| dot(f, g))
                            .fold(f32::NEG_INFINITY, f32::max)
                    })
                    .sum()
            };
            let best = (0..faces[i].len())
                .max_by(|&a, &b| {
                    support(&faces[i][a])
                        .total_cmp(&support(&faces[i][b]))
                        .then(b.cmp(&a))
                })
                .unwrap_or(0);
            chosen[i] = vec![best];
        }
    }
    for _ in 0..opts.iterations.max(1) {
        let mut total = vec![0f32; dim];
        let mut contributors = 0;
        for &i in &with_faces {
            for &k in &chosen[i] {
                total
                    .iter_mut()
                    .zip(&faces[i][k])
                    .for_each(|(t, v)| *t += v);
            }
            contributors += usize::from(!chosen[i].is_empty());
        }
        let mut next = chosen.clone();
        for &i in &with_faces {
            // The centroid without this photo.
            let mut m = total.clone();
            for &k in &chosen[i] {
                m.iter_mut().zip(&faces[i][k]).for_each(|(t, v)| *t -= v);
            }
            let others = contributors - usize::from(!chosen[i].is_empty());
            if others == 0 || l2_normalise(&mut m) <= 1e-6 {
                continue; // no reference: keep what it has
            }
            let sims: Vec<f32> = faces[i].iter().map(|f| dot(f, &m)).collect();
            let choice = decide(&faces[i], &sims, others, opts);
            next[i] = match &choice {
                IdentityChoice::Faces { faces, .. } => faces.clone(),
                _ => Vec::new(),
            };
            out[i] = choice;
        }
        chosen = next;
    }
}

fn decide(
    faces: &[Vec<f32>],
    sims: &[f32],
    others: usize,
    opts: &IdentityOptions,
) -> IdentityChoice {
    let t = opts.match_cosine;
    let b = (0..sims.len())
        .max_by(|&x, &y| sims[x].total_cmp(&sims[y]).then(y.cmp(&x)))
        .expect("a photo with faces");
    if faces.len() == 1 {
        return if sims[0] < t && others >= opts.min_references {
            IdentityChoice::NoMatch { best: sims[0] }
        } else {
            IdentityChoice::Faces {
                faces: vec![0],
                resolved: false,
            }
        };
    }
    if sims[b] < t {
        return IdentityChoice::NoMatch { best: sims[b] };
    }
    let mut order: Vec<usize> = (0..sims.len()).filter(|&k| k != b).collect();
    order.sort_by(|&x, &y| sims[y].total_cmp(&sims[x]));
    let mut picked = vec![b];
    for k in order {
        if sims[k] < t {
            continue;
        }
        let mutual = dot(&faces[k], &faces[b]);
        if mutual >= t {
            picked.push(k); // the same person again: a collage
        } else if sims[k] >= sims[b] - opts.margin {
            return IdentityChoice::Ambiguous {
                faces: [b, k],
                similarity: [sims[b], sims[k]],
                mutual,
            };
        }
    }
    IdentityChoice::Faces {
        faces: picked,
        resolved: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit vector near axis `a` of 8 dimensions (`noise` on axis 7 and `k`-dependent axes).
    fn v(a: usize, noise: f32, k: usize) -> Embedding {
        let mut x = vec![0.0; 8];
        x[a] = 1.0;
        x[7] += noise;
        x[(a + 1 + k % 3) % 7] += noise * 0.5;
        Embedding {
            vector: x,
            face: None,
        }
    }

    #[test]
    fn collages_bystanders_and_strangers() {
        let o = IdentityOptions::default();
        // Class 0 is person 0: three single photos, a collage of her, her with a bystander (person
        // 1, listed first: more prominent), a photo of two strangers, and two people who both
        // look like her.
        let p: Vec<Vec<Embedding>> = vec![
            vec![v(0, 0.1, 0)],
            vec![v(0, 0.2, 1)],
            vec![v(0, 0.1, 2)],
            vec![v(0, 0.2, 3), v(0, 0.1, 4), v(0, 0.3, 5)],
            vec![v(1, 0.1, 0), v(0, 0.2, 6)],
            vec![v(2, 0.1, 0), v(3, 0.1, 0)],
            vec![],
            vec![v(4, 0.0, 0)],
        ];
        let refs: Vec<&[Embedding]> = p.iter().map(Vec::as_slice).collect();
        let got = choose_by_identity(&refs, &[0; 8], &o);
        assert!(
            matches!(&got[0], IdentityChoice::Faces { faces, resolved: false } if faces == &[0])
        );
        match &got[3] {
            IdentityChoice::Faces { faces, resolved } => {
                let mut f = faces.clone();
                f.sort();
                assert_eq!(f, vec![0, 1, 2], "a collage gives every shot");
                assert!(resolved);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            got[4],
            IdentityChoice::Faces {
                faces: vec![1],
                resolved: true
            },
            "the class's person, not the larger bystander"
        );
        assert!(
            matches!(got[5], IdentityChoice::NoMatch { .. }),
            "{:?}",
            got[5]
        );
        assert_eq!(got[6], IdentityChoice::NoFace);
        assert!(
            matches!(got[7], IdentityChoice::NoMatch { .. }),
            "a stranger's single photo"
        );
        assert!(got[7].reason(o.match_cosine).unwrap().contains("belongs"));
    }

    #[test]
    fn two_different_people_matching_equally_are_ambiguous() {
        // The class centroid lies between persons 0 and 1 (half the photos each); a photo with
        // both matches them equally.
        let mix = |a: f32| Embedding {
            vector: vec![a, 1.0 - a, 0.0],
            face: None,
        };
        let p: Vec<Vec<Embedding>> = vec![
            vec![mix(1.0)],
            vec![mix(0.0)],
            vec![mix(0.95)],
            vec![mix(0.05)],
            vec![mix(1.0), mix(0.0)],
        ];
        let refs: Vec<&[Embedding]> = p.iter().map(Vec::as_slice).collect();
        let got = choose_by_identity(&refs, &[0; 5], &IdentityOptions::default());
        assert!(
            matches!(got[4], IdentityChoice::Ambiguous { .. }),
            "{:?}",
            got[4]
        );
    }

    #[test]
    fn classes_without_single_face_photos_seed_from_agreement() {
        // Every photo has person 0 and a different other person.
        let p: Vec<Vec<Embedding>> = (0..4)
            .map(|k| vec![v(1 + k, 0.1, 0), v(0, 0.1, k)])
            .collect();
        let refs: Vec<&[Embedding]> = p.iter().map(Vec::as_slice).collect();
        let got = choose_by_identity(&refs, &[0; 4], &IdentityOptions::default());
        for g in &got {
            assert_eq!(
                *g,
                IdentityChoice::Faces {
                    faces: vec![1],
                    resolved: true
                }
            );
        }
        // Two classes are chosen independently; a lone photo keeps its most prominent face.
        let single = [v(5, 0.0, 0), v(6, 0.0, 0)];
        let refs2: Vec<&[Embedding]> = vec![&single];
        assert_eq!(
            choose_by_identity(&refs2, &[0], &IdentityOptions::default())[0],
            IdentityChoice::Faces {
                faces: vec![0],
                resolved: false
            }
        );
    }
}
