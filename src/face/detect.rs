//! YuNet face detection: letterbox → one ONNX run → decode per stride → NMS → original pixels.
//!
//! YuNet (OpenCV Zoo, 2023mar) takes a 1×3×H×W BGR input with values 0..255 (H and W multiples of
//! 32: `scripts/build_models.py` frees them, the file as shipped fixes 640×640) and outputs, for
//! each stride `s` in 8, 16, 32 over an `(H/s)×(W/s)` grid in row-major order (`index = row·(W/s) +
//! col`):
//! `cls_s` and `obj_s` (already sigmoid), `bbox_s` (dx, dy, log w, log h) and `kps_s` (five x, y
//! pairs). [`decode_level`] turns one stride into faces, exactly as OpenCV's `FaceDetectorYN`:
//!
//! - score = √(clamp(cls, 0, 1) · clamp(obj, 0, 1));
//! - box centre = ((col + dx)·s, (row + dy)·s), size = (e^dw·s, e^dh·s);
//! - landmark k = ((col + kx_k)·s, (row + ky_k)·s).
//!
//! (Verified against the real model: on scikit-image's `astronaut.png` the box and the five points
//! land on the face, eyes and mouth corners; on the face_recognition test photos the best face
//! scores 0.93–0.95.)
//!
//! The letterbox keeps the aspect ratio and pads bottom/right with black, only up to the next
//! multiple of 32 of each side (OpenCV's `FaceDetectorYN` does the same): a portrait or landscape
//! photo runs at its own aspect ratio, not in a 640×640 square that is up to half padding. (A graph
//! with a fixed input size still gets the square letterbox.) Large images are shrunk to fit the
//! manifest's `size` on their longer side (antialiased bilinear, `fast_image_resize`); small images are enlarged only until their longer
//! side is [`UPSCALE_TO`] pixels, because YuNet scores faces that fill most of its 640-pixel input
//! badly: on the ORL faces (92×112, the face fills the frame) stretching to 640 gave a median best
//! score of 0.88 and missed 0.5% of faces at 0.6, while enlarging to 320 gave 0.94 and missed none.
//!
//! YuNet finds faces down to about 10 pixels *in its input* (measured: a 10-pixel face scored
//! 0.72, 8 pixels nothing). A large photo shrunk to 640 therefore loses faces narrower than
//! `10 / scale` original pixels (about 60 px in a 4000-pixel-wide photo); tiling would find them
//! and is not done.
use fast_image_resize::{
    images::{Image, ImageRef},
    FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
};
use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::features::FaceBox;
use crate::models::{ColourOrder, DetectorSpec};

/// Small images are enlarged for the detector only until their longer side is this many pixels.
pub const UPSCALE_TO: u32 = 320;

/// Where an image went inside the detector's input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Width of the detector input (the resized image plus padding on the right).
    pub input_width: u32,
    /// Height of the detector input (the resized image plus padding at the bottom).
    pub input_height: u32,
    /// Horizontal scale (input pixels per original pixel).
    pub sx: f32,
    /// Vertical scale.
    pub sy: f32,
    /// Width of the resized image inside the input (the rest is padding on the right).
    pub width: u32,
    /// Height of the resized image inside the input (the rest is padding at the bottom).
    pub height: u32,
}

/// The resized size of a `w`×`h` image in a `size`×`size` letterbox: shrink to fit; enlarge only
/// until the longer side is `upscale_to` (never beyond `size`).
pub fn letterbox_size(w: u32, h: u32, size: u32, upscale_to: u32) -> (u32, u32) {
    let (wf, hf) = (w.max(1) as f64, h.max(1) as f64);
    let fit = (size as f64 / wf).min(size as f64 / hf);
    let up = (upscale_to as f64 / wf.max(hf)).max(1.0);
    let s = fit.min(up);
    (
        ((wf * s).round() as u32).clamp(1, size),
        ((hf * s).round() as u32).clamp(1, size),
    )
}

/// `n` rounded up to a multiple of `multiple` (at least `multiple`).
pub fn round_up(n: u32, multiple: u32) -> u32 {
    let m = multiple.max(1);
    n.max(1).div_ceil(m) * m
}

