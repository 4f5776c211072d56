//! Preprocess: decode an image file (any colour type, EXIF orientation applied), resize and crop it
//! with `fast_image_resize`, and normalise it into the model's input tensor, all as the manifest
//! says. Training, prediction and benchmarks all come through here.
use std::io::Cursor;

use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};
use sha2::{Digest, Sha256};

use crate::models::{ColourOrder, Filter, InputSpec, Layout, PreprocessSpec, ResizeRule};

/// Largest allocation one decoded image may need (a decompression-bomb guard).
pub const MAX_DECODE_BYTES: u64 = 400 * 1024 * 1024;
/// Largest width or height accepted.
pub const MAX_SIDE: u32 = 30_000;

/// Bumped whenever the preprocessing code changes what it produces, so cached features of the
/// old code are never reused.
pub const PREPROCESS_CODE_VERSION: u32 = 2;

/// Why an image could not be used. The message is meant for people and names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ImageProblem(pub String);

/// Decodes an image from its bytes into 8-bit RGB, applying EXIF orientation. Greyscale, palette,
/// alpha (dropped), 16-bit and CMYK inputs all become RGB; GIFs give their first frame.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, ImageProblem> {
    decode_rgb_at_least(bytes, None)
}

/// Like [`decode_rgb`], but a large JPEG may be decoded at 1/4 or 1/8 of its size in the DCT
/// domain (much faster than decoding every pixel and shrinking), as long as its shorter side stays
/// at least `min_short_side` pixels. Used when the model's input is far smaller than the photo.
pub fn decode_rgb_at_least(
    bytes: &[u8],
    min_short_side: Option<u32>,
) -> Result<RgbImage, ImageProblem> {
    if bytes.is_empty() {
        return Err(ImageProblem("empty file (0 bytes)".into()));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) && !jpeg_has_end_marker(bytes) {
        // The JPEG decoder fills a cut-off scan with grey and reports success; a half-grey photo
        // would silently poison the features, so a missing end marker is an error.
        return Err(ImageProblem(
            "damaged or truncated image: the JPEG ends before its end marker (FF D9); re-copy or re-download it".into(),
        ));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageProblem(format!("cannot read: {e}")))?;
    let format = reader.format();
    if format.is_none() {
        return Err(ImageProblem(
            "not a recognised image format (the content is not JPEG, PNG, GIF, BMP, WebP or TIFF)"
                .into(),
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(describe)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    if let (Some(min_side), Some(image::ImageFormat::Jpeg)) = (min_short_side, format) {
        let (w, h) = decoder.dimensions();
        if let Some(mut img) = decode_jpeg_reduced(bytes, w, h, min_side) {
            img.apply_orientation(orientation);
            return Ok(img.into_rgb8());
        }
    }
    let mut img = DynamicImage::from_decoder(decoder).map_err(describe)?;
    img.apply_orientation(orientation);
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    })
}

/// Decodes a JPEG at 1/8 or 1/4 scale when its shorter side stays at least `min_side`; `None` when
/// no such reduction applies (or the reduced decoder fails: the full decoder then has its say).
fn decode_jpeg_reduced(bytes: &[u8], w: u32, h: u32, min_side: u32) -> Option<DynamicImage> {
    let factor = [8u32, 4]
        .into_iter()
        .find(|f| w.min(h) / f >= min_side.max(1))?;
    let mut dec = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    let (tw, th) = (w.div_ceil(factor), h.div_ceil(factor));
    let (sw, sh) = dec
        .scale(u16::try_from(tw).ok()?, u16::try_from(th).ok()?)
        .ok()?;
    let pixels = dec.decode().ok()?;
    let (sw, sh) = (sw as u32, sh as u32);
    use jpeg_decoder::PixelFormat as P;
    match dec.info()?.pixel_format {
        P::RGB24 => RgbImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageRgb8),
        P::L8 => image::GrayImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageLuma8),
        // 16-bit and CMYK JPEGs are rare: the full decoder handles them.
        _ => None,
    }
}

/// Whether a JPEG's end-of-image marker is near its end (a few cameras append data after it).
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn describe(e: image::ImageError) -> ImageProblem {
    use image::ImageError as E;
    ImageProblem(match e {
        E::Limits(l) => format!(
            "image too large to decode safely ({l}); qcyn accepts at most {MAX_SIDE} pixels a side and {} MiB decoded",
            MAX_DECODE_BYTES / (1024 * 1024)
        ),
        E::Decoding(d) => format!("damaged or truncated image: {d}"),
        E::Unsupported(u) => format!("unsupported image: {u}"),
        E::IoError(io) => format!("damaged or truncated image: {io}"),
        other => format!("cannot decode: {other}"),
    })
}

/// Identifies a preprocessing: the same id means the same tensor for the same image.
pub fn preprocess_id(spec: &PreprocessSpec, input: &InputSpec) -> String {
    let text = format!(
        "v{PREPROCESS_CODE_VERSION}|{}",
        serde_json::to_string(&(spec, input)).expect("serialisable preprocessing spec")
    );
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Turns decoded images into model input tensors.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    spec: PreprocessSpec,
    input: InputSpec,
    /// Lookup table: `lut[c][v]` is the normalised value of pixel value `v` in model channel `c`.
    lut: [[f32; 256]; 3],
}

