//! A recurrent cell against a 1-layer LSTM of the same parameter count, both trained as
//! character language models with the same recipe and budget on the same corpus: the
//! comparison of issue 16 ("the best found cell against an LSTM baseline").
//!
//! ```sh
//! cargo run --release -p nas-search --example rnn_baseline -- @runs/r/best.txt --hidden 64 --epochs 1
//! ```
//!
//! Arguments: the cell (DARTS recurrent `Genotype(recurrent=[...], ...)` text, or `@FILE`);
//! `--hidden H` (64: the cell's units; the LSTM gets the hidden size whose language model's
//! parameter count is closest to the cell's), `--epochs E` (1), `--max-windows N` (all windows
//! of an epoch), `--seed S` (0), `--data shakespeare|text:FILE` (shakespeare). The recipe is the
//! rnn space's (`nas search --space rnn`): Adam at 3e-3, batch 32, windows of 64 steps, clip
//! 0.5, dropout 0.1 on inputs, state and outputs. Prints, for each model, its parameters,
//! validation and test bits per character and wall time.

use std::time::Instant;

use nas_search::data::text::TextSpec;
use nas_search::nets::rnn::{CellKind, rnn_lm_params};
use nas_search::rnn::{TEXT_BPTT, TextRecipe, train_lm};
use nas_search::spaces::read_arch;
use nas_space::rnn::RnnGenotype;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut cell, mut hidden, mut epochs, mut windows, mut seed) = (None, 64, 1, None, 0);
    let mut data = TextSpec::Shakespeare;
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--hidden" => hidden = val()?.parse().map_err(|e| format!("--hidden: {e}"))?,
            "--epochs" => epochs = val()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--max-windows" => {
                windows = Some(val()?.parse().map_err(|e| format!("--max-windows: {e}"))?)
            }
            "--seed" => seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--data" => data = val()?.parse()?,
            text if cell.is_none() => cell = Some(RnnGenotype::parse(&read_arch(text)?)?),
            other => return Err(format!("unexpected argument {other:?}").into()),
        }
    }
    let cell = CellKind::Darts(cell.ok_or("give the cell (its text or @FILE)")?);
    let corpus = data.load(TEXT_BPTT)?;
    let vocab = corpus.vocab.len();
    let target = rnn_lm_params(&cell, vocab, hidden);
    let lstm_hidden = (1..=4 * hidden)
        .min_by_key(|&h| rnn_lm_params(&CellKind::Lstm, vocab, h).abs_diff(target))
        .unwrap_or(hidden);
    println!(
        "{data}: {} training characters, vocabulary {vocab}; {epochs} epoch(s){}",
        corpus.train.len(),
        windows.map_or(String::new(), |w| format!(" of at most {w} windows"))
    );
    for (name, kind, h) in [
        ("cell", cell, hidden),
        ("lstm", CellKind::Lstm, lstm_hidden),
    ] {
        let recipe = TextRecipe {
            hidden: h,
            epochs,
            max_windows: windows,
            ..TextRecipe::default()
        };
        let t0 = Instant::now();
        let r = train_lm(&kind, &corpus, &recipe, seed, None)?;
        println!(
            "{name:<5} hidden {h:>4}  {:>7} parameters  valid {:.4} bpc  test {:.4} bpc  {} windows  {:.1} s",
            r.params,
            r.valid_bpc,
            r.test_bpc,
            r.train_losses.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
