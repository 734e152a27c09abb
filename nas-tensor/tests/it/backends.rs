//! The backend-generic suite: every op (forward and backward), the optimizers, the clip and a
//! small training loop, run once per backend built into this binary.
//!
//! On each device the suite checks
//! - finite-difference gradients of every op, computed on that device;
//! - values and gradients equal to the CPU backend's (bit for bit for the test backend, which
//!   computes with the CPU kernels; a tolerance for real devices);
//! - on the test-only backend, that an op's forward and backward move nothing between host
//!   and device ([`transfers`] counts every upload and download): proof that every value the
//!   tensor crate touches goes through the `Backend` seam.
//!
//! With the `cuda-emu` feature the suite also runs on the emulated CUDA device (the CUDA
//! kernels compiled as C++ and run on the CPU, outputs poisoned with NaN), and with `cuda` on
//! `cuda:0` (ignored by default: `--ignored` on a GPU machine, see `scripts/gpu-check.sh`).

use nas_kernels::test_backend::{Transfers, transfers};
use nas_tensor::nn::{BatchNorm2d, Conv2d, Linear, Module, Sequential};
use nas_tensor::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig, clip_grad_norm};
use nas_tensor::{ConvOptions, Device, GradcheckOptions, RandomDist, Tensor, gradcheck, no_grad};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type OpFn = fn(&[Tensor]) -> nas_tensor::Result<Tensor>;

/// An op under test: its inputs' shapes (leaves requiring gradients) and the op.
struct Case {
    name: &'static str,
    shapes: &'static [&'static [usize]],
    f: OpFn,
    /// Inputs drawn away from kinks (relu, max, pooling): spaced values.
    spaced: bool,
}

