//! Training the tail and the head together on cached maps: AdamW, weight decay toward the
//! pretrained weights (L2-SP) for the tail, early stopping on a validation part carved from the
//! training images only, the mirror-image map as a second view, a checkpoint at every evaluation
//! from which an interrupted run resumes, and deterministic for a seed.
use std::path::Path;
use std::time::Instant;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::net::{Head, Tail};
use crate::error::{Error, Result};
use crate::progress::Reporter;

/// How to train (the tutorial's `RunConfig`, plus what fine-tuning on little data needs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainOptions {
    /// Passes over the training maps at most.
    pub epochs: usize,
    /// Maps per step.
    pub batch_size: usize,
    /// Steps between evaluations on the early-stopping part (`None`: once per epoch).
    pub eval_interval: Option<usize>,
    /// AdamW learning rate of the tail (the head's is `head_lr_factor` times it).
    pub lr: f32,
    /// The head's learning rate relative to the tail's.
    pub head_lr_factor: f32,
    /// Decay of the tail's weights toward the pretrained ones, per unit of learning rate (L2-SP).
    pub l2_sp: f32,
    /// Decoupled weight decay of the head's weights.
    pub weight_decay: f32,
    /// Evaluations without improvement before stopping.
    pub patience: usize,
    /// Share of the training images held out for early stopping.
    pub val_fraction: f32,
    /// Seed of the early-stopping split, the order of the maps and the views.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 20,
            batch_size: 16,
            eval_interval: None,
            lr: 1e-4,
            head_lr_factor: 10.0,
            l2_sp: 1.0,
            weight_decay: 1e-4,
            patience: 5,
            val_fraction: 0.15,
            seed: 0,
        }
    }
}

impl TrainOptions {
    /// Checks the values before any work.
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::config(what, None));
        if self.epochs == 0 || self.batch_size == 0 || self.eval_interval == Some(0) {
            return bad("--epochs, --batch-size and --eval-interval must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("--lr must be a positive number, not {}", self.lr));
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 0.5) {
            return bad("the early-stopping share must be between 0 and 0.5".into());
        }
        Ok(())
    }
}

/// The training images: each one's two views (the map and its mirror image's, concatenated),
/// its class, and its near-duplicate unit (copies never straddle the early-stopping split).
#[derive(Debug)]
pub struct TrainSet<'a> {
    /// Per image: `2 · map_len` values.
    pub maps: &'a [&'a [f32]],
    /// Class per image.
    pub labels: &'a [usize],
    /// Near-duplicate unit per image.
    pub units: &'a [usize],
}

/// One evaluation on the early-stopping part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalPoint {
    /// Steps done.
    pub step: usize,
    /// Epoch (1-based; 0 before training).
    pub epoch: usize,
    /// Mean training loss since the last evaluation.
    pub train_loss: Option<f32>,
    /// Loss on the early-stopping part.
    pub val_loss: f32,
    /// Accuracy on the early-stopping part.
    pub val_accuracy: f32,
}

/// What training did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    /// Epochs trained (the last possibly partly).
    pub epochs_run: usize,
    /// Epoch whose weights were kept (0: the pretrained weights stayed best).
    pub best_epoch: usize,
    /// Step whose weights were kept.
    pub best_step: usize,
    /// Steps done.
    pub steps: usize,
    /// Wall-clock seconds, evaluations included.
    pub train_seconds: f64,
    /// Training maps per second over the steps (evaluations excluded).
    pub samples_per_s: f64,
    /// Why training stopped.
    pub stop_reason: String,
    /// Images trained on / held out for early stopping.
    pub inner_train: usize,
    /// Images held out of training for early stopping.
    pub inner_val: usize,
    /// Every evaluation.
    pub history: Vec<EvalPoint>,
    /// The step a `--resume` continued from.
    pub resumed_from_step: Option<usize>,
    /// The kept tail.
    #[serde(skip)]
    pub tail: Tail,
}

/// Every trainable value, in a fixed order: the tail's parameters, then the head's weights and
/// bias.
fn params<'a>(tail: &'a mut Tail, head: &'a mut Head) -> Vec<&'a mut [f32]> {
    let mut p = tail.params_mut();
    p.push(head.w.as_slice_mut().expect("standard layout"));
    p.push(head.b.as_slice_mut().expect("standard layout"));
    p
}

fn snapshot(tail: &Tail, head: &Head) -> Vec<Vec<f32>> {
    let mut p: Vec<Vec<f32>> = tail.params().iter().map(|s| s.to_vec()).collect();
    p.push(head.w.as_slice().expect("standard layout").to_vec());
    p.push(head.b.as_slice().expect("standard layout").to_vec());
    p
}

