//! The search stack on every backend built into this binary: one NB201 training epoch on the
//! embedded Fashion-MNIST subset and DARTS search steps, each compared with the CPU run, and
//! on the test-only backend (which counts every host transfer) with the transfers asserted:
//! nothing but the batches goes up and nothing but the losses and predictions comes down.

use nas_kernels::test_backend::{Transfers, transfers};
use nas_search::data::{digits_embedded, fashion_mnist_embedded};
use nas_search::nets::NetworkFamily;
use nas_search::nets::nb201::Nb201Family;
use nas_search::oneshot::{Method, OneShotConfig, OneShotSearch, SpaceKind};
use nas_search::train::{TrainRecipe, train_architecture};
use nas_space::nb201::Nb201Cell;
use nas_tensor::Device;
use nas_tensor::nn::Module;

const CELL: &str =
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|";

struct EpochRun {
    test_accuracy: f64,
    valid_accuracy: Option<f64>,
    train_loss: f64,
    weights: Vec<Vec<f32>>,
    moved: Transfers,
    state_tensors: u64,
    batches: u64,
    device: Option<Device>,
}

fn nb201_epoch(device: Device) -> EpochRun {
    let splits = fashion_mnist_embedded().unwrap().prepare(0.1, 0).unwrap();
    let recipe = TrainRecipe {
        train_examples: Some(640),
        batch_size: 32,
        device,
        ..TrainRecipe::default()
    };
    let family = Nb201Family {
        channels: 4,
        cells_per_stage: 1,
    };
    let cell: Nb201Cell = CELL.parse().unwrap();
    let before = transfers();
    let t = train_architecture(&family, &cell, &splits, &recipe, 1, 5).unwrap();
    let moved = transfers() - before;
    let eval_batches = |n: usize| n.div_ceil(recipe.eval_batch_size) as u64;
    let batches = 640 / 32
        + eval_batches(splits.valid.as_ref().unwrap().len())
        + eval_batches(splits.test.len());
    let built = family.build(&cell, (1, 28, 28), 10, 5).unwrap();
    EpochRun {
        test_accuracy: t.test_accuracy,
        valid_accuracy: t.valid_accuracy,
        train_loss: t.epochs[0].train_loss,
        weights: t
            .module
            .state_dict()
            .iter()
            .map(|(_, w)| w.to_vec().unwrap())
            .collect(),
        moved,
        state_tensors: built.state_dict().len() as u64,
        batches,
        device: t.module.device(),
    }
}

/// The largest difference between two lists of tensors, relative to the largest magnitude
/// of each tensor on the CPU.
fn max_rel_diff(got: &[Vec<f32>], want: &[Vec<f32>]) -> f32 {
    assert_eq!(got.len(), want.len());
    let mut worst = 0.0f32;
    for (a, b) in got.iter().zip(want) {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (x, y) in a.iter().zip(b) {
            assert!(x.is_finite(), "a NaN or infinity");
            worst = worst.max((x - y).abs() / scale);
        }
    }
    worst
}

fn nb201_epoch_matches_the_cpu(device: Device) {
    let run = nb201_epoch(device);
    let cpu = nb201_epoch(Device::Cpu);
    assert_eq!(
        run.device,
        Some(device),
        "the trained network's tensors report the device"
    );
    if device == Device::Test {
        assert_eq!(
            run.weights, cpu.weights,
            "trained weights on {device} vs cpu"
        );
        assert_eq!(
            (run.train_loss, run.valid_accuracy, run.test_accuracy),
            (cpu.train_loss, cpu.valid_accuracy, cpu.test_accuracy)
        );
    } else {
        // own kernels: the same epoch up to float rounding (summation orders differ)
        let d = max_rel_diff(&run.weights, &cpu.weights);
        eprintln!(
            "{device}: max relative weight difference after an epoch {d:e}, loss {} vs {}, test accuracy {} vs {}",
            run.train_loss, cpu.train_loss, run.test_accuracy, cpu.test_accuracy
        );
        assert!(d < 1e-3, "trained weights on {device} vs cpu: {d}");
        assert!((run.train_loss - cpu.train_loss).abs() < 1e-4 * cpu.train_loss.abs());
        assert!((run.test_accuracy - cpu.test_accuracy).abs() <= 1.0);
    }
    assert!(
        run.test_accuracy > 20.0,
        "it learned: {}",
        run.test_accuracy
    );
    if device == Device::Test {
        // up: every parameter and buffer once (the network moves to the device), then each
        // batch; down: each batch's loss and predicted classes
        assert_eq!(
            run.moved,
            Transfers {
                to_device: run.state_tensors + run.batches,
                to_host: 2 * run.batches,
            }
        );
    }
}

