//! Fine-tuning throughput of the unfrozen path (issue 10): one epoch of `qcyn fit --unfreeze N`'s
//! training loop over 1,000 cached maps shaped like MobileNetV2's (`[320, 7, 7]` for the last
//! block, `[160, 7, 7]` for the last two), batch 16, 2 classes, AdamW with L2-SP, evaluations on
//! the early-stopping part included. The tails are the real graphs `scripts/setup` builds.
//!
//! `cargo bench --bench unfreeze` prints, per tail: seconds per epoch of 1,000 images and training
//! maps per second (evaluations excluded), median of 3 epochs.
use std::time::Instant;

use ndarray::{Array1, Array2};
use qcyn::progress::NoProgress;
use qcyn::unfreeze::graph::TailGraph;
use qcyn::unfreeze::net::Head;
use qcyn::unfreeze::train::{train, TrainOptions, TrainSet};
use rand::{Rng, SeedableRng};

const N: usize = 1000;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/onnx");
    for (blocks, file, map) in [
        (1, "mobilenetv2-tail1.onnx", [320usize, 7, 7]),
        (2, "mobilenetv2-tail2.onnx", [160, 7, 7]),
    ] {
        let path = root.join(file);
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("{} is missing: run scripts/setup", path.display());
            std::process::exit(1);
        };
        let graph = TailGraph::read(bytes, map).expect("a tail graph");
        let len: usize = map.iter().product();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let labels: Vec<usize> = (0..N).map(|i| i % 2).collect();
        // Post-ReLU6-like maps, both views, with a class-dependent shift.
        let maps: Vec<Vec<f32>> = labels
            .iter()
            .map(|&c| {
                (0..2 * len)
                    .map(|j| {
                        (rng.gen_range(0.0f32..3.0)
                            + if (j % 7 == 0) == (c == 1) { 0.5 } else { 0.0 })
                        .min(6.0)
                    })
                    .collect()
            })
            .collect();
        let refs: Vec<&[f32]> = maps.iter().map(|m| m.as_slice()).collect();
        let units: Vec<usize> = (0..N).collect();
        let set = TrainSet {
            maps: &refs,
            labels: &labels,
            units: &units,
        };
        let head = Head {
            w: Array2::zeros((2, 1280)),
            b: Array1::zeros(2),
            mean: Array1::zeros(1280),
            scale: Array1::ones(1280),
        };
        let mut epochs = Vec::new();
        let mut rates = Vec::new();
        for seed in 0..3 {
            let opts = TrainOptions {
                epochs: 1,
                seed,
                ..Default::default()
            };
            let t = Instant::now();
            let out = train(
                graph.tail.clone(),
                head.clone(),
                &set,
                &opts,
                None,
                false,
                "bench",
                &NoProgress,
            )
            .expect("trains");
            epochs.push(t.elapsed().as_secs_f64());
            rates.push(out.samples_per_s);
        }
        epochs.sort_by(f64::total_cmp);
        rates.sort_by(f64::total_cmp);
        println!(
            "unfreeze {blocks} (map {map:?}): {:.2} s per epoch of {N} images (batch 16, early-stopping evaluation included), {:.0} training maps/s; median of 3",
            epochs[1], rates[1]
        );
    }
}