fn restore(tail: &mut Tail, head: &mut Head, values: &[Vec<f32>]) {
    for (dst, src) in params(tail, head).into_iter().zip(values) {
        dst.copy_from_slice(src);
    }
}

/// The state a checkpoint holds besides the arrays.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    fingerprint: String,
    step: usize,
    best_step: usize,
    best_epoch: usize,
    best: (f32, f32),
    bad_evals: usize,
    history: Vec<EvalPoint>,
    done: bool,
    stop_reason: String,
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"QCYNCKP1";

fn write_checkpoint(path: &Path, state: &State, arrays: &[&[Vec<f32>]]) -> Result<()> {
    let header = serde_json::to_vec(state).expect("serialisable state");
    let mut out = Vec::new();
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for set in arrays {
        for v in set.iter() {
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    crate::atomic::write_atomic(path, &out)
}

fn read_checkpoint(
    path: &Path,
    shapes: &[usize],
    sets: usize,
) -> Option<(State, Vec<Vec<Vec<f32>>>)> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 16 || &bytes[..8] != CHECKPOINT_MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().ok()?) as usize;
    let header = bytes.get(16..16 + len)?;
    let state: State = serde_json::from_slice(header).ok()?;
    let floats: Vec<f32> = bytes[16 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let per: usize = shapes.iter().sum();
    if floats.len() != per * sets {
        return None;
    }
    let mut at = 0;
    let mut out = Vec::new();
    for _ in 0..sets {
        let mut set = Vec::new();
        for &n in shapes {
            set.push(floats[at..at + n].to_vec());
            at += n;
        }
        out.push(set);
    }
    Some((state, out))
}

/// The early-stopping split: fold 0 of stratified, group-keeping folds of the training images,
/// with no class left without training images.
fn inner_split(set: &TrainSet<'_>, opts: &TrainOptions) -> (Vec<usize>, Vec<usize>) {
    let folds = ((1.0 / opts.val_fraction).round() as usize).max(2);
    let fold = crate::shuffle::stratified_group_folds(set.labels, set.units, folds, opts.seed);
    let classes = set.labels.iter().max().map_or(0, |m| m + 1);
    let mut in_train = vec![0usize; classes];
    for (i, &f) in fold.iter().enumerate() {
        if f != 0 {
            in_train[set.labels[i]] += 1;
        }
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, &f) in fold.iter().enumerate() {
        if f == 0 && in_train[set.labels[i]] > 0 {
            val.push(i);
        } else {
            train.push(i);
        }
    }
    (train, val)
}

fn view(map: &[f32], v: usize) -> &[f32] {
    let half = map.len() / 2;
    &map[v * half..(v + 1) * half]
}

/// (loss, accuracy) of the tail and head on images `idx` (first view).
fn evaluate(tail: &Tail, head: &Head, set: &TrainSet<'_>, idx: &[usize]) -> (f32, f32) {
    let (mut loss, mut right) = (0f64, 0usize);
    for chunk in idx.chunks(64) {
        let maps: Vec<&[f32]> = chunk.iter().map(|&i| view(set.maps[i], 0)).collect();
        let f = tail.features(tail.batch(&maps), maps.len());
        let p = head.proba(f.t());
        for (j, &i) in chunk.iter().enumerate() {
            let y = set.labels[i];
            loss -= f64::from(p[[y, j]].max(1e-30).ln());
            let best = (0..p.nrows())
                .max_by(|&a, &b| p[[a, j]].total_cmp(&p[[b, j]]))
                .unwrap_or(0);
            right += usize::from(best == y);
        }
    }
    let n = idx.len().max(1) as f64;
    ((loss / n) as f32, (right as f64 / n) as f32)
}

/// Trains `tail` and `head` on `set`. With `checkpoint`, the state is written there at every
/// evaluation, and `resume` continues from it when it was written for the same images and
/// options (`fingerprint`).
#[allow(clippy::too_many_arguments)]
pub fn train(
    mut tail: Tail,
    mut head: Head,
    set: &TrainSet<'_>,
    opts: &TrainOptions,
    checkpoint: Option<&Path>,
    resume: bool,
    fingerprint: &str,
    reporter: &dyn Reporter,
) -> Result<TrainOutcome> {
    opts.check()?;
    let start = Instant::now();
    let (train_idx, val_idx) = inner_split(set, opts);
    let steps_per_epoch = train_idx.len().div_ceil(opts.batch_size).max(1);
    let eval_every = opts.eval_interval.unwrap_or(steps_per_epoch);
    let total_steps = steps_per_epoch * opts.epochs;
    let n_tail = tail.params().len();
    let pretrained: Vec<Vec<f32>> = tail.params().iter().map(|p| p.to_vec()).collect();
    let shapes: Vec<usize> = snapshot(&tail, &head).iter().map(Vec::len).collect();
    let zeros = || shapes.iter().map(|&n| vec![0f32; n]).collect::<Vec<_>>();
    let (mut m, mut v) = (zeros(), zeros());

    let (loss0, acc0) = evaluate(&tail, &head, set, &val_idx);
    let mut state = State {
        fingerprint: fingerprint.to_string(),
        step: 0,
        best_step: 0,
        best_epoch: 0,
        best: (acc0, loss0),
        bad_evals: 0,
        history: vec![EvalPoint {
            step: 0,
            epoch: 0,
            train_loss: None,
            val_loss: loss0,
            val_accuracy: acc0,
        }],
        done: false,
        stop_reason: String::new(),
    };
    let mut best = snapshot(&tail, &head);
    let mut resumed_from_step = None;
    if let (Some(path), true) = (checkpoint, resume) {
        match read_checkpoint(path, &shapes, 4) {
            Some((s, mut sets)) if s.fingerprint == fingerprint => {
                v = sets.pop().expect("4 sets");
                m = sets.pop().expect("4 sets");
                best = sets.pop().expect("4 sets");
                restore(&mut tail, &mut head, &sets.pop().expect("4 sets"));
                resumed_from_step = Some(s.step);
                reporter.message(&format!(
                    "resuming fine-tuning at step {} of {total_steps}",
                    s.step
                ));
                state = s;
            }
            Some(_) => reporter.message(&format!(
                "the checkpoint {} was written for other images or options: starting afresh",
                path.display()
            )),
            None if path.exists() => reporter.message(&format!(
                "the checkpoint {} is damaged: starting afresh",
                path.display()
            )),
            None => reporter.message("no checkpoint to resume from: starting afresh"),
        }
    }

    reporter.start("fine-tuning", Some(total_steps as u64));
    reporter.advance(state.step as u64);
    let mut trained = 0usize;
    let mut train_time = 0f64;
    let mut since_eval = (0f64, 0usize);
    let mut grad_tail = tail.zeros_like();
    let mut grad_head = head.zeros_like();
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    'epochs: for epoch in 0..opts.epochs {
        if state.done {
            break;
        }
        let mut rng = crate::shuffle::rng(
            opts.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)),
        );
        let mut order = train_idx.clone();
        crate::shuffle::shuffle(&mut order, &mut rng);
        let views: Vec<usize> = {
            use rand::Rng;
            order.iter().map(|_| rng.gen_range(0..2)).collect()
        };
        for (b, chunk) in order.chunks(opts.batch_size).enumerate() {
            let step = epoch * steps_per_epoch + b;
            if step < state.step {
                continue;
            }
            let t0 = Instant::now();
            let first = b * opts.batch_size;
            let maps: Vec<&[f32]> = chunk
                .iter()
                .zip(&views[first..])
                .map(|(&i, &w)| view(set.maps[i], w))
                .collect();
            let labels: Vec<usize> = chunk.iter().map(|&i| set.labels[i]).collect();
            for p in grad_tail.params_mut() {
                p.fill(0.0);
            }
            grad_head.w.fill(0.0);
            grad_head.b.fill(0.0);
            let (f, trace) = tail.forward(tail.batch(&maps), maps.len());
            let (loss, df) = head.loss_backward(f.view(), &labels, &mut grad_head);
            if !loss.is_finite() {
                state.done = true;
                state.stop_reason = format!(
                    "the loss became {loss} at step {}; the best weights so far are kept (lower --lr)",
                    step + 1
                );
                break 'epochs;
            }
            tail.backward(trace, df.view(), &mut grad_tail);
            // AdamW; the tail decays toward its pretrained weights, the head's weights toward 0.
            let t = (step + 1) as i32;
            let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
            let mut grads: Vec<&[f32]> = grad_tail.params();
            grads.push(grad_head.w.as_slice().expect("standard layout"));
            grads.push(grad_head.b.as_slice().expect("standard layout"));
            let last = shapes.len() - 1;
            for (k, (p, g)) in params(&mut tail, &mut head)
                .into_iter()
                .zip(grads)
                .enumerate()
            {
                let is_tail = k < n_tail;
                let lr = if is_tail {
                    opts.lr
                } else {
                    opts.lr * opts.head_lr_factor
                };
                let (mk, vk) = (&mut m[k], &mut v[k]);
                for j in 0..p.len() {
                    mk[j] = b1 * mk[j] + (1.0 - b1) * g[j];
                    vk[j] = b2 * vk[j] + (1.0 - b2) * g[j] * g[j];
                    let update = (mk[j] / c1) / ((vk[j] / c2).sqrt() + eps);
                    let decay = if is_tail {
                        opts.l2_sp * (p[j] - pretrained[k][j])
                    } else if k != last {
                        opts.weight_decay * p[j]
                    } else {
                        0.0
                    };
                    p[j] -= lr * (update + decay);
                }
            }
            state.step = step + 1;
            trained += maps.len();
            train_time += t0.elapsed().as_secs_f64();
            since_eval.0 += f64::from(loss);
            since_eval.1 += 1;
            reporter.advance(1);
            let end = state.step == total_steps;
            if state.step.is_multiple_of(eval_every) || end {
                let (val_loss, val_acc) = evaluate(&tail, &head, set, &val_idx);
                let train_loss = (since_eval.0 / since_eval.1.max(1) as f64) as f32;
                since_eval = (0.0, 0);
                state.history.push(EvalPoint {
                    step: state.step,
                    epoch: epoch + 1,
                    train_loss: Some(train_loss),
                    val_loss,
                    val_accuracy: val_acc,
                });
                reporter.message(&format!(
                    "epoch {}, step {}: train loss {train_loss:.4}, early-stopping loss {val_loss:.4}, accuracy {val_acc:.3}",
                    epoch + 1,
                    state.step
                ));
                reporter.status(&format!(
                    "fine-tuning, epoch {}/{}: loss {train_loss:.3}, early-stopping accuracy {val_acc:.3}",
                    epoch + 1,
                    opts.epochs
                ));
                let (best_acc, best_loss) = state.best;
                if val_idx.is_empty() {
                    // Too few training images to hold any out: the last weights are kept.
                    state.best_step = state.step;
                    state.best_epoch = epoch + 1;
                    best = snapshot(&tail, &head);
                } else if val_loss.is_finite()
                    && (val_acc > best_acc + 1e-6
                        || (val_acc >= best_acc - 1e-6 && val_loss < best_loss - 1e-5))
                {
                    state.best = (val_acc, val_loss);
                    state.best_step = state.step;
                    state.best_epoch = epoch + 1;
                    state.bad_evals = 0;
                    best = snapshot(&tail, &head);
                } else {
                    state.bad_evals += 1;
                }
                if state.bad_evals >= opts.patience && !val_idx.is_empty() {
                    state.done = true;
                    state.stop_reason = format!(
                        "no better early-stopping score in {} evaluations (--patience)",
                        opts.patience
                    );
                }
                if end && !state.done {
                    state.done = true;
                    state.stop_reason = format!("ran all {} epochs", opts.epochs);
                    if val_idx.is_empty() {
                        state.stop_reason.push_str(
                            " (too few training images to hold any out for early stopping: the last weights are kept)",
                        );
                    }
                }
                if let Some(path) = checkpoint {
                    let cur = snapshot(&tail, &head);
                    write_checkpoint(path, &state, &[&cur, &best, &m, &v])?;
                }
                if state.done {
                    break 'epochs;
                }
            }
        }
    }
    reporter.finish();
    if state.stop_reason.is_empty() {
        state.stop_reason = format!("ran all {} epochs", opts.epochs);
    }
    restore(&mut tail, &mut head, &best);
    let epochs_run = state.step.div_ceil(steps_per_epoch);
    Ok(TrainOutcome {
        epochs_run,
        best_epoch: state.best_epoch,
        best_step: state.best_step,
        steps: state.step,
        train_seconds: start.elapsed().as_secs_f64(),
        samples_per_s: if train_time > 0.0 {
            trained as f64 / train_time
        } else {
            0.0
        },
        stop_reason: state.stop_reason,
        inner_train: train_idx.len(),
        inner_val: val_idx.len(),
        history: state.history,
        resumed_from_step,
        tail,
    })
}

/// Features `[n, dim]` of the first view of `maps` through `tail`, in batches.
pub fn features(tail: &Tail, maps: &[&[f32]]) -> Array2<f32> {
    let dim = tail.out_channels();
    let mut out = Array2::<f32>::zeros((maps.len(), dim));
    for (k, chunk) in maps.chunks(64).enumerate() {
        let views: Vec<&[f32]> = chunk.iter().map(|m| view(m, 0)).collect();
        let f = tail.features(tail.batch(&views), views.len());
        out.slice_mut(ndarray::s![k * 64..k * 64 + chunk.len(), ..])
            .assign(&f);
    }
    out
}