/// Letterboxes `img` into an NCHW tensor written into `out` (resized to fit; values 0..255 divided
/// by `scale`, channels in `colour` order, padding zero): the image is resized as
/// [`letterbox_size`] says for a `size`-pixel detector, and each side padded up to a multiple of
/// `multiple`; `multiple = size` gives the square `size`×`size` input of a fixed-size graph.
pub fn letterbox(
    img: &RgbImage,
    size: u32,
    multiple: u32,
    colour: ColourOrder,
    scale: f32,
    resizer: &mut Resizer,
    out: &mut Vec<f32>,
) -> Result<Letterbox> {
    let (w, h) = img.dimensions();
    let (nw, nh) = letterbox_size(w, h, size, UPSCALE_TO);
    let (iw, ih) = (round_up(nw, multiple), round_up(nh, multiple));
    let plane = (iw * ih) as usize;
    out.clear();
    out.resize(3 * plane, 0.0);
    let resized;
    let raw: &[u8] = if (nw, nh) == (w, h) {
        img.as_raw()
    } else {
        let resize_err = |e: &dyn std::fmt::Display| {
            Error::config(format!("cannot resize image for face detection: {e}"), None)
        };
        let src = ImageRef::new(w, h, img.as_raw(), PixelType::U8x3).map_err(|e| resize_err(&e))?;
        let mut dst = Image::new(nw, nh, PixelType::U8x3);
        let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        resizer
            .resize(&src, &mut dst, &opts)
            .map_err(|e| resize_err(&e))?;
        resized = dst.into_vec();
        &resized
    };
    let order: [usize; 3] = match colour {
        ColourOrder::Rgb => [0, 1, 2],
        ColourOrder::Bgr => [2, 1, 0],
    };
    let inv = 1.0 / scale;
    for (c, &src_c) in order.iter().enumerate() {
        let dst = &mut out[c * plane..(c + 1) * plane];
        for y in 0..nh as usize {
            let row = &raw[y * nw as usize * 3..(y + 1) * nw as usize * 3];
            let drow = &mut dst[y * iw as usize..y * iw as usize + nw as usize];
            for (d, px) in drow.iter_mut().zip(row.chunks_exact(3)) {
                *d = px[src_c] as f32 * inv;
            }
        }
    }
    Ok(Letterbox {
        input_width: iw,
        input_height: ih,
        sx: nw as f32 / w.max(1) as f32,
        sy: nh as f32 / h.max(1) as f32,
        width: nw,
        height: nh,
    })
}

/// The four outputs of one stride, as flat slices (`G = (input/stride)²` cells).
#[derive(Debug, Clone, Copy)]
pub struct LevelOutput<'a> {
    /// Stride in input pixels (8, 16 or 32).
    pub stride: u32,
    /// Class score per cell (`G` values).
    pub cls: &'a [f32],
    /// Objectness per cell (`G` values).
    pub obj: &'a [f32],
    /// dx, dy, log w, log h per cell (`4G` values).
    pub bbox: &'a [f32],
    /// Five (kx, ky) per cell (`10G` values).
    pub kps: &'a [f32],
}