fn darts_config(method: Method, device: Device) -> OneShotConfig {
    let mut c = OneShotConfig::new(method, SpaceKind::Darts);
    c.c = 4;
    c.layers = 3;
    c.batch_size = 16;
    c.seed = 3;
    c.epochs = 1;
    c.device = device;
    c
}

/// Two search steps; returns the architecture weights and their gradients, every weight,
/// the transfers the steps made and the number of state tensors moved at construction.
fn darts_steps(method: Method, device: Device) -> (Vec<Vec<f32>>, Transfers, u64) {
    let data = digits_embedded().unwrap().normalize().unwrap().train;
    let before = transfers();
    let mut s = OneShotSearch::new(darts_config(method, device), &data).unwrap();
    let built = transfers() - before;
    // Sharing pools between edges reads BN statistics to the host, so only the CPU does it;
    // off here, the CPU run does the other devices' arithmetic (bit for bit on the test
    // backend).
    s.supernet().set_share_outputs(false);
    assert_eq!(s.supernet().device(), Some(device));
    let before = transfers();
    s.step().unwrap();
    s.step().unwrap();
    let moved = transfers() - before;
    let mut out: Vec<Vec<f32>> = s
        .arch()
        .tensors()
        .iter()
        .map(|a| a.to_vec().unwrap())
        .collect();
    out.extend(s.weights().iter().map(|w| w.to_vec().unwrap()));
    (out, moved, built.to_device)
}

fn darts_steps_match_the_cpu(device: Device) {
    for method in [Method::Darts1, Method::Darts2] {
        let (values, moved, built) = darts_steps(method, device);
        let (cpu, _, _) = darts_steps(method, Device::Cpu);
        if device == Device::Test {
            assert_eq!(values, cpu, "{method:?} on {device} vs cpu");
        } else {
            // architecture weights and gradients first, then the supernet's weights
            let d = max_rel_diff(&values, &cpu);
            eprintln!("{device}: {method:?} max relative difference {d:e}");
            assert!(d < 1e-4, "{method:?} on {device} vs cpu: {d}");
        }
        if device == Device::Test {
            let s = OneShotSearch::new(
                darts_config(method, Device::Cpu),
                &digits_embedded().unwrap().normalize().unwrap().train,
            )
            .unwrap();
            // the supernet's parameters and buffers and the two architecture tensors
            assert_eq!(built, s.supernet().state_dict().len() as u64 + 2);
            let per_step = match method {
                // up: a training and a validation batch; down: two losses and two predictions
                Method::Darts1 => Transfers {
                    to_device: 2,
                    to_host: 4,
                },
                // the unrolled step adds three passes (loss and predictions each) and reads
                // the norm of the validation gradient once
                _ => Transfers {
                    to_device: 2,
                    to_host: 4 + 3 * 2 + 1,
                },
            };
            assert_eq!(
                moved,
                Transfers {
                    to_device: 2 * per_step.to_device,
                    to_host: 2 * per_step.to_host,
                },
                "{method:?}"
            );
        }
    }
}

macro_rules! backend_suite {
    ($($(#[$attr:meta])* $name:ident => $device:expr),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            $(#[$attr])*
            fn an_nb201_training_epoch_matches_the_cpu() {
                nb201_epoch_matches_the_cpu($device);
            }
            #[test]
            $(#[$attr])*
            fn darts_search_steps_match_the_cpu() {
                darts_steps_match_the_cpu($device);
            }
        }
    )*};
}

backend_suite!(cpu => Device::Cpu, test_backend => Device::Test);
// (the emulated CUDA device runs the op-level suites in nas-kernels and nas-tensor; an NB201
// epoch and DARTS steps take minutes on it, too slow for CI)
#[cfg(feature = "cuda")]
backend_suite!(
    #[ignore = "needs a CUDA device: run with --ignored on a GPU machine"]
    cuda => Device::Cuda(0)
);