impl Preprocessor {
    /// A preprocessor for a model's spec and input.
    pub fn new(spec: &PreprocessSpec, input: &InputSpec) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 / spec.scale - spec.mean[c]) / spec.std[c];
            }
        }
        Preprocessor {
            spec: spec.clone(),
            input: input.clone(),
            lut,
        }
    }

    /// Number of `f32` values in one image's tensor (3 × height × width).
    pub fn tensor_len(&self) -> usize {
        3 * self.input.height as usize * self.input.width as usize
    }

    /// Decodes `bytes` and writes the tensor into `out` (length [`Self::tensor_len`]).
    pub fn prepare_bytes(&self, bytes: &[u8], out: &mut [f32]) -> Result<(), ImageProblem> {
        let img = decode_rgb_at_least(bytes, Some(self.min_short_side()))?;
        self.prepare(&img, out)
    }

    /// The shorter side a decoded image needs so that resizing it to the input only shrinks.
    pub fn min_short_side(&self) -> u32 {
        match self.spec.resize {
            ResizeRule::ShorterThenCenterCrop => self
                .spec
                .resize_to
                .unwrap_or(self.input.width.min(self.input.height)),
            ResizeRule::Stretch | ResizeRule::Letterbox => self.input.width.max(self.input.height),
        }
    }

    /// Resizes, crops and normalises a decoded image into `out` (length [`Self::tensor_len`]).
    pub fn prepare(&self, img: &RgbImage, out: &mut [f32]) -> Result<(), ImageProblem> {
        let resized = self.resize(img)?;
        self.normalise(&resized, out);
        Ok(())
    }

    /// The resized and cropped 8-bit RGB image, exactly the model's input size.
    pub fn resize(&self, img: &RgbImage) -> Result<RgbImage, ImageProblem> {
        let (w, h) = (self.input.width, self.input.height);
        let (sw, sh) = img.dimensions();
        if sw == 0 || sh == 0 {
            return Err(ImageProblem("image has zero width or height".into()));
        }
        let src = Image::from_vec_u8(sw, sh, img.as_raw().clone(), PixelType::U8x3)
            .map_err(|e| ImageProblem(format!("cannot resize: {e}")))?;
        let alg = ResizeAlg::Convolution(match self.spec.filter {
            Filter::Bilinear => FilterType::Bilinear,
            Filter::Bicubic => FilterType::CatmullRom,
            Filter::Lanczos3 => FilterType::Lanczos3,
        });
        let mut resizer = Resizer::new();
        let run = |resizer: &mut Resizer, dst: &mut Image, opts: &ResizeOptions| {
            resizer
                .resize(&src, dst, opts)
                .map_err(|e| ImageProblem(format!("cannot resize: {e}")))
        };
        let opts = ResizeOptions::new().resize_alg(alg);
        let out = match self.spec.resize {
            ResizeRule::Stretch => {
                let mut dst = Image::new(w, h, PixelType::U8x3);
                run(&mut resizer, &mut dst, &opts)?;
                dst.into_vec()
            }
            ResizeRule::ShorterThenCenterCrop => {
                // Resizing the shorter side to `resize_to` and cropping the centre is the same as
                // cropping the matching centre region of the source and resizing it once.
                let resize_to = self.spec.resize_to.unwrap_or(w.min(h)) as f64;
                let s = resize_to / (sw.min(sh) as f64);
                let (rw, rh) = ((sw as f64 * s).round(), (sh as f64 * s).round());
                let (cw, ch) = (w as f64 / (rw / sw as f64), h as f64 / (rh / sh as f64));
                let left = ((rw - w as f64) / 2.0).round().max(0.0) / (rw / sw as f64);
                let top = ((rh - h as f64) / 2.0).round().max(0.0) / (rh / sh as f64);
                let mut dst = Image::new(w, h, PixelType::U8x3);
                run(
                    &mut resizer,
                    &mut dst,
                    &opts.crop(left, top, cw.min(sw as f64), ch.min(sh as f64)),
                )?;
                dst.into_vec()
            }
            ResizeRule::Letterbox => {
                let s = (w as f64 / sw as f64).min(h as f64 / sh as f64);
                let (nw, nh) = (
                    ((sw as f64 * s).round() as u32).clamp(1, w),
                    ((sh as f64 * s).round() as u32).clamp(1, h),
                );
                let mut dst = Image::new(nw, nh, PixelType::U8x3);
                run(&mut resizer, &mut dst, &opts)?;
                let small =
                    RgbImage::from_raw(nw, nh, dst.into_vec()).expect("buffer size matches");
                let mut canvas = RgbImage::new(w, h);
                image::imageops::replace(&mut canvas, &small, 0, 0);
                canvas.into_raw()
            }
        };
        Ok(RgbImage::from_raw(w, h, out).expect("resizer output has the input size"))
    }

    /// Normalises an image of exactly the input size into `out`.
    pub fn normalise(&self, img: &RgbImage, out: &mut [f32]) {
        let (w, h) = (self.input.width as usize, self.input.height as usize);
        assert_eq!(out.len(), 3 * w * h, "output slice has the tensor's length");
        let plane = w * h;
        let order: [usize; 3] = match self.spec.colour {
            ColourOrder::Rgb => [0, 1, 2],
            ColourOrder::Bgr => [2, 1, 0],
        };
        let raw = img.as_raw();
        match self.input.layout {
            Layout::Nchw => {
                for (c, &src_c) in order.iter().enumerate() {
                    let lut = &self.lut[c];
                    let dst = &mut out[c * plane..(c + 1) * plane];
                    for (i, d) in dst.iter_mut().enumerate() {
                        *d = lut[raw[i * 3 + src_c] as usize];
                    }
                }
            }
            Layout::Nhwc => {
                for i in 0..plane {
                    for (c, &src_c) in order.iter().enumerate() {
                        out[i * 3 + c] = self.lut[c][raw[i * 3 + src_c] as usize];
                    }
                }
            }
        }
    }
}
