//! Show what the face model sees: every aligned crop as a PNG, and one contact sheet per class.
//!
//! `out/<class>/<image-stem>_<k>.png` is face `k` of an image (0 = most prominent), exactly the
//! 112×112 crop the embedder gets. `out/<class>.png` is a grid of one class's crops, each in a thin
//! frame: green for the faces training uses (chosen by identity, [`choose_by_identity`]: in a
//! collage every shot of the class's person, in a group photo the face that looks like the class's
//! other photos), amber for the two faces of an ambiguous image, grey for other faces (bystanders,
//! and every face of a photo where none looks like the class's person); an image without a face
//! (or that cannot be read) is a red tile with a dark cross.
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::face::identity::{choose_by_identity, IdentityChoice, IdentityOptions};
use crate::face::{FaceEngine, FaceModel};
use crate::features::Embedding;
use crate::progress::Reporter;

/// Frame colour of the face training uses.
pub const CHOSEN: Rgb<u8> = Rgb([40, 200, 60]);
/// Frame colour of the two faces of an ambiguous image.
pub const AMBIGUOUS: Rgb<u8> = Rgb([240, 170, 20]);
/// Frame colour of other faces.
pub const OTHER: Rgb<u8> = Rgb([150, 150, 150]);
/// Colour of the tile of an image without a face.
pub const NO_FACE: Rgb<u8> = Rgb([200, 40, 40]);

const BORDER: u32 = 3;
const GAP: u32 = 4;
const COLUMNS: u32 = 8;

/// One image and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledImage {
    /// The image file.
    pub path: PathBuf,
    /// Its class name.
    pub class: String,
}

/// What [`write_faces`] found for one class.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassFaces {
    /// Class name.
    pub class: String,
    /// Images of the class.
    pub images: usize,
    /// Faces kept in them.
    pub faces: usize,
    /// Images without a face.
    pub no_face: Vec<PathBuf>,
    /// Images in which two different people look like the class equally well.
    pub ambiguous: Vec<PathBuf>,
    /// Images in which no face looks like the class's other photos.
    pub unmatched: Vec<PathBuf>,
    /// Images with several faces whose training face(s) identity chose.
    pub resolved: usize,
    /// Images that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Faces found but ignored (too small, blurred, turned away, outside the image); counted only
    /// for images detected in this run, not for faces read from the cache.
    pub ignored_faces: usize,
    /// The contact sheet written.
    pub sheet: PathBuf,
}

/// What [`write_faces`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FacesReport {
    /// The output folder.
    pub out: PathBuf,
    /// One entry per class, sorted by name.
    pub classes: Vec<ClassFaces>,
}

/// A class name made safe as one path component.
fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => format!("_{s}"),
        _ => s,
    }
}

fn framed(crop: &RgbImage, colour: Rgb<u8>) -> RgbImage {
    let mut tile = RgbImage::from_pixel(
        crop.width() + 2 * BORDER,
        crop.height() + 2 * BORDER,
        colour,
    );
    image::imageops::replace(&mut tile, crop, BORDER as i64, BORDER as i64);
    tile
}

fn no_face_tile(size: u32) -> RgbImage {
    let side = size + 2 * BORDER;
    let mut tile = RgbImage::from_pixel(side, side, NO_FACE);
    for i in BORDER..side - BORDER {
        for t in 0..2 {
            let j = (i + t).min(side - 1);
            tile.put_pixel(i, j, Rgb([60, 0, 0]));
            tile.put_pixel(side - 1 - i, j, Rgb([60, 0, 0]));
        }
    }
    tile
}

fn contact_sheet(tiles: &[RgbImage], tile_side: u32) -> RgbImage {
    let n = tiles.len().max(1) as u32;
    let cols = n.min(COLUMNS);
    let rows = n.div_ceil(cols);
    let step = tile_side + GAP;
    let mut sheet =
        RgbImage::from_pixel(cols * step + GAP, rows * step + GAP, Rgb([255, 255, 255]));
    for (i, t) in tiles.iter().enumerate() {
        let (c, r) = (i as u32 % cols, i as u32 / cols);
        image::imageops::replace(
            &mut sheet,
            t,
            (GAP + c * step) as i64,
            (GAP + r * step) as i64,
        );
    }
    sheet
}

fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let tmp = path.with_extension("png.tmp");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| match e {
            image::ImageError::IoError(io) => Error::io("cannot write", &tmp, io),
            other => Error::bad_file(&tmp, format!("cannot write PNG: {other}"), None),
        })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("cannot write", path, e))
}

/// What the face pipeline gave for one image.
#[derive(Debug, Clone)]
pub struct ImageFaces {
    /// Its faces, most prominent first, or why it could not be read.
    pub faces: std::result::Result<Vec<Embedding>, String>,
    /// Faces the detector found but the pipeline ignored (0 when not known, e.g. from the cache).
    pub ignored: usize,
}