/// Decodes one stride's outputs into faces (input pixels) whose score is at least `threshold`.
/// Fails when the slices do not have the lengths a `width`×`height` input implies.
pub fn decode_level(
    level: &LevelOutput<'_>,
    width: u32,
    height: u32,
    threshold: f32,
) -> Result<Vec<FaceBox>> {
    let s = level.stride;
    if s == 0 || !width.is_multiple_of(s) || !height.is_multiple_of(s) {
        return Err(Error::config(
            format!("YuNet stride {s} does not divide the input size {width}×{height}"),
            None,
        ));
    }
    let grid = (width / s) as usize;
    let g = grid * (height / s) as usize;
    if level.cls.len() != g
        || level.obj.len() != g
        || level.bbox.len() != 4 * g
        || level.kps.len() != 10 * g
    {
        return Err(Error::config(
            format!(
                "YuNet outputs for stride {s} have {}/{}/{}/{} values (cls/obj/bbox/kps), expected {g}/{g}/{}/{} for a {width}×{height} input",
                level.cls.len(),
                level.obj.len(),
                level.bbox.len(),
                level.kps.len(),
                4 * g,
                10 * g
            ),
            Some("the detector file does not match models/face.toml; rebuild it with scripts/setup".into()),
        ));
    }
    let sf = s as f32;
    let mut faces = Vec::new();
    for i in 0..g {
        let score = (level.cls[i].clamp(0.0, 1.0) * level.obj[i].clamp(0.0, 1.0)).sqrt();
        if score.is_nan() || score < threshold {
            continue;
        }
        let (row, col) = ((i / grid) as f32, (i % grid) as f32);
        let b = &level.bbox[4 * i..4 * i + 4];
        let (cx, cy) = ((col + b[0]) * sf, (row + b[1]) * sf);
        let (w, h) = (b[2].exp() * sf, b[3].exp() * sf);
        let k = &level.kps[10 * i..10 * i + 10];
        let mut landmarks = [[0f32; 2]; 5];
        for (j, l) in landmarks.iter_mut().enumerate() {
            *l = [(col + k[2 * j]) * sf, (row + k[2 * j + 1]) * sf];
        }
        faces.push(FaceBox {
            bbox: [cx - w / 2.0, cy - h / 2.0, w, h],
            score,
            landmarks,
        });
    }
    Ok(faces)
}

/// Intersection over union of two `[x, y, w, h]` boxes (0 when either is empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let iy = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let union = a[2].max(0.0) * a[3].max(0.0) + b[2].max(0.0) * b[3].max(0.0) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Greedy non-maximum suppression: highest score first, dropping every face whose IoU with a kept
/// one is above `iou_threshold` (OpenCV `NMSBoxes`). The result is sorted by score, highest first.
pub fn nms(mut faces: Vec<FaceBox>, iou_threshold: f32) -> Vec<FaceBox> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<FaceBox> = Vec::new();
    for f in faces {
        if kept.iter().all(|k| iou(&k.bbox, &f.bbox) <= iou_threshold) {
            kept.push(f);
        }
    }
    kept
}

/// Maps a face from letterbox input pixels back to original image pixels.
pub fn to_original(face: &FaceBox, lb: &Letterbox) -> FaceBox {
    let mut f = *face;
    f.bbox = [
        face.bbox[0] / lb.sx,
        face.bbox[1] / lb.sy,
        face.bbox[2] / lb.sx,
        face.bbox[3] / lb.sy,
    ];
    for l in f.landmarks.iter_mut() {
        *l = [l[0] / lb.sx, l[1] / lb.sy];
    }
    f
}

/// A YuNet session.
#[derive(Debug)]
pub struct Detector {
    session: Session,
    spec: DetectorSpec,
    /// Inputs are padded to a multiple of this: 32 for a graph with free height and width, the
    /// manifest's size for a fixed one (square letterbox).
    multiple: u32,
    buf: Vec<f32>,
    resizer: Resizer,
}

impl Detector {
    /// Opens the detector at `path` and checks its input and outputs against `spec`.
    pub fn open(
        env: &ort::environment::Environment,
        spec: &DetectorSpec,
        path: &std::path::Path,
        opts: crate::backbone::SessionOptions,
    ) -> Result<Detector> {
        let session = crate::backbone::open_session(env, path, opts)?;
        let mismatch = |what: String| {
            Error::bad_file(
                path,
                what,
                Some(
                    "the [detector] table of the face manifest does not describe this file".into(),
                ),
            )
        };
        let n = spec.size as i64;
        let mut multiple = spec.size;
        match crate::backbone::outlet_shape(session.inputs(), &spec.input) {
            Some(s)
                if s.len() == 4 && s[1..].iter().zip([3, n, n]).all(|(&a, b)| a == b || a < 0) =>
            {
                if s[2] < 0 && s[3] < 0 {
                    multiple = 32;
                }
            }
            Some(s) => {
                return Err(mismatch(format!(
                    "detector input `{}` has shape {s:?}, expected [1, 3, {n}, {n}]",
                    spec.input
                )))
            }
            None => return Err(mismatch(format!("detector has no input `{}`", spec.input))),
        }
        for s in &spec.strides {
            for name in [
                format!("cls_{s}"),
                format!("obj_{s}"),
                format!("bbox_{s}"),
                format!("kps_{s}"),
            ] {
                if !session.outputs().iter().any(|o| o.name() == name) {
                    return Err(mismatch(format!("detector has no output `{name}`")));
                }
            }
        }
        Ok(Detector {
            session,
            spec: spec.clone(),
            multiple,
            buf: Vec::new(),
            resizer: Resizer::new(),
        })
    }

