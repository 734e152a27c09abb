//! UCI digits (the project's shipped copy) and the small CNN the learning test and the
//! `digits` example train. Shared by `tests/it/learning.rs` and `examples/digits.rs`.

#![allow(dead_code)]

use std::io::Read;

use nas_tensor::nn::{BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential};
use nas_tensor::optim::{CosineAnnealingLr, Optimizer, Sgd, SgdConfig};
use nas_tensor::{ConvOptions, Result, Tensor, no_grad};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Images `[n, 1, 8, 8]` scaled to `[0, 1]`, and labels.
pub struct Split {
    pub x: Vec<f32>,
    pub y: Vec<usize>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn batch(&self, idx: &[usize]) -> (Tensor, Vec<usize>) {
        let mut x = Vec::with_capacity(idx.len() * 64);
        for &i in idx {
            x.extend_from_slice(&self.x[i * 64..(i + 1) * 64]);
        }
        (
            Tensor::from_vec(x, &[idx.len(), 1, 8, 8]).unwrap(),
            idx.iter().map(|&i| self.y[i]).collect(),
        )
    }
}

/// Reads the 1,797 digits and splits them (seeded shuffle) into train and a 20% test split.
pub fn load(seed: u64) -> (Split, Split) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/digits/digits.csv.gz");
    let f = std::fs::File::open(path).expect("digits data");
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .expect("gzip");
    let mut rows: Vec<(Vec<f32>, usize)> = Vec::new();
    for line in s.lines().filter(|l| !l.trim().is_empty()) {
        let v: Vec<f32> = line
            .split(',')
            .map(|t| t.trim().parse::<f32>().expect("number"))
            .collect();
        assert_eq!(v.len(), 65, "64 pixels and a label");
        rows.push((v[..64].iter().map(|p| p / 16.0).collect(), v[64] as usize));
    }
    assert_eq!(rows.len(), 1797);
    rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_test = rows.len() / 5;
    let mk = |r: &[(Vec<f32>, usize)]| Split {
        x: r.iter().flat_map(|(x, _)| x.iter().copied()).collect(),
        y: r.iter().map(|(_, y)| *y).collect(),
    };
    (mk(&rows[n_test..]), mk(&rows[..n_test]))
}

/// conv(1->16)-BN-ReLU-maxpool -> conv(16->32)-BN-ReLU-maxpool -> flatten -> linear(128->10).
pub fn model(seed: u64) -> Result<Sequential> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pad1 = ConvOptions::default().padding(1);
    Ok(Sequential::new()
        .push(Conv2d::new(1, 16, 3, pad1, true, &mut rng)?)
        .push(BatchNorm2d::new(16, true))
        .push(ReLU::new())
        .push(MaxPool2d::new(3, 2, 1))
        .push(Conv2d::new(16, 32, 3, pad1, true, &mut rng)?)
        .push(BatchNorm2d::new(32, true))
        .push(ReLU::new())
        .push(MaxPool2d::new(3, 2, 1))
        .push(Flatten::new())
        .push(Linear::new(32 * 2 * 2, 10, true, &mut rng)?))
}

/// Test accuracy in evaluation mode, without recording a graph.
pub fn accuracy(net: &mut Sequential, data: &Split) -> Result<f32> {
    net.set_training(false);
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut correct = 0;
    no_grad(|| -> Result<()> {
        for chunk in idx.chunks(256) {
            let (x, y) = data.batch(chunk);
            let pred = net.forward(&x)?.argmax_rows()?;
            correct += pred.iter().zip(&y).filter(|(a, b)| a == b).count();
        }
        Ok(())
    })?;
    net.set_training(true);
    Ok(correct as f32 / data.len() as f32)
}

/// Trains for `epochs` with SGD (momentum 0.9, Nesterov, weight decay 5e-4) and a cosine
/// schedule; calls `log(epoch, mean train loss, test accuracy)` after each epoch.
pub fn train(
    net: &mut Sequential,
    train: &Split,
    test: &Split,
    epochs: usize,
    seed: u64,
    mut log: impl FnMut(usize, f32, f32),
) -> Result<f32> {
    let lr = 0.05;
    let mut opt = Sgd::new(
        net.parameters(),
        SgdConfig::new(lr)
            .momentum(0.9)
            .nesterov(true)
            .weight_decay(5e-4),
    )?;
    let sched = CosineAnnealingLr::new(lr, epochs, 0.0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut acc = 0.0;
    for epoch in 0..epochs {
        sched.apply(&mut opt, epoch);
        order.shuffle(&mut rng);
        let (mut total, mut batches) = (0.0f32, 0);
        for chunk in order.chunks(32) {
            if chunk.len() < 2 {
                continue; // batch norm needs more than one value per channel
            }
            let (x, y) = train.batch(chunk);
            let loss = net.forward(&x)?.cross_entropy(&y)?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            total += loss.item()?;
            batches += 1;
        }
        acc = accuracy(net, test)?;
        log(epoch, total / batches as f32, acc);
    }
    Ok(acc)
}