/// Detects, aligns and embeds every face of `images` with `engine`, then writes them as
/// [`write_sheets`] does. Unreadable images are reported, not fatal.
pub fn write_faces(
    engine: &mut FaceEngine,
    images: &[LabelledImage],
    out: &Path,
    reporter: &dyn Reporter,
) -> Result<FacesReport> {
    reporter.start("finding faces", Some(images.len() as u64));
    let mut faces = Vec::with_capacity(images.len());
    for item in images {
        reporter.advance(1);
        let decoded = decode(&item.path);
        faces.push(match decoded {
            Ok(img) => {
                let a = engine.analyse(&img)?;
                ImageFaces {
                    ignored: a.ignored.len(),
                    faces: Ok(a.embeddings()),
                }
            }
            Err(reason) => ImageFaces {
                faces: Err(reason),
                ignored: 0,
            },
        });
    }
    reporter.finish();
    let model = engine.model().clone();
    write_sheets(
        &model,
        images,
        &faces,
        &IdentityOptions {
            match_cosine: model
                .embedder
                .match_cosine_threshold
                .unwrap_or(IdentityOptions::default().match_cosine),
            ..Default::default()
        },
        out,
        reporter,
    )
}

fn decode(path: &Path) -> std::result::Result<RgbImage, String> {
    std::fs::read(path)
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|b| crate::preprocess::decode_rgb(&b).map_err(|p| p.0))
}

/// Writes the aligned crop of every face of `images` (their faces as the pipeline gave them, e.g.
/// from the feature cache: each image is decoded again only to cut the crops) and one contact
/// sheet per class under `out`, the faces framed by what the identity rule chose for training.
pub fn write_sheets(
    model: &FaceModel,
    images: &[LabelledImage],
    faces: &[ImageFaces],
    identity: &IdentityOptions,
    out: &Path,
    reporter: &dyn Reporter,
) -> Result<FacesReport> {
    assert_eq!(images.len(), faces.len(), "one result per image");
    let size = model.embedder.size;
    std::fs::create_dir_all(out).map_err(|e| Error::io("cannot create", out, e))?;
    let mut by_class: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, img) in images.iter().enumerate() {
        by_class.entry(img.class.as_str()).or_default().push(i);
    }
    reporter.start("aligning faces", Some(images.len() as u64));
    let mut classes = Vec::new();
    for (class, members) in by_class {
        let dir_name = safe_name(class);
        let dir = out.join(&dir_name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        let mut report = ClassFaces {
            class: class.to_string(),
            images: members.len(),
            sheet: out.join(format!("{dir_name}.png")),
            ..Default::default()
        };
        // The identity rule over the class's readable images.
        let readable: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| faces[i].faces.is_ok())
            .collect();
        let photos: Vec<&[Embedding]> = readable
            .iter()
            .map(|&i| faces[i].faces.as_ref().map_or(&[][..], Vec::as_slice))
            .collect();
        let choices = choose_by_identity(&photos, &vec![0; photos.len()], identity);
        let choice_of = |i: usize| readable.iter().position(|&r| r == i).map(|k| &choices[k]);
        let mut tiles = Vec::new();
        let mut stems = HashSet::new();
        for i in members {
            reporter.advance(1);
            let item = &images[i];
            report.ignored_faces += faces[i].ignored;
            let found = match &faces[i].faces {
                Ok(f) => f,
                Err(reason) => {
                    reporter.message(&format!("{}: {reason}", item.path.display()));
                    report.unreadable.push((item.path.clone(), reason.clone()));
                    tiles.push(no_face_tile(size));
                    continue;
                }
            };
            let boxes: Vec<_> = found.iter().filter_map(|e| e.face).collect();
            if boxes.is_empty() {
                report.no_face.push(item.path.clone());
                tiles.push(no_face_tile(size));
                continue;
            }
            let img = match decode(&item.path) {
                Ok(img) => img,
                Err(reason) => {
                    report.unreadable.push((item.path.clone(), reason));
                    tiles.push(no_face_tile(size));
                    continue;
                }
            };
            let choice = choice_of(i).cloned().unwrap_or(IdentityChoice::NoFace);
            match &choice {
                IdentityChoice::Ambiguous { .. } => report.ambiguous.push(item.path.clone()),
                IdentityChoice::NoMatch { .. } => report.unmatched.push(item.path.clone()),
                IdentityChoice::Faces { resolved: true, .. } => report.resolved += 1,
                _ => {}
            }
            let base = item
                .path
                .file_stem()
                .map_or_else(|| "image".to_string(), |s| s.to_string_lossy().into_owned());
            let mut stem = base.clone();
            let mut n = 1;
            while !stems.insert(stem.clone()) {
                n += 1;
                stem = format!("{base}~{n}");
            }
            for (k, b) in boxes.iter().enumerate() {
                let Some(crop) = crate::face::align::align_crop(
                    &img,
                    &b.landmarks,
                    &model.embedder.align_landmarks,
                    size,
                ) else {
                    continue;
                };
                report.faces += 1;
                save_png(&crop, &dir.join(format!("{stem}_{k}.png")))?;
                let colour = match &choice {
                    IdentityChoice::Faces { faces, .. } if faces.contains(&k) => CHOSEN,
                    IdentityChoice::Ambiguous { faces, .. } if faces.contains(&k) => AMBIGUOUS,
                    _ => OTHER,
                };
                tiles.push(framed(&crop, colour));
            }
        }
        save_png(&contact_sheet(&tiles, size + 2 * BORDER), &report.sheet)?;
        classes.push(report);
    }
    reporter.finish();
    Ok(FacesReport {
        out: out.to_path_buf(),
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sheet_layout() {
        assert_eq!(safe_name("a/b"), "a_b");
        assert_eq!(safe_name(".."), "_..");
        let tiles = vec![no_face_tile(10); 9];
        let sheet = contact_sheet(&tiles, 16);
        assert_eq!(sheet.dimensions(), (8 * 20 + 4, 2 * 20 + 4));
        assert_eq!(*sheet.get_pixel(4, 4), NO_FACE);
    }
}
