//! Test inputs away from kinks, shared by the gradient-check suites.

use nas_tensor::Tensor;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Values with no two within 0.05 of each other and none within 0.05 of zero (safe for max,
/// ReLU and pooling under central differences), shuffled by `seed`; a constant, not a leaf.
pub fn spaced_values(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n)
        .map(|i| (i as f32 - (n / 2) as f32) * 0.1 + 0.05)
        .collect();
    v.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    Tensor::from_vec(v, shape).unwrap()
}
