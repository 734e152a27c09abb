//! Trains a small CNN on UCI digits (the copy shipped in `data/digits`) and prints the loss and
//! the held-out accuracy per epoch.
//!
//! `cargo run --release -p nas-tensor --example digits [epochs]`

#[path = "../tests/it/common/digits.rs"]
mod digits;

use nas_tensor::nn::Module;

fn main() -> nas_tensor::Result<()> {
    let epochs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let (train, test) = digits::load(7);
    let mut net = digits::model(1)?;
    println!(
        "UCI digits: {} train / {} test images; model with {} parameters",
        train.len(),
        test.len(),
        net.num_parameters()
    );
    let t0 = std::time::Instant::now();
    let acc = digits::train(&mut net, &train, &test, epochs, 3, |e, loss, acc| {
        println!(
            "epoch {:>2}: train loss {loss:.4}  test accuracy {:.2}%",
            e + 1,
            acc * 100.0
        );
    })?;
    println!(
        "final test accuracy {:.2}% ({:.1} s)",
        acc * 100.0,
        t0.elapsed().as_secs_f32()
    );
    Ok(())
}
