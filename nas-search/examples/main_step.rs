//! Times one training step of the network the main job (`nas search` with no arguments) trains
//! for each candidate: the NAS-Bench-201 network with C = 8, one cell per stage, on 1x28x28
//! Fashion-MNIST images, 10 classes, batch 64 (`TrainRecipe::default()`), for issue 20's
//! small-shape comparison with PyTorch (`benches/reference/main_step_ref.py`).
//!
//! The step is the trainer's own code path: [`train_network`] with the default recipe (SGD,
//! Nesterov momentum 0.9, weight decay 5e-4, cosine learning rate per step) on the first 64
//! examples of the embedded Fashion-MNIST training split (prepared as the search prepares it:
//! 10% held out, normalised), so each epoch is exactly one step: shuffle, batch assembly and
//! upload, forward, cross-entropy, loss read-back, zero-grad, backward, schedule, SGD update.
//! The time of a step is the time between two epoch callbacks. The first `warmup` steps are
//! not counted; one line gives the median and minimum of the other `reps`.
//!
//! ```text
//! NAS_THREADS=1 cargo run --release -p nas-search --example main_step -- [reps] [warmup] [CELL]
//! ```
//! Defaults: 200 reps, 20 warm-up steps, the cell
//! `|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|`.
//! Threads: `NAS_THREADS` (the search's default: all cores).

use std::time::Instant;

use nas_search::data::fashion_mnist_embedded;
use nas_search::nets::NetworkFamily;
use nas_search::nets::nb201::Nb201Family;
use nas_search::train::{TrainRecipe, train_network};
use nas_space::nb201::Nb201Cell;
use nas_tensor::graph_nodes_recorded;

const BEST: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, what: &str, d: usize| -> Result<usize, String> {
        args.get(i)
            .map_or(Ok(d), |s| s.parse())
            .map_err(|e| format!("{what} {:?}: {e}", args[i]))
    };
    let reps = num(0, "reps", 200)?.max(1);
    let warmup = num(1, "warmup", 20)?;
    let cell_text = args.get(2).map_or(BEST, String::as_str);
    let cell: Nb201Cell = cell_text
        .parse()
        .map_err(|e| format!("cell {cell_text:?}: {e}"))?;
    let recipe = TrainRecipe::default();
    let splits = fashion_mnist_embedded()?.prepare(0.1, 0)?;
    let first: Vec<usize> = (0..recipe.batch_size).collect();
    let train = splits.train.subset(&first)?;
    // the search's network for this space and purpose (Nb201Space::shape(Purpose::Search))
    let family = Nb201Family {
        channels: 8,
        cells_per_stage: 1,
    };
    let mut net = family.build(&cell, train.shape(), train.num_classes(), 0)?;
    // per step: its end, and graph nodes recorded and buffer-pool (hits, misses) so far
    let mark = || {
        let (hits, misses, _) = nas_tensor::buf::pool_stats();
        (Instant::now(), graph_nodes_recorded(), hits, misses)
    };
    let mut marks = Vec::with_capacity(warmup + reps + 1);
    marks.push(mark());
    let stats = train_network(net.as_mut(), &train, &recipe, warmup + reps, 0, &mut |_| {
        marks.push(mark())
    })?;
    let mut times: Vec<f64> = marks
        .windows(2)
        .skip(warmup)
        .map(|w| (w[1].0 - w[0].0).as_secs_f64() * 1e3)
        .collect();
    let (first, last) = (&marks[warmup], &marks[marks.len() - 1]);
    let per_step = |a: u64, b: u64| (b - a) as f64 / reps as f64;
    times.sort_by(f64::total_cmp);
    println!(
        "main_step/batch={}/threads={} median_ms {:.3} min_ms {:.3} reps {reps} last_loss {:.4} cell {cell_text}\n  per step: {:.0} graph nodes, buffer pool {:.1} reused and {:.1} fresh buffers",
        recipe.batch_size,
        nas_tensor::threads::num_threads(),
        times[times.len() / 2],
        times[0],
        stats.last().map_or(f64::NAN, |s| s.train_loss),
        per_step(first.1, last.1),
        per_step(first.2, last.2),
        per_step(first.3, last.3),
    );
    Ok(())
}