    /// Detects faces with score ≥ `threshold`, after NMS at `nms_iou`, in original image pixels,
    /// highest score first. Boxes may extend past the image border.
    pub fn detect(&mut self, img: &RgbImage, threshold: f32, nms_iou: f32) -> Result<Vec<FaceBox>> {
        let lb = letterbox(
            img,
            self.spec.size,
            self.multiple,
            self.spec.colour,
            self.spec.scale,
            &mut self.resizer,
            &mut self.buf,
        )?;
        let (iw, ih) = (lb.input_width, lb.input_height);
        let tensor =
            TensorRef::from_array_view(([1usize, 3, ih as usize, iw as usize], &self.buf[..]))?;
        let outputs = self
            .session
            .run(ort::inputs![self.spec.input.as_str() => tensor])?;
        let mut faces = Vec::new();
        for &s in &self.spec.strides {
            let get = |kind: &str| -> Result<&[f32]> {
                Ok(outputs[format!("{kind}_{s}").as_str()]
                    .try_extract_tensor::<f32>()?
                    .1)
            };
            let level = LevelOutput {
                stride: s,
                cls: get("cls")?,
                obj: get("obj")?,
                bbox: get("bbox")?,
                kps: get("kps")?,
            };
            faces.extend(decode_level(&level, iw, ih, threshold)?);
        }
        // Faces centred in the padding are artefacts of the letterbox.
        faces.retain(|f| {
            f.bbox[0] + f.bbox[2] / 2.0 < lb.width as f32
                && f.bbox[1] + f.bbox[3] / 2.0 < lb.height as f32
        });
        Ok(nms(faces, nms_iou)
            .iter()
            .map(|f| to_original(f, &lb))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_sizes() {
        assert_eq!(letterbox_size(6000, 4000, 640, 320), (640, 427));
        assert_eq!(letterbox_size(92, 112, 640, 320), (263, 320));
        assert_eq!(letterbox_size(500, 400, 640, 320), (500, 400));
        assert_eq!(letterbox_size(1, 10000, 640, 320), (1, 640));
    }

    #[test]
    fn letterbox_pads_and_orders_channels() {
        let mut img = RgbImage::new(4, 2);
        img.put_pixel(1, 1, image::Rgb([10, 20, 30]));
        let mut out = vec![7.0; 3];
        let mut r = Resizer::new();
        // 4×2 is below UPSCALE_TO, so it is enlarged to fit 8×8 (scale 2); the square input.
        let lb = letterbox(&img, 8, 8, ColourOrder::Bgr, 1.0, &mut r, &mut out).unwrap();
        assert_eq!((lb.width, lb.height, lb.sx, lb.sy), (8, 4, 2.0, 2.0));
        assert_eq!((lb.input_width, lb.input_height, out.len()), (8, 8, 3 * 64));
        assert!(
            out[4 * 8..8 * 8].iter().all(|&v| v == 0.0),
            "bottom padding is black"
        );
        let blue_plane_max = out[..64].iter().cloned().fold(0.0, f32::max);
        let red_plane_max = out[128..].iter().cloned().fold(0.0, f32::max);
        assert!(blue_plane_max > red_plane_max, "BGR: blue first");
        // Padded to a multiple of 4 only: 8×4, the image's own aspect ratio.
        let lb = letterbox(&img, 8, 4, ColourOrder::Bgr, 1.0, &mut r, &mut out).unwrap();
        assert_eq!((lb.input_width, lb.input_height, out.len()), (8, 4, 3 * 32));
        assert_eq!(round_up(427, 32), 448);
        assert_eq!(round_up(640, 32), 640);
    }
}
