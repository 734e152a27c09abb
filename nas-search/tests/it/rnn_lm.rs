//! The recurrent language model and its train evaluator on the shipped Shakespeare corpus.

use nas_kernels::test_backend::{Transfers, transfers};
use nas_search::data::text::{TextCorpus, TextSpec};
use nas_search::evaluator::{EvalRequest, Evaluator};
use nas_search::nets::rnn::{CellKind, RnnDropout, RnnLm, rnn_lm_params};
use nas_search::rnn::{TextEvaluator, TextRecipe, bpc_to_percent, evaluate_bpc, train_lm};
use nas_space::rnn::{DARTS_V1_RNN, DARTS_V2_RNN};
use nas_tensor::Device;
use nas_tensor::nn::{CarriedState, Module, TokenWindows};
use nas_tensor::optim::{Adam, AdamConfig, Optimizer, clip_grad_norm};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// The shipped corpus with its validation and test parts cut to `keep` characters (to keep
/// the tests short; the vocabulary is still the training part's).
fn small_corpus(keep: usize) -> TextCorpus {
    let mut c = TextSpec::Shakespeare.load(64).unwrap();
    c.valid.truncate(keep);
    c.test.truncate(keep);
    c
}

/// With a zero embedding, the logits are the decoder bias whatever the cell computes, so the
/// bpc is a hand computation: bias `[0, ln 2, ln 4]` gives probabilities `1/7, 2/7, 4/7`.
#[test]
fn bpc_matches_a_hand_computation() {
    // Two columns of 5: [0 1 2 2 2] and [1 1 0 2 1]; targets 1 2 2 2 | 1 0 2 1: one 0,
    // three 1s, four 2s, so bpc = (log2 7 + 3 log2(7/2) + 4 log2(7/4)) / 8 = log2 7 - 11/8.
    let stream = [0, 1, 2, 2, 2, 1, 1, 0, 2, 1];
    let want = 7f64.log2() - 11.0 / 8.0;
    for cell in [CellKind::Darts(DARTS_V2_RNN), CellKind::Lstm] {
        let mut m = RnnLm::new(&cell, 3, 4, RnnDropout::NONE, 1).unwrap();
        m.embedding.set_data(&[0.0; 12]).unwrap();
        m.decoder_bias
            .set_data(&[0.0, 2f32.ln(), 4f32.ln()])
            .unwrap();
        // Windows of 3 then 1 steps: the split must not change the count.
        for bptt in [1, 3, 4] {
            let bpc = evaluate_bpc(&mut m, &stream, 2, bptt).unwrap();
            assert!(
                (bpc - want).abs() < 1e-5,
                "{cell:?} bptt {bptt}: {bpc} vs {want}"
            );
        }
        // A zero bias: the uniform distribution, log2(V) bits.
        m.decoder_bias.set_data(&[0.0; 3]).unwrap();
        let bpc = evaluate_bpc(&mut m, &stream, 2, 3).unwrap();
        assert!((bpc - 3f64.log2()).abs() < 1e-5);
        assert!(m.is_training(), "evaluation restores the mode");
    }
    assert!((bpc_to_percent(1.0) - 50.0).abs() < 1e-12);
}

