//! Train one NAS-Bench-201 cell from scratch on the embedded Fashion-MNIST subset (what
//! `nas train` does), save the weights as safetensors, load them into a fresh network and
//! check that it scores the same.
//!
//! ```text
//! cargo run --release -p nas-search --example train_nb201 -- [CELL] [EPOCHS] [C] [N] [OUT.safetensors]
//! ```

use nas_search::data::fashion_mnist_embedded;
use nas_search::nets::nb201::Nb201Family;
use nas_search::nets::nb201::{Nb201Config, Nb201Network};
use nas_search::train::{TrainRecipe, evaluate_network, train_architecture_observed};
use nas_space::nb201::Nb201Cell;
use nas_tensor::nn::Module;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let cell: Nb201Cell = args
        .next()
        .unwrap_or_else(|| {
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|".into()
        })
        .parse()?;
    let epochs: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let channels: usize = args.next().map_or(Ok(8), |s| s.parse())?;
    let cells: usize = args.next().map_or(Ok(1), |s| s.parse())?;
    let out = args
        .next()
        .unwrap_or_else(|| "nb201_weights.safetensors".into());

    let splits = fashion_mnist_embedded()?.prepare(0.1, 0)?;
    let family = Nb201Family {
        channels,
        cells_per_stage: cells,
    };
    let recipe = TrainRecipe::default();
    let trained =
        train_architecture_observed(&family, &cell, &splits, &recipe, epochs, 0, &mut |s| {
            println!(
                "epoch {}  train loss {:.4}  train accuracy {:.2}%  lr {:.4}",
                s.epoch, s.train_loss, s.train_accuracy, s.lr
            )
        })?;
    println!(
        "{cell}: valid {:.2}%  test {:.2}% (loss {:.4})  {} params  {:.2} MFLOPs  {:.1} s",
        trained.valid_accuracy.unwrap_or(f64::NAN),
        trained.test_accuracy,
        trained.test_loss,
        trained.cost.params,
        trained.cost.flops as f64 / 1e6,
        trained.wall_time_s
    );
    nas_tensor::io::save_module(trained.module.as_ref(), &out)?;
    let config = Nb201Config {
        channels,
        cells_per_stage: cells,
        in_channels: 1,
        classes: 10,
    };
    let mut fresh = Nb201Network::new(&cell, config, 12345)?;
    nas_tensor::io::load_module(&fresh, &out)?;
    fresh.set_training(false);
    let (acc, _) = evaluate_network(&mut fresh, &splits.test, 250)?;
    println!("saved {out}; reloaded network test accuracy {acc:.2}%");
    assert!(
        (acc - trained.test_accuracy).abs() < 1e-9,
        "reloaded weights must score the same"
    );
    Ok(())
}
