//! Face mode: detect (YuNet) → align (5-point similarity) → embed (SFace).
use ort::environment::Environment;

use crate::backbone::SessionOptions;
use crate::error::{Error, Result};
use crate::extract::Pipeline;
use crate::models::Model;

/// The face pipeline a `kind = "face"` manifest describes.
pub fn pipeline(_env: &Environment, model: &Model, _opts: SessionOptions) -> Result<Pipeline> {
    Err(Error::config(format!("face model `{}` is not supported yet", model.manifest.name), None))
}
