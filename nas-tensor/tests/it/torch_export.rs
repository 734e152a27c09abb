//! Cross-check against PyTorch (manual, needs no Python to build): writes a small network's
//! initial state, a forward/backward/optimizer run and its results as safetensors; then
//! `python tests/torch_check.py DIR` rebuilds the same network in PyTorch from those files and
//! prints the largest differences. Run with
//! `NAS_TORCH_CHECK_DIR=/tmp/tcheck cargo test --release -p nas-tensor --test torch_export -- --ignored`.

use nas_tensor::io::save_safetensors;
use nas_tensor::nn::*;
use nas_tensor::optim::*;
use nas_tensor::{ConvOptions, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
#[test]
#[ignore = "writes files for tests/torch_check.py; run by hand"]
fn export() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let stem = Sequential::new()
        .push(Conv2d::new(3, 8, 3, ConvOptions::default().padding(1), false, &mut rng).unwrap())
        .push(BatchNorm2d::new(8, true));
    let m = Sequential::new()
        .push(stem)
        .push(ReLU::new())
        .push(MaxPool2d::new(3, 1, 1))
        .push(
            Conv2d::new(
                8,
                8,
                3,
                ConvOptions::default().padding(2).dilation(2).groups(4),
                true,
                &mut rng,
            )
            .unwrap(),
        )
        .push(BatchNorm2d::new(8, false))
        .push(AvgPool2d::new(3, 2, 1))
        .push(GlobalAvgPool::new())
        .push(Linear::new(8, 4, true, &mut rng).unwrap());
    let d = std::env::var("NAS_TORCH_CHECK_DIR").unwrap_or_else(|_| "/tmp/tcheck".into());
    std::fs::create_dir_all(&d).unwrap();
    save_safetensors(format!("{d}/init.safetensors"), &m.state_dict()).unwrap();
    let x = Tensor::randn(&[3, 3, 7, 7], 5);
    let y = m.forward(&x).unwrap();
    let loss = y.cross_entropy(&[1, 3, 0]).unwrap();
    loss.backward().unwrap();
    let mut out = vec![
        ("x".to_string(), x),
        ("y".to_string(), y.detach()),
        ("loss".to_string(), loss.detach()),
    ];
    for (n, p) in m.named_parameters() {
        out.push((format!("grad.{n}"), p.grad().unwrap().unwrap()));
    }
    for (n, b) in m.named_buffers() {
        out.push((format!("after.{n}"), b.clone()));
    }
    // two Adam steps + two SGD nesterov steps on the same grads
    let mut opt = Adam::new(m.parameters(), AdamConfig::new(0.01).weight_decay(0.1)).unwrap();
    opt.step().unwrap();
    opt.step().unwrap();
    let mut sgd = Sgd::new(
        m.parameters(),
        SgdConfig::new(0.1)
            .momentum(0.9)
            .nesterov(true)
            .weight_decay(0.01),
    )
    .unwrap();
    sgd.step().unwrap();
    sgd.step().unwrap();
    for (n, p) in m.named_parameters() {
        out.push((format!("stepped.{n}"), p.detach()));
    }
    m.set_training(false);
    let ye = m.forward(&out[0].1).unwrap();
    out.push(("y_eval".into(), ye));
    save_safetensors(format!("{d}/out.safetensors"), &out).unwrap();
}
