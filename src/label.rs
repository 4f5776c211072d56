//! The label of one image, as `predict` gives it and as `fit` and `eval` score it.
//!
//! Every face of an image gets a label: the head's most probable class when its cosine similarity
//! to the nearest class centroid (the open-set score) is at least the bundle's threshold, else
//! `unknown`. **The image's label is the label of the face that best matches a known class**: of
//! the faces that are not `unknown`, the one with the highest similarity (the highest head
//! probability when there is no open set); ties go to the more prominent face. When every face is
//! a stranger the image is `unknown`; when there is no face it is `no_face`.
//!
//! So a photo of a known person with bystanders, or a collage, answers the known person wherever
//! and however large their face is, and a photo of strangers only answers `unknown`. `fit` and
//! `eval` score every image this way: `unknown` and `no_face` count as wrong.
use ndarray::Array2;

use crate::error::Result;
use crate::face::openset::OpenSet;
use crate::features::Embedding;
use crate::head::SoftmaxHead;

/// Label of an image in which a face model found no face.
pub const NO_FACE: &str = "no_face";
/// Label of a face (or an image) that is not similar enough to any known person.
pub const UNKNOWN: &str = "unknown";

/// One face's label.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceLabel {
    /// The head's most probable class.
    pub class: usize,
    /// Whether the face is similar enough to a known person (always true without an open set).
    pub known: bool,
    /// Cosine similarity to the nearest class centroid (the open-set score), when there is one.
    pub similarity: Option<f32>,
    /// Every class's probability, in class order.
    pub probabilities: Vec<f32>,
}

impl FaceLabel {
    /// How well the face matches a known class: its similarity, or without an open set its top
    /// probability.
    pub fn strength(&self) -> f32 {
        self.similarity.unwrap_or_else(|| {
            self.probabilities
                .get(self.class)
                .copied()
                .unwrap_or(f32::NEG_INFINITY)
        })
    }
}

/// The label of a whole image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageLabel {
    /// A known class, given by this face (an index into the image's faces).
    Class {
        /// The class.
        class: usize,
        /// The face that gave it.
        face: usize,
    },
    /// Every face is a stranger.
    Unknown,
    /// No face.
    NoFace,
}

impl ImageLabel {
    /// The class, when the image has one.
    pub fn class(&self) -> Option<usize> {
        match self {
            ImageLabel::Class { class, .. } => Some(*class),
            _ => None,
        }
    }

    /// The label as text: a class name, `unknown` or `no_face`.
    pub fn name(&self, classes: &[String]) -> String {
        match self {
            ImageLabel::Class { class, .. } => classes[*class].clone(),
            ImageLabel::Unknown => UNKNOWN.into(),
            ImageLabel::NoFace => NO_FACE.into(),
        }
    }
}

/// The image-level rule (see the module documentation) on the labels of an image's faces, most
/// prominent first.
pub fn image_label(faces: &[FaceLabel]) -> ImageLabel {
    if faces.is_empty() {
        return ImageLabel::NoFace;
    }
    let best = faces
        .iter()
        .enumerate()
        .filter(|(_, f)| f.known)
        // `max_by` keeps the last of equal elements: compare reversed indices so ties go to the
        // more prominent (earlier) face.
        .max_by(|(i, a), (j, b)| a.strength().total_cmp(&b.strength()).then(j.cmp(i)));
    match best {
        Some((face, f)) => ImageLabel::Class {
            class: f.class,
            face,
        },
        None => ImageLabel::Unknown,
    }
}

/// The face whose vector stands for the image in open-set figures: the face that gave the label,
/// or for an `unknown` image the face most similar to a known person.
pub fn representative_face(faces: &[FaceLabel], label: &ImageLabel) -> Option<usize> {
    match label {
        ImageLabel::Class { face, .. } => Some(*face),
        ImageLabel::NoFace => None,
        ImageLabel::Unknown => faces
            .iter()
            .enumerate()
            .max_by(|(i, a), (j, b)| a.strength().total_cmp(&b.strength()).then(j.cmp(i)))
            .map(|(i, _)| i),
    }
}

/// Labels faces with a head and, for face bundles, an open set.
#[derive(Debug, Clone, Copy)]
pub struct Labeller<'a> {
    /// The fitted head.
    pub head: &'a SoftmaxHead,
    /// The open set, whose threshold says `unknown` (face bundles).
    pub open_set: Option<&'a OpenSet>,
}

impl Labeller<'_> {
    /// Every face's label, in the order given, and the image's label.
    pub fn label(&self, embeddings: &[Embedding]) -> Result<(Vec<FaceLabel>, ImageLabel)> {
        if embeddings.is_empty() {
            return Ok((Vec::new(), ImageLabel::NoFace));
        }
        let d = embeddings[0].vector.len();
        let x = Array2::from_shape_vec(
            (embeddings.len(), d),
            embeddings.iter().flat_map(|e| e.vector.clone()).collect(),
        )
        .map_err(|e| {
            crate::Error::config(format!("face vectors of different lengths: {e}"), None)
        })?;
        let proba = self.head.try_predict_proba(x.view())?;
        let faces: Vec<FaceLabel> = embeddings
            .iter()
            .zip(proba.rows())
            .map(|(e, p)| {
                let class = (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
                let similarity = self.open_set.map(|s| s.score(&e.vector).1);
                let known = match (self.open_set, similarity) {
                    (Some(s), Some(sim)) => sim >= s.threshold,
                    _ => true,
                };
                FaceLabel {
                    class,
                    known,
                    similarity,
                    probabilities: p.to_vec(),
                }
            })
            .collect();
        let label = image_label(&faces);
        Ok((faces, label))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(class: usize, known: bool, sim: f32) -> FaceLabel {
        FaceLabel {
            class,
            known,
            similarity: Some(sim),
            probabilities: vec![0.5, 0.5],
        }
    }

    #[test]
    fn the_best_matching_known_face_labels_the_image() {
        assert_eq!(image_label(&[]), ImageLabel::NoFace);
        assert_eq!(
            image_label(&[f(0, false, 0.2), f(1, false, 0.3)]),
            ImageLabel::Unknown
        );
        // A bystander first (more prominent, but a stranger), the known person second.
        assert_eq!(
            image_label(&[f(0, false, 0.2), f(1, true, 0.6)]),
            ImageLabel::Class { class: 1, face: 1 }
        );
        // Two known faces: the more similar one; ties go to the more prominent face.
        assert_eq!(
            image_label(&[f(0, true, 0.5), f(1, true, 0.7)]),
            ImageLabel::Class { class: 1, face: 1 }
        );
        assert_eq!(
            image_label(&[f(0, true, 0.7), f(1, true, 0.7)]),
            ImageLabel::Class { class: 0, face: 0 }
        );
        let u = [f(0, false, 0.2), f(1, false, 0.3)];
        assert_eq!(representative_face(&u, &image_label(&u)), Some(1));
    }
}
