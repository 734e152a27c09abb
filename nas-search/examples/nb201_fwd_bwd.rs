//! Times forward and backward of the NAS-Bench-201 benchmark network (C = 16, N = 5, all six
//! edges `nor_conv_3x3`, batch 64, 3x32x32) separately, for profiling (`perf record`) what the
//! `nb201_net` criterion bench measures as one number.
//!
//! ```text
//! NAS_THREADS=1 cargo run --release -p nas-search --example nb201_fwd_bwd -- [reps]
//! ```

use std::time::Instant;

use nas_search::nets::nb201::{Nb201Config, Nb201Network};
use nas_space::nb201::Nb201Cell;
use nas_tensor::Tensor;
use nas_tensor::nn::Module;

const CELL: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reps: usize = std::env::args()
        .nth(1)
        .map_or(Ok(5), |s| s.parse())
        .map_err(|e| format!("reps: {e}"))?;
    let cell: Nb201Cell = CELL.parse()?;
    let net = Nb201Network::new(&cell, Nb201Config::default(), 0)?;
    let x = Tensor::randn(&[64, 3, 32, 32], 1);
    let labels: Vec<usize> = (0..64).map(|i| (i * 7) % 10).collect();
    for rep in 0..=reps {
        net.zero_grad();
        let t0 = Instant::now();
        let loss = net.forward(&x)?.cross_entropy(&labels)?;
        let t1 = Instant::now();
        loss.backward()?;
        let t2 = Instant::now();
        println!(
            "{} forward {:.1} ms  backward {:.1} ms  total {:.1} ms  loss {:.4}",
            if rep == 0 { "warm-up" } else { "rep    " },
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            (t2 - t0).as_secs_f64() * 1e3,
            loss.item()?
        );
    }
    Ok(())
}