fn cases() -> Vec<Case> {
    fn conv(x: &[Tensor], o: ConvOptions) -> nas_tensor::Result<Tensor> {
        x[0].conv2d(&x[1], Some(&x[2]), o)
    }
    vec![
        Case {
            name: "add (broadcast)",
            shapes: &[&[2, 3, 4], &[3, 1]],
            f: |x| x[0].add(&x[1]),
            spaced: false,
        },
        Case {
            name: "sub",
            shapes: &[&[3, 4], &[4]],
            f: |x| x[0].sub(&x[1]),
            spaced: false,
        },
        Case {
            name: "mul (broadcast)",
            shapes: &[&[2, 3], &[2, 1]],
            f: |x| x[0].mul(&x[1]),
            spaced: false,
        },
        Case {
            name: "div",
            shapes: &[&[3, 4], &[3, 4]],
            f: |x| x[0].div(&x[1].square().add_scalar(1.0)),
            spaced: false,
        },
        Case {
            name: "maximum",
            shapes: &[&[3, 4], &[3, 4]],
            f: |x| x[0].maximum(&x[1]),
            spaced: true,
        },
        Case {
            name: "minimum (broadcast)",
            shapes: &[&[3, 4], &[4]],
            f: |x| x[0].minimum(&x[1]),
            spaced: true,
        },
        Case {
            name: "unary chain",
            shapes: &[&[2, 5]],
            f: |x| {
                Ok(x[0]
                    .tanh()
                    .add(&x[0].sigmoid())?
                    .add(&x[0].square().add_scalar(1.0).sqrt().log())?
                    .add(&x[0].abs().exp().recip())?
                    .scale(0.5)
                    .neg())
            },
            spaced: true,
        },
        Case {
            name: "relu",
            shapes: &[&[4, 5]],
            f: |x| Ok(x[0].relu()),
            spaced: true,
        },
        Case {
            name: "sum_dim",
            shapes: &[&[2, 3, 4]],
            f: |x| x[0].sum_dim(1, false),
            spaced: false,
        },
        Case {
            name: "mean_dim",
            shapes: &[&[2, 3, 4]],
            f: |x| x[0].mean_dim(2, true),
            spaced: false,
        },
        Case {
            name: "max_dim",
            shapes: &[&[3, 5]],
            f: |x| x[0].max_dim(1, false),
            spaced: true,
        },
        Case {
            name: "mean",
            shapes: &[&[3, 5]],
            f: |x| x[0].mean(),
            spaced: false,
        },
        Case {
            name: "softmax (inner dim)",
            shapes: &[&[2, 3, 4]],
            f: |x| x[0].softmax(1),
            spaced: false,
        },
        Case {
            name: "log_softmax",
            shapes: &[&[3, 5]],
            f: |x| x[0].log_softmax(1),
            spaced: false,
        },
        Case {
            name: "cross_entropy",
            shapes: &[&[4, 5]],
            f: |x| x[0].cross_entropy(&[0, 4, 2, 2]),
            spaced: false,
        },
        Case {
            name: "matmul",
            shapes: &[&[3, 4], &[4, 2]],
            f: |x| x[0].matmul(&x[1]),
            spaced: false,
        },
        Case {
            name: "linear",
            shapes: &[&[3, 4], &[5, 4], &[5]],
            f: |x| x[0].linear(&x[1], Some(&x[2])),
            spaced: false,
        },
        Case {
            name: "conv2d (stride 2, padding 1)",
            shapes: &[&[2, 3, 6, 6], &[4, 3, 3, 3], &[4]],
            f: |x| conv(x, ConvOptions::default().stride(2).padding(1)),
            spaced: false,
        },
        Case {
            name: "conv2d (depthwise, dilation 2)",
            shapes: &[&[1, 4, 7, 7], &[4, 1, 3, 3], &[4]],
            f: |x| conv(x, ConvOptions::default().padding(2).dilation(2).groups(4)),
            spaced: false,
        },
        Case {
            name: "relu_conv_conv",
            shapes: &[&[2, 3, 6, 6], &[3, 1, 3, 3], &[4, 3, 1, 1]],
            f: |x| {
                x[0].relu_conv_conv(
                    &x[1],
                    ConvOptions::default().padding(1).groups(3),
                    &x[2],
                    ConvOptions::default(),
                )
            },
            spaced: true,
        },
        Case {
            name: "max_pool2d",
            shapes: &[&[2, 2, 5, 5]],
            f: |x| x[0].max_pool2d(3, 2, 1),
            spaced: true,
        },
        Case {
            name: "avg_pool2d",
            shapes: &[&[2, 2, 5, 5]],
            f: |x| x[0].avg_pool2d(3, 1, 1),
            spaced: false,
        },
        Case {
            name: "global_avg_pool",
            shapes: &[&[2, 3, 4, 4]],
            f: |x| x[0].global_avg_pool(),
            spaced: false,
        },
        Case {
            name: "batch_norm (affine, training)",
            shapes: &[&[4, 3, 3, 3], &[3], &[3]],
            f: |x| x[0].batch_norm(Some(&x[1]), Some(&x[2]), None, None, true, 0.1, 1e-5),
            spaced: true,
        },
        Case {
            name: "batch_norm (non-affine, training)",
            shapes: &[&[4, 3, 3, 3]],
            f: |x| x[0].batch_norm(None, None, None, None, true, 0.1, 1e-5),
            spaced: true,
        },
        Case {
            name: "reshape, permute, narrow",
            shapes: &[&[2, 3, 4]],
            f: |x| x[0].reshape(&[6, 4])?.permute(&[1, 0])?.narrow(1, 1, 4),
            spaced: false,
        },
        Case {
            name: "concat and split",
            shapes: &[&[2, 2, 3], &[2, 1, 3]],
            f: |x| {
                let c = Tensor::concat(&[x[0].clone(), x[1].clone()], 1)?;
                let parts = c.split(1, &[1, 2])?;
                parts[1].mul(&parts[1])
            },
            spaced: false,
        },
        Case {
            name: "weighted_sum",
            shapes: &[&[2, 3], &[2, 3], &[2, 3], &[3]],
            f: |x| Tensor::weighted_sum(&x[..3], &x[3].softmax(0)?),
            spaced: false,
        },
        Case {
            name: "embedding (repeated rows)",
            shapes: &[&[4, 3]],
            f: |x| x[0].embedding(&[2, 0, 2, 3, 2]),
            spaced: false,
        },
        Case {
            name: "lstm_cell",
            shapes: &[&[2, 3], &[2, 4], &[2, 4], &[16, 3], &[16, 4], &[16]],
            f: |x| {
                let (h, c) = Tensor::lstm_cell(&x[0], &x[1], &x[2], &x[3], &x[4], Some(&x[5]))?;
                Tensor::concat(&[h, c], 1)
            },
            spaced: false,
        },
        Case {
            name: "lstm (fused, 3 steps)",
            shapes: &[&[3, 2, 3], &[2, 4], &[2, 4], &[16, 3], &[16, 4], &[16]],
            f: |x| Ok(Tensor::lstm(&x[0], &x[1], &x[2], &x[3], &x[4], &x[5])?.output),
            spaced: false,
        },
        Case {
            name: "dropout_shared (variational mask [1, n, h])",
            shapes: &[&[3, 2, 4]],
            f: |x| x[0].dropout_shared(0.5, true, &[1, 2, 4], &mut ChaCha8Rng::seed_from_u64(5)),
            spaced: false,
        },
    ]
}

