//! Cache: feature vectors keyed by image content, model and preprocessing.
//!
//! Layout (the format version is in the folder name, so a format change never reads old files):
//!
//! ```text
//! <root>/features-v1/<model>-<model sha256[..12]>-<preprocessing id[..12]>/<key[..2]>/<key>.feat
//! <root>/files-v1.json      path + size + mtime → content hash, so unchanged files are not re-read
//! ```
//!
//! Each entry is written to a temporary file and renamed into place, so a killed run leaves either
//! the whole entry or none. Every entry ends with a checksum; a damaged one reads as missing and is
//! recomputed.
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic::write_atomic_fast;
use crate::error::{Error, Result};
use crate::features::{Embedding, FaceBox};

const MAGIC: &[u8; 8] = b"QCYNFEA1";
/// Entries stored as float16 (large feature maps, see [`FeatureCache::with_half`]).
const MAGIC_HALF: &[u8; 8] = b"QCYNFEH1";
const FEATURES_DIR: &str = "features-v1";
const FILES_INDEX: &str = "files-v1.json";

/// The default cache folder: `QCYN_CACHE_DIR`, else `$XDG_CACHE_HOME/qcyn`, else `~/.cache/qcyn`.
pub fn default_root() -> PathBuf {
    if let Some(p) = std::env::var_os("QCYN_CACHE_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("qcyn");
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("qcyn"),
        None => std::env::temp_dir().join("qcyn-cache"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileEntry {
    stamp: Stamp,
    hash: String,
}

/// The content key of an image file, and its bytes when they had to be read.
#[derive(Debug)]
pub struct Keyed {
    /// sha256 of the file's content (hex).
    pub key: String,
    /// The file's bytes, when reading them was needed to hash.
    pub bytes: Option<Vec<u8>>,
}

/// A feature cache for one model and one preprocessing.
#[derive(Debug)]
pub struct FeatureCache {
    root: PathBuf,
    dir: PathBuf,
    files: Mutex<HashMap<PathBuf, FileEntry>>,
    files_dirty: Mutex<bool>,
    corrupt: Mutex<u64>,
    half: bool,
}

impl FeatureCache {
    /// Opens (creating if needed) the cache of `model` with `model_sha256` and `preprocess_id`.
    pub fn open(root: &Path, model: &str, model_sha256: &str, preprocess_id: &str) -> Result<Self> {
        let short = |s: &str| s.chars().take(12).collect::<String>();
        let dir = root.join(FEATURES_DIR).join(format!(
            "{model}-{}-{}",
            short(model_sha256),
            short(preprocess_id)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
            action: "cannot create cache folder",
            path: dir.clone(),
            source: e,
        })?;
        let files = std::fs::read(root.join(FILES_INDEX))
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<(PathBuf, FileEntry)>>(&b).ok())
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        Ok(FeatureCache {
            root: root.to_path_buf(),
            dir,
            files: Mutex::new(files),
            files_dirty: Mutex::new(false),
            corrupt: Mutex::new(0),
            half: false,
        })
    }

    /// The cache of another model's features in the same root (a fused model's parts).
    pub fn sibling(&self, id: &crate::pipeline::CacheIdentity) -> Result<FeatureCache> {
        FeatureCache::open(&self.root, &id.model, &id.sha256, &id.preprocess_id)
    }

    /// The cache root (every model's folder is inside it).
    /// This cache writing its entries as float16 (half the size; relative error under 1e-3):
    /// for the large feature maps of the unfrozen path. Reading takes either kind.
    pub fn with_half(mut self) -> Self {
        self.half = true;
        self
    }

    /// The cache folder's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder holding this model's entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of damaged entries found (and discarded) so far.
    pub fn corrupt_entries(&self) -> u64 {
        *self.corrupt.lock().expect("lock")
    }

    /// The content keys of `paths` (`None` for a file that cannot be read).
    pub fn keys(&self, paths: &[PathBuf]) -> Vec<Option<String>> {
        paths
            .iter()
            .map(|p| self.key(p).ok().map(|k| k.key))
            .collect()
    }

    /// The content key of `path`. An unchanged file (same size and modification time as when it
    /// was last hashed) is not read again.
    pub fn key(&self, path: &Path) -> std::io::Result<Keyed> {
        let meta = std::fs::metadata(path)?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let stamp = stamp_of(&meta);
        if let Some(entry) = self.files.lock().expect("lock").get(&abs) {
            if entry.stamp == stamp {
                return Ok(Keyed {
                    key: entry.hash.clone(),
                    bytes: None,
                });
            }
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::fs::File::open(path)?.read_to_end(&mut bytes)?;
        let key = hex::encode(Sha256::digest(&bytes));
        self.files.lock().expect("lock").insert(
            abs,
            FileEntry {
                stamp,
                hash: key.clone(),
            },
        );
        *self.files_dirty.lock().expect("lock") = true;
        Ok(Keyed {
            key,
            bytes: Some(bytes),
        })
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir
            .join(&key[..2.min(key.len())])
            .join(format!("{key}.feat"))
    }

    /// The cached embeddings of `key`, or `None` when missing or damaged (a damaged entry is
    /// removed and counted).
    pub fn get(&self, key: &str) -> Option<Vec<Embedding>> {
        let path = self.entry_path(key);
        let bytes = std::fs::read(&path).ok()?;
        match decode_entry(&bytes) {
            Some(e) => Some(e),
            None => {
                let _ = std::fs::remove_file(&path);
                *self.corrupt.lock().expect("lock") += 1;
                None
            }
        }
    }

    /// Stores the embeddings of `key` atomically.
    pub fn put(&self, key: &str, embeddings: &[Embedding]) -> Result<()> {
        let path = self.entry_path(key);
        write_atomic_fast(&path, &encode(embeddings, self.half))
    }

    /// Saves the file-stamp index (call at the end of a run; losing it only costs re-hashing).
    pub fn save_index(&self) -> Result<()> {
        if !*self.files_dirty.lock().expect("lock") {
            return Ok(());
        }
        let files = self.files.lock().expect("lock");
        // JSON holds text: a path that is not UTF-8 is left out (and hashed again next time).
        let mut list: Vec<(&PathBuf, &FileEntry)> =
            files.iter().filter(|(p, _)| p.to_str().is_some()).collect();
        list.sort_by(|a, b| a.0.cmp(b.0));
        let bytes = serde_json::to_vec(&list).expect("serialisable index");
        write_atomic_fast(&self.root.join(FILES_INDEX), &bytes)?;
        *self.files_dirty.lock().expect("lock") = false;
        Ok(())
    }
}

/// The content key of a file without a cache: the sha256 of its bytes.
pub fn content_key(path: &Path) -> std::io::Result<String> {
    Ok(hex::encode(Sha256::digest(std::fs::read(path)?)))
}

/// Content keys through `cache` when there is one (unchanged files are not read again).
pub fn content_keys(cache: Option<&FeatureCache>, paths: &[PathBuf]) -> Vec<Option<String>> {
    match cache {
        Some(c) => c.keys(paths),
        None => paths.iter().map(|p| content_key(p).ok()).collect(),
    }
}

fn stamp_of(meta: &std::fs::Metadata) -> Stamp {
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(-1);
    Stamp {
        len: meta.len(),
        mtime_ns,
    }
}

/// Serialises embeddings: magic, count, dimension, face flag, floats, then a checksum.
#[cfg(test)]
fn encode_entry(embeddings: &[Embedding]) -> Vec<u8> {
    encode(embeddings, false)
}

fn encode(embeddings: &[Embedding], half: bool) -> Vec<u8> {
    let dim = embeddings.first().map_or(0, |e| e.vector.len());
    let has_face = embeddings.iter().any(|e| e.face.is_some());
    let mut out = Vec::with_capacity(32 + embeddings.len() * (dim + FaceBox::FLOATS) * 4);
    out.extend_from_slice(if half { MAGIC_HALF } else { MAGIC });
    out.extend_from_slice(&(embeddings.len() as u32).to_le_bytes());
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    out.extend_from_slice(&(has_face as u32).to_le_bytes());
    for e in embeddings {
        let face = has_face.then(|| e.face.map(|f| f.to_floats()).unwrap_or([f32::NAN; 15]));
        for &v in e.vector.iter().chain(face.iter().flatten()) {
            if half {
                out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
            } else {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum[..8]);
    out
}

fn decode_entry(bytes: &[u8]) -> Option<Vec<Embedding>> {
    if bytes.len() < 28 || (&bytes[..8] != MAGIC && &bytes[..8] != MAGIC_HALF) {
        return None;
    }
    let width = if &bytes[..8] == MAGIC_HALF { 2 } else { 4 };
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if Sha256::digest(body)[..8] != *sum {
        return None;
    }
    let u32_at =
        |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().expect("4 bytes")) as usize;
    let (n, dim, has_face) = (u32_at(8), u32_at(12), u32_at(16) == 1);
    let per = dim + if has_face { FaceBox::FLOATS } else { 0 };
    if body.len() != 20 + n * per * width {
        return None;
    }
    let floats: Vec<f32> = if width == 2 {
        body[20..]
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()
    } else {
        body[20..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    };
    Some(
        floats
            .chunks_exact(per.max(1))
            .take(n)
            .map(|c| Embedding {
                vector: c[..dim].to_vec(),
                face: (has_face && !c[dim].is_nan()).then(|| FaceBox::from_floats(&c[dim..])),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_detect_damage() {
        let e = vec![
            Embedding {
                vector: vec![1.0, 2.0, 3.0],
                face: None,
            },
            Embedding {
                vector: vec![4.0, 5.0, 6.0],
                face: None,
            },
        ];
        let bytes = encode_entry(&e);
        assert_eq!(decode_entry(&bytes), Some(e.clone()));
        let mut damaged = bytes.clone();
        damaged[22] ^= 1;
        assert_eq!(decode_entry(&damaged), None);
        assert_eq!(decode_entry(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_entry(&encode_entry(&[])), Some(vec![]));
        let f = FaceBox {
            bbox: [1.0, 2.0, 3.0, 4.0],
            score: 0.9,
            landmarks: [[1.0, 2.0]; 5],
        };
        let with_face = vec![Embedding {
            vector: vec![1.0; 4],
            face: Some(f),
        }];
        assert_eq!(decode_entry(&encode_entry(&with_face)), Some(with_face));
        // float16 entries: half the bytes, values to f16's precision, damage detected too.
        let map = vec![Embedding {
            vector: vec![0.0, 1.5, 6.0, 0.1234, -3.0],
            face: None,
        }];
        let half = encode(&map, true);
        assert_eq!(half.len(), 20 + 5 * 2 + 8);
        let back = decode_entry(&half).unwrap();
        for (a, b) in back[0].vector.iter().zip(&map[0].vector) {
            assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{a} vs {b}");
        }
        assert_ne!(back[0].vector[3], 0.1234, "stored as f16, not f32");
        let mut damaged = half.clone();
        damaged[21] ^= 1;
        assert_eq!(decode_entry(&damaged), None);
    }
}
