//! SFace embedding of aligned 112×112 face crops: one ONNX run per batch of faces, then L2
//! normalisation.
//!
//! SFace takes an N×3×112×112 input (`scripts/build_models.py` frees N; the file as shipped fixes
//! it to 1, and then faces run one at a time), RGB, values 0..255 (the graph itself computes
//! `(x − 127.5) / 128`), and outputs `fc1`, 128 values that are *not* normalised. OpenCV's
//! `FaceRecognizerSF::feature` feeds `blobFromImage(aligned_bgr, 1, 112×112, 0, swapRB = true)`,
//! i.e. RGB. Checked here: on the face_recognition test photos, RGB input gives same-person
//! cosines of 0.75–0.78 (Obama vs Obama) against 0.66–0.69 with BGR, while different-person cosines
//! stay below 0.3 either way.
use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::models::{ColourOrder, EmbedderSpec};

/// Scales `v` to unit length in place and returns its former length (a zero vector stays zero).
pub fn l2_normalise(v: &mut [f32]) -> f32 {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    norm
}

/// Dot product (the cosine similarity of two unit vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Cosine similarity of two vectors of any length (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (na, nb) = (dot(a, a).sqrt(), dot(b, b).sqrt());
    if na > 0.0 && nb > 0.0 {
        dot(a, b) / (na * nb)
    } else {
        0.0
    }
}

/// Writes an RGB image as an NCHW tensor (values 0..255 divided by `scale`, channels in `colour`
/// order) into `out` (length 3·w·h).
pub fn crop_tensor(crop: &RgbImage, colour: ColourOrder, scale: f32, out: &mut [f32]) {
    let plane = (crop.width() * crop.height()) as usize;
    assert_eq!(out.len(), 3 * plane, "tensor has 3·w·h values");
    let order: [usize; 3] = match colour {
        ColourOrder::Rgb => [0, 1, 2],
        ColourOrder::Bgr => [2, 1, 0],
    };
    let raw = crop.as_raw();
    for (c, &src_c) in order.iter().enumerate() {
        for (i, d) in out[c * plane..(c + 1) * plane].iter_mut().enumerate() {
            *d = raw[3 * i + src_c] as f32 / scale;
        }
    }
}

/// An SFace session.
#[derive(Debug)]
pub struct Embedder {
    session: Session,
    spec: EmbedderSpec,
    /// Faces per run: [`MAX_BATCH`] when the graph's batch is free, else 1.
    batch: usize,
    buf: Vec<f32>,
}

/// Most faces in one embedder run. Measured with onnxruntime on 2 threads: 47 ms/face one at a
/// time, 41 at 8, 43 at 16, 45 at 32, while the peak memory grows by about 12 MiB per face of the
/// batch (+70 MiB at 8, +390 MiB at 32).
pub const MAX_BATCH: usize = 8;

impl Embedder {
    /// Opens the embedder at `path` and checks its input and output against `spec`.
    pub fn open(
        env: &ort::environment::Environment,
        spec: &EmbedderSpec,
        path: &std::path::Path,
        opts: crate::backbone::SessionOptions,
    ) -> Result<Embedder> {
        let session = crate::backbone::open_session(env, path, opts)?;
        let mismatch = |what: String| {
            Error::bad_file(
                path,
                what,
                Some(
                    "the [embedder] table of the face manifest does not describe this file".into(),
                ),
            )
        };
        let n = spec.size as i64;
        let shape = crate::backbone::outlet_shape;
        let mut batch = 1;
        match shape(session.inputs(), &spec.input) {
            Some(s)
                if s.len() == 4 && s[1..].iter().zip([3, n, n]).all(|(&a, b)| a == b || a < 0) =>
            {
                if s[0] < 0 {
                    batch = MAX_BATCH;
                }
            }
            Some(s) => {
                return Err(mismatch(format!(
                    "embedder input `{}` has shape {s:?}, expected [1, 3, {n}, {n}]",
                    spec.input
                )))
            }
            None => return Err(mismatch(format!("embedder has no input `{}`", spec.input))),
        }
        match shape(session.outputs(), &spec.output) {
            Some(s) if s.len() == 2 && (s[1] < 0 || s[1] as usize == spec.dim) => {}
            Some(s) => {
                return Err(mismatch(format!(
                    "embedder output `{}` has shape {s:?}, expected [1, {}]",
                    spec.output, spec.dim
                )))
            }
            None => {
                return Err(mismatch(format!(
                    "embedder has no output `{}`",
                    spec.output
                )))
            }
        }
        Ok(Embedder {
            session,
            spec: spec.clone(),
            batch,
            buf: Vec::new(),
        })
    }

    /// The L2-normalised embeddings of aligned crops (each `size`×`size`), in order, run in
    /// batches of up to [`MAX_BATCH`] faces.
    pub fn embed_batch(&mut self, crops: &[&RgbImage]) -> Result<Vec<Vec<f32>>> {
        let n = self.spec.size;
        let plane = 3 * (n * n) as usize;
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(self.batch) {
            self.buf.clear();
            self.buf.resize(plane * chunk.len(), 0.0);
            for (crop, dst) in chunk.iter().zip(self.buf.chunks_exact_mut(plane)) {
                if crop.dimensions() != (n, n) {
                    return Err(Error::config(
                        format!(
                            "face crop is {}×{}, the embedder takes {n}×{n}",
                            crop.width(),
                            crop.height()
                        ),
                        None,
                    ));
                }
                crop_tensor(crop, self.spec.colour, self.spec.scale, dst);
            }
            let tensor = TensorRef::from_array_view((
                [chunk.len(), 3, n as usize, n as usize],
                &self.buf[..],
            ))?;
            let outputs = self
                .session
                .run(ort::inputs![self.spec.input.as_str() => tensor])?;
            let (_, data) = outputs[self.spec.output.as_str()].try_extract_tensor::<f32>()?;
            if data.len() != self.spec.dim * chunk.len() {
                return Err(Error::config(
                    format!(
                        "embedder output has {} values for {} faces, expected {} each",
                        data.len(),
                        chunk.len(),
                        self.spec.dim
                    ),
                    None,
                ));
            }
            for v in data.chunks_exact(self.spec.dim) {
                let mut v = v.to_vec();
                l2_normalise(&mut v);
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The L2-normalised embedding of an aligned crop (`size`×`size`).
    pub fn embed(&mut self, crop: &RgbImage) -> Result<Vec<f32>> {
        Ok(self.embed_batch(&[crop])?.remove(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_and_cosine() {
        let mut v = vec![3.0, 4.0];
        assert_eq!(l2_normalise(&mut v), 5.0);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0; 3];
        assert_eq!(l2_normalise(&mut z), 0.0);
        assert_eq!(z, vec![0.0; 3]);
        assert!((cosine(&[1.0, 0.0], &[2.0, 2.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn crop_tensor_is_planar_in_colour_order() {
        let img = RgbImage::from_raw(1, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let mut out = vec![0.0; 6];
        crop_tensor(&img, ColourOrder::Rgb, 1.0, &mut out);
        assert_eq!(out, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        crop_tensor(&img, ColourOrder::Bgr, 1.0, &mut out);
        assert_eq!(out, vec![3.0, 6.0, 2.0, 5.0, 1.0, 4.0]);
    }
}