fn inputs(case: &Case, device: Device) -> Vec<Tensor> {
    case.shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let t = if case.spaced {
                // a different offset per input: no ties between inputs (max, min)
                spaced(s, 7 + i as u64).add_scalar(0.02 * i as f32)
            } else {
                Tensor::randn(s, 7 + i as u64)
            };
            t.to_device(device).unwrap().param()
        })
        .collect()
}

use crate::common::spaced as spaced_inputs;
use spaced_inputs::spaced_values as spaced;

/// The op's output and its inputs' gradients under a fixed random projection, all on
/// `device`; returns them copied to the host, and the host transfers the forward and backward
/// made.
fn run(case: &Case, device: Device) -> (Vec<f32>, Vec<Vec<f32>>, Transfers) {
    let xs = inputs(case, device);
    let before = transfers();
    let y = (case.f)(&xs).unwrap();
    let r = Tensor::random_on(
        y.shape(),
        RandomDist::Normal {
            mean: 0.0,
            std: 1.0,
        },
        &mut ChaCha8Rng::seed_from_u64(3),
        device,
    )
    .unwrap();
    y.mul(&r).unwrap().sum().backward().unwrap();
    let moved = transfers() - before;
    assert_eq!(y.device(), device, "{}", case.name);
    let grads = xs
        .iter()
        .map(|x| x.grad_vec().unwrap().expect("every input gets a gradient"))
        .collect();
    (y.to_vec().unwrap(), grads, moved)
}

/// Equal for the test backend (it computes with the CPU kernels); within float tolerance for
/// devices with their own kernels: `|a - b| <= 1e-4 * |b| + 1e-5 * max |b|`, no NaN.
fn assert_matches(device: Device, got: &[f32], want: &[f32], what: &str) {
    if device == Device::Test {
        assert_eq!(got, want, "{what}");
        return;
    }
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs() + 1e-5 * scale,
            "{what}: element {i}: {a} vs {b} (cpu)"
        );
    }
}

fn ops_match_the_cpu_and_their_gradients(device: Device) {
    for case in cases() {
        let (y, g, moved) = run(&case, device);
        let (y_cpu, g_cpu, _) = run(&case, Device::Cpu);
        assert_matches(
            device,
            &y,
            &y_cpu,
            &format!("{}: output on {device}", case.name),
        );
        assert_eq!(g.len(), g_cpu.len());
        for (k, (a, b)) in g.iter().zip(&g_cpu).enumerate() {
            let what = format!("{}: gradient {k} on {device}", case.name);
            assert_matches(device, a, b, &what);
        }
        if device == Device::Test {
            assert_eq!(
                moved,
                Transfers::default(),
                "{}: the op's forward and backward moved values through the host",
                case.name
            );
        }
        let xs = inputs(&case, device);
        let opts = GradcheckOptions {
            skip_kinks: true,
            ..GradcheckOptions::default()
        };
        gradcheck(case.f, &xs, opts).unwrap().assert_ok(case.name);
    }
}

/// A small conv net's 20 training steps (forward, backward, clip, SGD with Nesterov momentum
/// and weight decay; then Adam): losses, final weights and BN statistics per device.
fn train_small_net(device: Device) -> (Vec<f32>, Vec<Vec<f32>>, Transfers) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // no bias before the batch norm: its gradient would be rounding noise (BN removes the
    // mean), which Adam turns into full-size steps, different on every backend
    let net = Sequential::new()
        .push(Conv2d::new(2, 4, 3, ConvOptions::default().padding(1), false, &mut rng).unwrap())
        .push(BatchNorm2d::new(4, true))
        .push(nas_tensor::nn::ReLU::new())
        .push(nas_tensor::nn::GlobalAvgPool::new())
        .push(Linear::new(4, 3, true, &mut rng).unwrap());
    net.to_device(device).unwrap();
    assert_eq!(net.device(), Some(device));
    let x = Tensor::randn(&[6, 2, 5, 5], 12).to_vec().unwrap();
    let labels = [0, 1, 2, 2, 1, 0];
    let mut sgd = Sgd::new(
        net.parameters(),
        SgdConfig::new(0.1)
            .momentum(0.9)
            .nesterov(true)
            .weight_decay(1e-3),
    )
    .unwrap();
    let mut adam = Adam::new(net.parameters(), AdamConfig::new(0.01).weight_decay(1e-4)).unwrap();
    let before = transfers();
    let mut losses = Vec::new();
    for step in 0..20 {
        let xb = Tensor::from_slice_on(&x, &[6, 2, 5, 5], device).unwrap();
        let loss = net.forward(&xb).unwrap().cross_entropy(&labels).unwrap();
        net.zero_grad();
        loss.backward().unwrap();
        clip_grad_norm(&net.parameters(), 0.5).unwrap();
        if step < 10 {
            sgd.step().unwrap();
        } else {
            adam.step().unwrap();
        }
        losses.push(loss.item().unwrap());
    }
    let eval = no_grad(|| {
        let n = net;
        n.set_training(false);
        let xb = Tensor::from_slice_on(&x, &[6, 2, 5, 5], device).unwrap();
        let y = n.forward(&xb).unwrap();
        (y, n)
    });
    let moved = transfers() - before;
    let mut state: Vec<Vec<f32>> = eval
        .1
        .state_dict()
        .iter()
        .map(|(_, t)| t.to_vec().unwrap())
        .collect();
    state.push(eval.0.to_vec().unwrap());
    (losses, state, moved)
}

