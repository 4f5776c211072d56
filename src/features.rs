//! Features: what a backbone gives for one image. Whole-image models give one [`Embedding`];
//! face models give one per face, each with the [`FaceBox`] it came from. Everything after the
//! backbone (cache, head, predict) sees only these types.
use serde::{Deserialize, Serialize};

/// One feature vector of an image: the whole image, or one face with where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// The feature vector.
    pub vector: Vec<f32>,
    /// The face it came from (face models only).
    pub face: Option<FaceBox>,
}

/// A detected face in original image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceBox {
    /// `[x, y, w, h]` of the face box.
    pub bbox: [f32; 4],
    /// Detector confidence in 0..1.
    pub score: f32,
    /// Five landmarks: right eye, left eye, nose tip, right and left mouth corners (x, y).
    pub landmarks: [[f32; 2]; 5],
}

impl FaceBox {
    /// Number of `f32` values [`FaceBox::to_floats`] writes.
    pub const FLOATS: usize = 15;

    /// Flattens to 15 floats (box, score, landmarks), for the cache.
    pub fn to_floats(&self) -> [f32; 15] {
        let mut out = [0f32; 15];
        out[..4].copy_from_slice(&self.bbox);
        out[4] = self.score;
        for (i, l) in self.landmarks.iter().enumerate() {
            out[5 + 2 * i] = l[0];
            out[6 + 2 * i] = l[1];
        }
        out
    }

    /// Reads what [`FaceBox::to_floats`] wrote.
    pub fn from_floats(f: &[f32]) -> FaceBox {
        let mut landmarks = [[0f32; 2]; 5];
        for (i, l) in landmarks.iter_mut().enumerate() {
            *l = [f[5 + 2 * i], f[6 + 2 * i]];
        }
        FaceBox {
            bbox: [f[0], f[1], f[2], f[3]],
            score: f[4],
            landmarks,
        }
    }
}

/// One whole-image embedding per row of `feats` (`n × dim`, row-major): what a whole-image
/// backbone gives each image.
pub fn whole_image_rows(feats: &[f32], dim: usize) -> Vec<Vec<Embedding>> {
    feats
        .chunks_exact(dim)
        .map(|c| {
            vec![Embedding {
                vector: c.to_vec(),
                face: None,
            }]
        })
        .collect()
}
