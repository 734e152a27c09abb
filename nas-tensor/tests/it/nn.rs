//! Modules: PyTorch-style names, default initialisation, train/eval, safetensors round trips.

use nas_tensor::io::{load_module, load_safetensors, save_module, save_safetensors};
use nas_tensor::nn::{
    AvgPool2d, BatchNorm2d, Conv2d, Dropout, GlobalAvgPool, Identity, Linear, MaxPool2d, Module,
    ReLU, Sequential, kaiming_uniform_bound,
};
use nas_tensor::{ConvOptions, Tensor, TensorError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn net(seed: u64) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let stem = Sequential::new()
        .push(Conv2d::new(3, 8, 3, ConvOptions::default().padding(1), false, &mut rng).unwrap())
        .push(BatchNorm2d::new(8, true));
    Sequential::new()
        .push(stem)
        .push(ReLU::new())
        .push(MaxPool2d::new(3, 1, 1))
        .push(
            Conv2d::new(
                8,
                8,
                3,
                ConvOptions::default().padding(2).dilation(2).groups(8),
                true,
                &mut rng,
            )
            .unwrap(),
        )
        .push(BatchNorm2d::new(8, false))
        .push(AvgPool2d::new(3, 2, 1))
        .push(GlobalAvgPool::new())
        .push(Identity::new())
        .push(Linear::new(8, 4, true, &mut rng).unwrap())
}

#[test]
fn names_follow_pytorch() {
    let m = net(0);
    let names: Vec<String> = m.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "0.0.weight",
            "0.1.weight",
            "0.1.bias",
            "0.1.running_mean",
            "0.1.running_var",
            "3.weight",
            "3.bias",
            "4.running_mean",
            "4.running_var",
            "8.weight",
            "8.bias"
        ]
    );
    let params: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        params,
        [
            "0.0.weight",
            "0.1.weight",
            "0.1.bias",
            "3.weight",
            "3.bias",
            "8.weight",
            "8.bias"
        ]
    );
    assert_eq!(m.named_buffers().len(), 4);
    assert_eq!(
        m.num_parameters(),
        8 * 3 * 9 + 8 + 8 + 8 * 9 + 8 + 8 * 4 + 4
    );
    assert!(m.parameters().iter().all(|p| p.requires_grad()));
    assert!(m.named_buffers().iter().all(|(_, b)| !b.requires_grad()));
}

#[test]
fn default_initialisation_matches_pytorch_bounds() {
    // kaiming_uniform(a = sqrt 5) gives bound 1 / sqrt(fan_in)
    assert!((kaiming_uniform_bound(27) - 1.0 / 27f32.sqrt()).abs() < 1e-7);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let c = Conv2d::new(16, 32, 3, ConvOptions::default().groups(2), true, &mut rng).unwrap();
    assert_eq!(c.weight.shape(), &[32, 8, 3, 3]);
    let bound = 1.0 / (8.0f32 * 9.0).sqrt();
    let w = c.weight.to_vec().unwrap();
    assert!(w.iter().all(|v| v.abs() <= bound));
    let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        max > 0.9 * bound,
        "samples fill the range: {max} vs {bound}"
    );
    let var: f32 = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
    assert!(
        (var - bound * bound / 3.0).abs() < 0.15 * bound * bound / 3.0,
        "uniform variance"
    );
    assert!(
        c.bias
            .as_ref()
            .unwrap()
            .to_vec()
            .unwrap()
            .iter()
            .all(|v| v.abs() <= bound)
    );
    let l = Linear::new(50, 7, true, &mut rng).unwrap();
    assert!(
        l.weight
            .to_vec()
            .unwrap()
            .iter()
            .all(|v| v.abs() <= 1.0 / 50f32.sqrt())
    );
    let bn = BatchNorm2d::new(3, true);
    assert_eq!(bn.weight.as_ref().unwrap().to_vec().unwrap(), vec![1.0; 3]);
    assert_eq!(bn.bias.as_ref().unwrap().to_vec().unwrap(), vec![0.0; 3]);
    assert_eq!(bn.running_var.to_vec().unwrap(), vec![1.0; 3]);
}

#[test]
fn train_and_eval_modes() {
    let m = net(1);
    let x = Tensor::randn(&[4, 3, 6, 6], 2);
    let rm = m.named_buffers()[0].1.clone();
    assert_eq!(rm.to_vec().unwrap(), vec![0.0; 8]);
    let y_train = m.forward(&x).unwrap();
    assert_eq!(y_train.shape(), &[4, 4]);
    assert_ne!(
        rm.to_vec().unwrap(),
        vec![0.0; 8],
        "training updates running statistics"
    );
    m.set_training(false);
    assert!(!m.is_training());
    let snapshot = rm.to_vec().unwrap();
    let y1 = m.forward(&x).unwrap().to_vec().unwrap();
    let y2 = m.forward(&x).unwrap().to_vec().unwrap();
    assert_eq!(y1, y2, "evaluation is deterministic");
    assert_eq!(
        rm.to_vec().unwrap(),
        snapshot,
        "evaluation leaves running statistics alone"
    );
    // A one-sample batch works in evaluation (running statistics) but not in training.
    let one = Tensor::randn(&[1, 3, 1, 1], 3);
    let conv_only = Sequential::new().push(BatchNorm2d::new(3, true));
    assert!(conv_only.forward(&one).is_err());
    conv_only.set_training(false);
    assert!(conv_only.forward(&one).is_ok());

    let d = Dropout::new(0.5, 9).unwrap();
    let ones = Tensor::ones(&[1000]);
    let dropped = d.forward(&ones).unwrap().to_vec().unwrap();
    let zeros = dropped.iter().filter(|&&v| v == 0.0).count();
    assert!((400..600).contains(&zeros), "{zeros}");
    assert!(dropped.iter().all(|&v| v == 0.0 || v == 2.0));
    d.set_training(false);
    assert_eq!(d.forward(&ones).unwrap().to_vec().unwrap(), vec![1.0; 1000]);
}