fn training_matches_the_cpu(device: Device) {
    let (losses, state, moved) = train_small_net(device);
    let (losses_cpu, state_cpu, _) = train_small_net(Device::Cpu);
    assert_matches(device, &losses, &losses_cpu, &format!("losses on {device}"));
    assert_eq!(state.len(), state_cpu.len());
    for (k, (a, b)) in state.iter().zip(&state_cpu).enumerate() {
        let what = format!("weights and statistics {k} on {device}");
        assert_matches(device, a, b, &what);
    }
    assert!(losses[19] < losses[0], "the net learns: {losses:?}");
    if device == Device::Test {
        // per step: the batch goes up, the loss comes down; one more batch for evaluation
        assert_eq!(
            moved,
            Transfers {
                to_device: 21,
                to_host: 20
            }
        );
    }
}

fn optimizer_states_round_trip(device: Device) {
    let w = Tensor::randn(&[5], 1).to_device(device).unwrap().param();
    let mut sgd = Sgd::new(vec![w.clone()], SgdConfig::new(0.1).momentum(0.9)).unwrap();
    w.mul(&w).unwrap().sum().backward().unwrap();
    sgd.step().unwrap();
    let st = sgd.state().unwrap();
    assert!(st.momentum_buffers[0].is_some());
    let w2 = Tensor::from_vec(w.to_vec().unwrap(), &[5])
        .unwrap()
        .to_device(device)
        .unwrap()
        .param();
    let mut sgd2 = Sgd::new(vec![w2.clone()], SgdConfig::new(0.1).momentum(0.9)).unwrap();
    sgd2.load_state(st).unwrap();
    for (p, o) in [(&w, &mut sgd), (&w2, &mut sgd2)] {
        o.zero_grad();
        p.mul(p).unwrap().sum().backward().unwrap();
        o.step().unwrap();
    }
    assert_matches(
        device,
        &w.to_vec().unwrap(),
        &w2.to_vec().unwrap(),
        &format!("resumed on {device}"),
    );
}

fn mixing_devices_is_an_error_naming_both(device: Device) {
    // another device built into this binary
    let other = if device == Device::Cpu {
        Device::Test
    } else {
        Device::Cpu
    };
    let a = Tensor::ones(&[2]).to_device(device).unwrap();
    let b = Tensor::ones(&[2]).to_device(other).unwrap();
    let e = a.add(&b).unwrap_err().to_string();
    assert!(
        e.contains(&device.to_string()) && e.contains(&other.to_string()),
        "{e}"
    );
}

macro_rules! backend_suite {
    ($($(#[$attr:meta])* $name:ident => $device:expr),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            $(#[$attr])*
            fn ops_match_the_cpu_and_pass_gradcheck() {
                ops_match_the_cpu_and_their_gradients($device);
            }
            #[test]
            $(#[$attr])*
            fn a_training_loop_matches_the_cpu() {
                training_matches_the_cpu($device);
            }
            #[test]
            $(#[$attr])*
            fn optimizer_states_survive_a_round_trip() {
                optimizer_states_round_trip($device);
            }
            #[test]
            $(#[$attr])*
            fn two_devices_in_one_op_are_refused() {
                mixing_devices_is_an_error_naming_both($device);
            }
        }
    )*};
}

backend_suite!(cpu => Device::Cpu, test_backend => Device::Test);
#[cfg(feature = "cuda-emu")]
backend_suite!(cuda_emu => Device::CudaEmu);
#[cfg(feature = "cuda")]
backend_suite!(
    #[ignore = "needs a CUDA device: run with --ignored on a GPU machine"]
    cuda => Device::Cuda(0)
);