/// Bits per character of the training part's character frequencies (a unigram model) on
/// `stream` (its first character excluded, as the language model's).
fn unigram_bpc(corpus: &TextCorpus, stream: &[u32]) -> f64 {
    let mut counts = vec![0.5f64; corpus.vocab.len()];
    for &c in &corpus.train {
        counts[c as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    let bits: f64 = stream[1..]
        .iter()
        .map(|&c| -(counts[c as usize] / total).log2())
        .sum();
    bits / (stream.len() - 1) as f64
}

#[test]
fn training_on_the_shipped_corpus_lowers_the_loss_and_beats_character_frequencies() {
    let corpus = small_corpus(3000);
    let v = corpus.vocab.len();
    let recipe = TextRecipe {
        hidden: 32,
        bptt: 32,
        batch_size: 16,
        max_windows: Some(400),
        ..TextRecipe::default()
    };
    let (uni_valid, uni_test) = (
        unigram_bpc(&corpus, &corpus.valid),
        unigram_bpc(&corpus, &corpus.test),
    );
    for cell in [CellKind::Darts(DARTS_V2_RNN), CellKind::Lstm] {
        let r = train_lm(&cell, &corpus, &recipe, 3, None).unwrap();
        assert_eq!(r.train_losses.len(), 400);
        assert_eq!(r.params, rnn_lm_params(&cell, v, 32));
        let first = r.train_losses[..5].iter().sum::<f64>() / 5.0;
        let last = r.train_losses[395..].iter().sum::<f64>() / 5.0;
        // From about ln(74) = 4.30 nats (uniform) to well below.
        assert!(
            (first - (v as f64).ln()).abs() < 0.3,
            "{cell:?}: first {first}"
        );
        assert!(last < first - 1.0, "{cell:?}: loss {first} -> {last}");
        // On held-out text, better than the training part's character frequencies (about
        // 5.2 bits on these prefixes): the model uses the context.
        eprintln!(
            "{cell:?}: loss {first:.3} -> {last:.3} nats; valid {:.3} bpc (unigram {uni_valid:.3}), test {:.3} (unigram {uni_test:.3})",
            r.valid_bpc, r.test_bpc
        );
        assert!(
            r.valid_bpc < uni_valid - 0.5,
            "{cell:?}: valid {}",
            r.valid_bpc
        );
        assert!(r.test_bpc < uni_test - 0.5, "{cell:?}: test {}", r.test_bpc);
        // Same seed, same run.
        let short = TextRecipe {
            max_windows: Some(3),
            ..recipe.clone()
        };
        let again = train_lm(&cell, &corpus, &short, 3, None).unwrap();
        assert_eq!(again.train_losses[..], r.train_losses[..3]);
    }
}

#[test]
fn the_evaluator_reports_validation_bpc_and_is_deterministic() {
    let corpus = Arc::new(small_corpus(1000));
    let ev = TextEvaluator::new(
        corpus,
        TextRecipe {
            hidden: 16,
            bptt: 16,
            batch_size: 8,
            max_windows: Some(4),
            ..TextRecipe::default()
        },
    );
    assert_eq!(ev.name(), "text-lm/shakespeare-embedded");
    let req = |arch, seed| EvalRequest {
        arch,
        fidelity: 1,
        trial_id: 0,
        seed,
        deadline: None,
    };
    let a = ev.evaluate(&req(&DARTS_V1_RNN, 5)).unwrap();
    let bpc = a.loss.unwrap();
    assert!(bpc > 3.0 && bpc < 7.0, "{bpc}");
    assert!((a.valid_accuracy - bpc_to_percent(bpc)).abs() < 1e-9);
    assert_eq!(a, ev.evaluate(&req(&DARTS_V1_RNN, 5)).unwrap());
    assert_ne!(a.loss, ev.evaluate(&req(&DARTS_V2_RNN, 5)).unwrap().loss);
    // A deadline in the past cuts the run; the trial is not scored.
    let cut = ev.evaluate(&EvalRequest {
        deadline: Some(std::time::Instant::now()),
        ..req(&DARTS_V1_RNN, 5)
    });
    assert!(
        matches!(cut, Err(nas_search::EvalError::Cut { .. })),
        "{cut:?}"
    );
}

/// One training window (forward, BPTT, clip, Adam, state carried) on the transfer-counting
/// test backend: the same loss as the CPU bit for bit, and only the loss crosses to the host.
#[test]
fn a_training_window_runs_on_the_device_with_no_host_traffic() {
    let corpus = small_corpus(100);
    let run = |device: Device| {
        let mut out = Vec::new();
        let mut moved = Vec::new();
        for cell in [CellKind::Darts(DARTS_V2_RNN), CellKind::Lstm] {
            let m = RnnLm::new(&cell, corpus.vocab.len(), 8, RnnDropout::default(), 2).unwrap();
            m.to_device(device).unwrap();
            let mut opt = Adam::new(m.parameters(), AdamConfig::new(1e-2)).unwrap();
            let shapes = m.state_shapes(4);
            let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
            let mut state = CarriedState::zeros(&refs, device).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            for w in TokenWindows::new(&corpus.train[..400], 4, 5)
                .unwrap()
                .take(3)
            {
                let before = transfers();
                m.zero_grad();
                let (loss, next) = m.window_loss(&w, state.get(), &mut rng).unwrap();
                loss.backward().unwrap();
                clip_grad_norm(&m.parameters(), 0.5).unwrap();
                opt.step().unwrap();
                state.carry(&next).unwrap();
                let l = loss.item().unwrap();
                moved.push(transfers() - before);
                out.push(l);
            }
        }
        (out, moved)
    };
    let (cpu, _) = run(Device::Cpu);
    let (dev, moved) = run(Device::Test);
    assert_eq!(cpu, dev);
    for m in moved {
        assert_eq!(
            m,
            Transfers {
                to_device: 0,
                to_host: 1
            }
        );
    }
}

#[test]
fn bad_settings_are_errors() {
    let corpus = small_corpus(200);
    let bad = TextRecipe {
        hidden: 0,
        ..TextRecipe::default()
    };
    assert!(train_lm(&CellKind::Lstm, &corpus, &bad, 0, None).is_err());
    let drop = RnnDropout {
        output: 1.0,
        ..RnnDropout::NONE
    };
    assert!(RnnLm::new(&CellKind::Lstm, 5, 4, drop, 0).is_err());
    let mut g = DARTS_V2_RNN;
    g.nodes[0].1 = 3;
    let e = RnnLm::new(&CellKind::Darts(g), 5, 4, RnnDropout::NONE, 0)
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("nodes 1 -> 3 -> 1 form a cycle"),
        "{e}"
    );
    // The model's Module forward: logits for ids [T, n].
    let m = RnnLm::new(&CellKind::Darts(DARTS_V2_RNN), 5, 4, RnnDropout::NONE, 0).unwrap();
    let ids = nas_search::rnn::ids_tensor(&[1, 2, 3, 4, 0, 1], 3, 2).unwrap();
    assert_eq!(m.forward(&ids).unwrap().shape(), &[6, 5]);
}
