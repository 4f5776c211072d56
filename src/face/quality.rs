//! Is a detection a usable face? Two measures the detector's score does not give.
//!
//! - [`sharpness`]: the variance of the 4-neighbour Laplacian of the aligned crop's grey centre
//!   (the middle 80×80 of 112×112, where the face is, clear of the black fill beyond the image
//!   border; pixels of that fill, pure black, are left out). Every crop has the same scale, so one threshold fits faces of every size; a face
//!   enlarged from few pixels is blurred too, and is as useless to the embedder.
//! - [`yaw_degrees`]: how far the face is turned, from the five landmarks: the nose tip's offset
//!   from the eyes' midpoint along the eye line, in half eye distances, is about tan(yaw), because
//!   the nose tip stands out of the face by about half the eye distance on adult faces.
use image::RgbImage;

/// Variance of the Laplacian of the grey centre of an aligned crop (see the module
/// documentation). 0 for a crop smaller than 3×3.
pub fn sharpness(crop: &RgbImage) -> f32 {
    let (w, h) = crop.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    // Pure black is the fill where the face runs past the photo's border: its edge is no detail
    // of the face, so every Laplacian that touches it is left out.
    let grey: Vec<f32> = crop
        .pixels()
        .map(|p| {
            if p.0 == [0, 0, 0] {
                f32::NAN
            } else {
                0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
            }
        })
        .collect();
    let (w, h) = (w as usize, h as usize);
    let (mx, my) = ((w / 7).max(1), (h / 7).max(1));
    let (mut sum, mut sum2, mut n) = (0f64, 0f64, 0f64);
    for y in my.max(1)..(h - my).min(h - 1) {
        for x in mx.max(1)..(w - mx).min(w - 1) {
            let c = grey[y * w + x];
            let l = grey[(y - 1) * w + x]
                + grey[(y + 1) * w + x]
                + grey[y * w + x - 1]
                + grey[y * w + x + 1]
                - 4.0 * c;
            if l.is_nan() {
                continue;
            }
            sum += l as f64;
            sum2 += (l as f64) * (l as f64);
            n += 1.0;
        }
    }
    if n == 0.0 {
        return 0.0;
    }
    let mean = sum / n;
    (sum2 / n - mean * mean).max(0.0) as f32
}

/// How far a face is turned from frontal, in degrees (0..90), from its five landmarks (right eye,
/// left eye, nose tip, mouth corners). 90 when the eyes coincide.
pub fn yaw_degrees(landmarks: &[[f32; 2]; 5]) -> f32 {
    let [re, le, nose, _, _] = *landmarks;
    let (ex, ey) = (le[0] - re[0], le[1] - re[1]);
    let d = ex.hypot(ey);
    if d.is_nan() || d <= 1e-3 {
        return 90.0;
    }
    let (mx, my) = ((re[0] + le[0]) / 2.0, (re[1] + le[1]) / 2.0);
    let along = ((nose[0] - mx) * ex + (nose[1] - my) * ey) / d;
    (along / (d / 2.0)).abs().atan().to_degrees()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn flat_is_not_sharp_and_edges_are() {
        assert_eq!(
            sharpness(&RgbImage::from_pixel(112, 112, Rgb([90, 90, 90]))),
            0.0
        );
        let checks = RgbImage::from_fn(112, 112, |x, y| {
            if (x / 4 + y / 4) % 2 == 0 {
                Rgb([20, 20, 20])
            } else {
                Rgb([255, 255, 255])
            }
        });
        let s = sharpness(&checks);
        let blurred = sharpness(&image::imageops::blur(&checks, 4.0));
        assert!(s > 1000.0 && blurred < s / 10.0, "{s} vs {blurred}");
        // The black fill past a photo's border is no detail: a sharp edge against it is ignored.
        let mut half = RgbImage::from_pixel(112, 112, Rgb([90, 90, 90]));
        for y in 0..112 {
            for x in 0..56 {
                half.put_pixel(x, y, Rgb([0, 0, 0]));
            }
        }
        assert_eq!(sharpness(&half), 0.0);
    }

    #[test]
    fn yaw_from_the_nose_offset() {
        let frontal = [
            [40.0, 50.0],
            [72.0, 50.0],
            [56.0, 70.0],
            [42.0, 90.0],
            [70.0, 90.0],
        ];
        assert!(yaw_degrees(&frontal) < 1.0);
        // Nose over the left eye: tan(yaw) = 1.
        let turned = [
            [40.0, 50.0],
            [72.0, 50.0],
            [72.0, 70.0],
            [42.0, 90.0],
            [70.0, 90.0],
        ];
        assert!((yaw_degrees(&turned) - 45.0).abs() < 0.1);
        let same = [
            [40.0, 50.0],
            [40.0, 50.0],
            [56.0, 70.0],
            [42.0, 90.0],
            [70.0, 90.0],
        ];
        assert_eq!(yaw_degrees(&same), 90.0);
    }
}
