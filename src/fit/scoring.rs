//! Which vector each image contributes, and face-model scoring of every image as `predict` labels it.
use std::path::Path;

use ndarray::Array2;

use crate::dataset::Skipped;
use crate::error::Result;
use crate::face::identity::NO_FACE_HINT;
use crate::face::{choose_training_face, FaceChoice};
use crate::features::Embedding;
use crate::metrics::Report;
use crate::models::ModelKind;

use super::ValidationImage;

/// The vector an image contributes to training, validation or evaluation, per its embeddings:
/// whole-image models give their one vector; face models the face [`choose_training_face`] picks.
pub(crate) enum Use {
    /// Use this vector.
    Vector(Vec<f32>),
    /// The image has no face.
    NoFace,
    /// Several faces of similar size: which person the image is of is unclear (the reason).
    Ambiguous(String),
}

pub(crate) fn training_vector(kind: ModelKind, embeddings: &[Embedding]) -> Use {
    match kind {
        ModelKind::Whole | ModelKind::Fusion => match embeddings.first() {
            Some(e) => Use::Vector(e.vector.clone()),
            None => Use::NoFace,
        },
        ModelKind::Face => match choose_training_face(embeddings) {
            FaceChoice::Face(i) => Use::Vector(embeddings[i].vector.clone()),
            FaceChoice::NoFace => Use::NoFace,
            FaceChoice::Ambiguous { area_ratio, .. } => Use::Ambiguous(format!(
                "{} faces, the second {:.0}% the size of the first: which person the photo is of is unclear; crop it to one face",
                embeddings.len(),
                area_ratio * 100.0
            )),
        },
    }
}

/// Face-model validation or evaluation: every image labelled as `predict` labels it.
#[derive(Debug, Clone)]
pub(crate) struct FaceScoring {
    /// The report over every image (`unknown`, `no_face` and unreadable images are wrong).
    pub report: Report,
    /// Images answered `unknown`.
    pub unknown: usize,
    /// Images without a face, with the reason.
    pub no_face: Vec<Skipped>,
    /// The vector standing for each image with a face (see
    /// [`crate::label::representative_face`]), for open-set figures.
    pub known_vectors: Vec<Vec<f32>>,
    /// Images with several faces labelled by a known face.
    pub multi_face_labelled: usize,
    /// Each image's label, probabilities and the face that gave them, in the images' order.
    pub images: Vec<ValidationImage>,
}

/// One image to score: its true class (an index into the head's classes), its path, and its
/// embeddings (`None` when it could not be read).
pub(crate) type Scored<'a> = (usize, &'a Path, Option<&'a Vec<Embedding>>);

/// Labels every image and scores the labels against the images' classes (`classes`: the head's).
pub(crate) fn score_images(
    labeller: &crate::label::Labeller<'_>,
    images: &[Scored<'_>],
    classes: &[String],
) -> Result<FaceScoring> {
    let k = classes.len();
    let uniform = vec![1.0 / k.max(1) as f32; k];
    let (mut y_true, mut y_pred, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    let (mut unknown, mut no_face, mut known_vectors, mut multi_face_labelled) =
        (0, Vec::new(), Vec::new(), 0);
    let mut seen = Vec::with_capacity(images.len());
    for &(class, path, emb) in images {
        y_true.push(class);
        let Some(emb) = emb else {
            // Could not be read: listed under `skipped`, and wrong.
            y_pred.push(None);
            rows.extend_from_slice(&uniform);
            seen.push(ValidationImage::new(
                path, classes, class, None, &uniform, None,
            ));
            continue;
        };
        let (faces, label) = labeller.label(emb)?;
        if label == crate::label::ImageLabel::NoFace {
            no_face.push(Skipped {
                path: path.to_path_buf(),
                reason: format!("no face found; scored as wrong{NO_FACE_HINT}"),
            });
        }
        if label == crate::label::ImageLabel::Unknown {
            unknown += 1;
        }
        if label.class().is_some() && emb.len() > 1 {
            multi_face_labelled += 1;
        }
        y_pred.push(label.class());
        let shown = crate::label::representative_face(&faces, &label);
        match shown {
            Some(f) => {
                rows.extend_from_slice(&faces[f].probabilities);
                known_vectors.push(emb[f].vector.clone());
            }
            None => rows.extend_from_slice(&uniform),
        }
        seen.push(ValidationImage::new(
            path,
            classes,
            class,
            Some(label.name(classes)),
            shown.map_or(&uniform, |f| &faces[f].probabilities),
            shown.and_then(|f| emb[f].face.map(|b| b.bbox)),
        ));
    }
    let proba = Array2::from_shape_vec((y_true.len(), k), rows).expect("one row per image");
    Ok(FaceScoring {
        report: crate::metrics::evaluate_predictions(&y_true, &y_pred, proba.view(), classes)?,
        unknown,
        no_face,
        known_vectors,
        multi_face_labelled,
        images: seen,
    })
}
