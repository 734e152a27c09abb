//! One training step of the LSTM character language model, timed: the shape of issue 16's
//! speed comparison (batch 64, sequence 64, hidden 256), against
//! `benches/reference/lstm_lm_step_ref.py` (PyTorch `nn.LSTM`) on the same machine and threads.
//!
//! `NAS_THREADS=N lstm_lm_step [STEPS] [BATCH] [SEQ] [HIDDEN] [VOCAB]` (defaults 6 64 64 256
//! 65). A step: embedding lookup, the fused LSTM layer over the window, the tied decoder,
//! cross-entropy, backward, gradient clipping at 0.25 and one Adam update, as `train_lm`
//! does. Prints each step's wall time and the median of steps 1.. (step 0 warms the pool).

use std::time::Instant;

use nas_search::nets::rnn::{CellKind, RnnDropout, RnnLm};
use nas_tensor::nn::{Module, Window};
use nas_tensor::optim::{Adam, AdamConfig, Optimizer, clip_grad_norm};
use nas_tensor::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("arguments must be positive integers: {e}"))?;
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (steps, batch, seq, hidden, vocab) =
        (arg(0, 6), arg(1, 64), arg(2, 64), arg(3, 256), arg(4, 65));
    let model = RnnLm::new(&CellKind::Lstm, vocab, hidden, RnnDropout::NONE, 0)?;
    let mut opt = Adam::new(model.parameters(), AdamConfig::new(1e-3))?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let ids: Vec<usize> = (0..(seq + 1) * batch)
        .map(|_| rng.random_range(0..vocab))
        .collect();
    let window = Window {
        steps: seq,
        batch,
        inputs: ids[..seq * batch].to_vec(),
        targets: ids[batch..].to_vec(),
    };
    let state: Vec<Tensor> = model
        .state_shapes(batch)
        .iter()
        .map(|s| Tensor::zeros_on(s, Device::Cpu))
        .collect::<Result<_, _>>()?;
    println!(
        "LSTM LM step: batch {batch}, sequence {seq}, hidden {hidden}, vocab {vocab}, threads {}, params {}",
        std::env::var("NAS_THREADS").unwrap_or_else(|_| "all cores".into()),
        model.num_parameters()
    );
    let mut times = Vec::new();
    for i in 0..steps {
        let t = Instant::now();
        model.zero_grad();
        let (loss, _) = model.window_loss(&window, &state, &mut rng)?;
        let value = loss.item()?;
        loss.backward()?;
        clip_grad_norm(&model.parameters(), 0.25)?;
        opt.step()?;
        let dt = t.elapsed().as_secs_f64();
        println!("step {i}: {:.1} ms, loss {value:.4}", dt * 1e3);
        times.push(dt);
    }
    let mut rest: Vec<f64> = times.iter().skip(1).copied().collect();
    rest.sort_by(f64::total_cmp);
    if !rest.is_empty() {
        println!(
            "median of steps 1..{}: {:.1} ms",
            steps - 1,
            rest[rest.len() / 2] * 1e3
        );
    }
    Ok(())
}
