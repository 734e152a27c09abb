//! Times inference (forward only, evaluation mode, no graph recorded) of the networks a search
//! hands to deployment, for issue 20's comparison with PyTorch
//! (`benches/reference/infer_ref.py`, `benches/reference/infer_round.sh`):
//!
//! * `nb201_conv3x3`: the NAS-Bench-201 CIFAR-10 network (C = 16, N = 5, 3x32x32, 10 classes)
//!   with all six edges `nor_conv_3x3`;
//! * `nb201_best`: the same network of the table's best cell
//!   `|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|`;
//! * `darts_v2_c36`: the DARTS-V2 genotype's CIFAR-10 network of the paper (C = 36, 20 cells,
//!   no auxiliary head: it is not evaluated at inference);
//! * `darts_v2_c16`: the same genotype at C = 16, 8 cells.
//!
//! each at batch 1 and 64 on normally distributed inputs. Each configuration runs `warmup`
//! forwards, then `reps` timed ones; one line per configuration gives the median and the
//! minimum in milliseconds. Every forward runs inside [`nas_tensor::no_grad`] on a network in
//! evaluation mode (batch norm on running statistics); the example checks that no graph node
//! was recorded and fails if one was.
//!
//! ```text
//! NAS_THREADS=1 cargo run --release -p nas-search --example infer -- [reps] [warmup] [NET...]
//! ```
//! Defaults: 10 reps, 2 warm-up forwards, every network; `reps` is divided by 4 (at least 3)
//! for `darts_v2_c36` at batch 64, whose forward takes seconds. Threads: `NAS_THREADS`.
//! `NAS_INFER_CHUNK=k` runs each batch as forwards of `k` images whose logits are concatenated
//! (the same logits: evaluation mode treats images independently), to measure how much a
//! large batch loses to activations that no longer fit in cache.

use std::time::Instant;

use nas_search::nets::darts::{DartsConfig, DartsNetwork};
use nas_search::nets::nb201::{Nb201Config, Nb201Network};
use nas_space::darts::DARTS_V2;
use nas_space::nb201::Nb201Cell;
use nas_tensor::nn::Module;
use nas_tensor::{Tensor, graph_nodes_recorded, no_grad};

const NETS: [&str; 4] = [
    "nb201_conv3x3",
    "nb201_best",
    "darts_v2_c36",
    "darts_v2_c16",
];
const ALL_3X3: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";
const BEST: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|";

fn build(name: &str) -> Result<Box<dyn Module>, Box<dyn std::error::Error>> {
    let darts = |channels, layers| DartsConfig {
        channels,
        layers,
        in_channels: 3,
        classes: 10,
        auxiliary: false,
    };
    Ok(match name {
        "nb201_conv3x3" => Box::new(Nb201Network::new(
            &ALL_3X3.parse::<Nb201Cell>()?,
            Nb201Config::default(),
            0,
        )?),
        "nb201_best" => Box::new(Nb201Network::new(
            &BEST.parse::<Nb201Cell>()?,
            Nb201Config::default(),
            0,
        )?),
        "darts_v2_c36" => Box::new(DartsNetwork::new(&DARTS_V2, darts(36, 20), 0)?),
        "darts_v2_c16" => Box::new(DartsNetwork::new(&DARTS_V2, darts(16, 8), 0)?),
        _ => return Err(format!("unknown network {name:?}; one of {NETS:?}").into()),
    })
}

/// The network's logits on `x`, computed `chunk` images at a time (all at once when `chunk` is
/// at least the batch): smaller forwards keep their activations in cache.
fn forward_chunked(net: &dyn Module, x: &Tensor, chunk: usize) -> nas_tensor::Result<Tensor> {
    let n = x.shape()[0];
    if chunk >= n {
        return net.forward(x);
    }
    let parts = (0..n)
        .step_by(chunk)
        .map(|s| net.forward(&x.narrow(0, s, chunk.min(n - s))?))
        .collect::<nas_tensor::Result<Vec<_>>>()?;
    Tensor::concat(&parts, 0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, what: &str, d: usize| -> Result<usize, String> {
        args.get(i)
            .map_or(Ok(d), |s| s.parse())
            .map_err(|e| format!("{what} {:?}: {e}", args[i]))
    };
    let reps = num(0, "reps", 10)?.max(1);
    let warmup = num(1, "warmup", 2)?;
    let nets: Vec<&str> = if args.len() > 2 {
        args[2..].iter().map(String::as_str).collect()
    } else {
        NETS.to_vec()
    };
    let threads = nas_tensor::threads::num_threads();
    let chunk = match std::env::var("NAS_INFER_CHUNK") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| format!("NAS_INFER_CHUNK={v:?}: need a positive integer"))?,
        Err(_) => usize::MAX,
    };
    for name in nets {
        let net = build(name)?;
        net.set_training(false);
        let params = net.num_parameters();
        for batch in [1usize, 64] {
            let x = Tensor::randn(&[batch, 3, 32, 32], 1);
            let reps = if name == "darts_v2_c36" && batch == 64 {
                (reps / 4).max(3)
            } else {
                reps
            };
            let nodes0 = graph_nodes_recorded();
            let mut times = Vec::with_capacity(reps);
            let mut check = 0.0f32;
            for rep in 0..warmup + reps {
                let t = Instant::now();
                let y = no_grad(|| forward_chunked(net.as_ref(), &x, chunk))?;
                let dt = t.elapsed().as_secs_f64() * 1e3;
                if rep >= warmup {
                    times.push(dt);
                }
                check = y.to_vec()?[0];
            }
            let recorded = graph_nodes_recorded() - nodes0;
            if recorded != 0 {
                return Err(format!("{name}: inference recorded {recorded} graph nodes").into());
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{name}/batch={batch}/threads={threads}{} median_ms {:.3} min_ms {:.3} reps {reps} params {params} logit0 {check:.4}",
                if chunk < batch {
                    format!("/chunk={chunk}")
                } else {
                    String::new()
                },
                times[times.len() / 2],
                times[0]
            );
        }
    }
    Ok(())
}