#[test]
fn save_load_round_trips_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    let a = net(3);
    a.forward(&Tensor::randn(&[2, 3, 5, 5], 4)).unwrap(); // non-trivial running stats
    save_module(&a, &path).unwrap();
    let b = net(99);
    assert_ne!(
        a.state_dict()[0].1.to_vec().unwrap(),
        b.state_dict()[0].1.to_vec().unwrap()
    );
    load_module(&b, &path).unwrap();
    for ((na, ta), (nb, tb)) in a.state_dict().iter().zip(b.state_dict().iter()) {
        assert_eq!(na, nb);
        let (va, vb) = (ta.to_vec().unwrap(), tb.to_vec().unwrap());
        assert!(
            va.iter().zip(&vb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{na} differs"
        );
    }
    // raw named tensors, including odd values
    let odd = Tensor::from_slice(&[f32::MIN_POSITIVE, -0.0, 1e-45, f32::MAX, 3.0], &[5]).unwrap();
    let raw = dir.path().join("raw.safetensors");
    save_safetensors(
        &raw,
        &[
            ("x.y".to_string(), odd.clone()),
            ("s".to_string(), Tensor::scalar(2.0)),
        ],
    )
    .unwrap();
    let back = load_safetensors(&raw).unwrap();
    assert_eq!(back[0].0, "s");
    assert_eq!(back[0].1.shape(), &[] as &[usize]);
    assert_eq!(back[1].0, "x.y");
    let bits = |t: &Tensor| {
        t.to_vec()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&back[1].1), bits(&odd));
}

#[test]
fn load_rejects_mismatches_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    let m = net(0);
    let mut sd = m.state_dict();
    // wrong shape
    sd[5].1 = Tensor::zeros(&[8, 1, 2, 2]);
    save_safetensors(&path, &sd).unwrap();
    let e = load_module(&m, &path).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TensorError::Load(_)));
    assert!(
        msg.contains("3.weight") && msg.contains("[8, 1, 2, 2]") && msg.contains("[8, 1, 3, 3]"),
        "{msg}"
    );
    // missing and unexpected names
    let mut sd = m.state_dict();
    sd.remove(0);
    sd.push(("extra.weight".into(), Tensor::zeros(&[1])));
    sd.push(("0.1.num_batches_tracked".into(), Tensor::zeros(&[]))); // tolerated
    save_safetensors(&path, &sd).unwrap();
    let before = m.state_dict()[1].1.to_vec().unwrap();
    let msg = load_module(&m, &path).unwrap_err().to_string();
    assert!(
        msg.contains("missing `0.0.weight`") && msg.contains("unexpected `extra.weight`"),
        "{msg}"
    );
    assert!(!msg.contains("num_batches_tracked"), "{msg}");
    assert_eq!(
        m.state_dict()[1].1.to_vec().unwrap(),
        before,
        "nothing modified on error"
    );
    // not a safetensors file
    std::fs::write(&path, b"not a safetensors file").unwrap();
    assert!(matches!(load_module(&m, &path), Err(TensorError::Load(_))));
    assert!(matches!(
        load_module(&m, dir.path().join("absent")),
        Err(TensorError::Io(_))
    ));
}

/// A layer made of other layers writes `forward` and `children` only: names, parameters,
/// buffers, devices and the training mode of everything below it follow.
#[test]
fn a_composite_layer_writes_forward_and_children_only() {
    use nas_tensor::nn::{Linear, Module, ReLU};
    struct Block {
        norm: BatchNorm2d,
        extra: Vec<Linear>,
    }
    impl Module for Block {
        fn forward(&self, x: &Tensor) -> nas_tensor::Result<Tensor> {
            self.norm.forward(x)
        }
        fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
            f("norm", &self.norm);
            for (i, l) in self.extra.iter().enumerate() {
                f(&format!("extra.{i}"), l);
            }
        }
    }
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let block = Block {
        norm: BatchNorm2d::new(2, true),
        extra: vec![Linear::new(3, 4, true, &mut rng).unwrap()],
    };
    let net = Sequential::new().push(ReLU::new()).push(block);
    let names: Vec<String> = net.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "1.norm.weight",
            "1.norm.bias",
            "1.norm.running_mean",
            "1.norm.running_var",
            "1.extra.0.weight",
            "1.extra.0.bias"
        ]
    );
    assert_eq!(net.num_parameters(), 2 + 2 + 12 + 4);
    assert_eq!(net.named_buffers().len(), 2);
    // The mode reaches the batch norm two levels down, and is read back from it.
    assert!(net.is_training());
    net.set_training(false);
    assert!(!net.is_training());
    let one = Tensor::randn(&[1, 2, 1, 1], 3);
    assert!(
        net.forward(&one).is_ok(),
        "evaluation mode uses running statistics"
    );
    net.set_training(true);
    assert!(
        net.forward(&one).is_err(),
        "training mode needs more than one value"
    );
    // A network without a layer that has a mode reports evaluation mode.
    assert!(!Sequential::new().push(ReLU::new()).is_training());
}
