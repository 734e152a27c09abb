//! Optimizer steps against PyTorch's update rules, worked out by hand (numbers in comments).

use nas_tensor::Tensor;
use nas_tensor::optim::{
    Adam, AdamConfig, AdamState, CosineAnnealingLr, Optimizer, Sgd, SgdConfig, SgdState,
    clip_grad_norm,
};

const G1: [f32; 2] = [0.5, 0.25];
const G2: [f32; 2] = [-0.5, 1.0];

fn param() -> Tensor {
    Tensor::from_slice(&[1.0, -2.0], &[2]).unwrap().param()
}

fn run(opt: &mut dyn Optimizer, p: &Tensor) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for g in [G1, G2] {
        p.set_grad(Some(&g)).unwrap();
        opt.step().unwrap();
        out.push(p.to_vec().unwrap());
    }
    out
}

fn close(a: &[f32], b: &[f64], tol: f64) {
    for (x, y) in a.iter().zip(b) {
        assert!((*x as f64 - y).abs() < tol, "{a:?} vs {b:?}");
    }
}

#[test]
fn sgd_momentum_weight_decay() {
    let p = param();
    let mut opt = Sgd::new(
        vec![p.clone()],
        SgdConfig::new(0.1).momentum(0.9).weight_decay(0.01),
    )
    .unwrap();
    let steps = run(&mut opt, &p);
    // step 1: d = g + 0.01 p = [0.51, 0.23]; buf = d; p = [1 - 0.051, -2 - 0.023]
    close(&steps[0], &[0.949, -2.023], 1e-6);
    // step 2: d = [-0.5 + 0.00949, 1 - 0.02023] = [-0.49051, 0.97977]
    // buf = 0.9 [0.51, 0.23] + d = [-0.03151, 1.18677]; p -= 0.1 buf
    close(&steps[1], &[0.952151, -2.141677], 1e-6);
}

#[test]
fn sgd_nesterov() {
    let p = param();
    let mut opt = Sgd::new(
        vec![p.clone()],
        SgdConfig::new(0.1)
            .momentum(0.9)
            .weight_decay(0.01)
            .nesterov(true),
    )
    .unwrap();
    let steps = run(&mut opt, &p);
    // step 1: buf = d = [0.51, 0.23]; g = d + 0.9 buf = [0.969, 0.437]
    close(&steps[0], &[0.9031, -2.0437], 1e-6);
    // step 2: d = [-0.490969, 0.979563]; buf = [-0.031969, 1.186563];
    // g = d + 0.9 buf = [-0.5197411, 2.0474697]
    close(&steps[1], &[0.95507411, -2.24844697], 1e-6);
}

#[test]
fn sgd_dampening_skips_first_step() {
    let p = param();
    let mut opt = Sgd::new(
        vec![p.clone()],
        SgdConfig::new(0.1).momentum(0.9).dampening(0.5),
    )
    .unwrap();
    let steps = run(&mut opt, &p);
    // step 1: buf = g (no dampening on the first step)
    close(&steps[0], &[0.95, -2.025], 1e-6);
    // step 2: buf = 0.9 [0.5, 0.25] + 0.5 [-0.5, 1] = [0.2, 0.725]
    close(&steps[1], &[0.93, -2.0975], 1e-6);
}

#[test]
fn plain_sgd_and_nesterov_validation() {
    let p = param();
    let mut opt = Sgd::new(vec![p.clone()], SgdConfig::new(0.5)).unwrap();
    let steps = run(&mut opt, &p);
    close(&steps[1], &[1.0 - 0.25 + 0.25, -2.0 - 0.125 - 0.5], 1e-6);
    assert!(Sgd::new(vec![param()], SgdConfig::new(0.1).nesterov(true)).is_err());
}

#[test]
fn adam_with_l2_weight_decay_and_bias_correction() {
    let p = param();
    let mut opt = Adam::new(vec![p.clone()], AdamConfig::new(0.1).weight_decay(0.1)).unwrap();
    let steps = run(&mut opt, &p);
    // step 1: d = g + 0.1 p = [0.6, 0.05]; m = 0.1 d; v = 0.001 d^2; m_hat = d, sqrt(v_hat) = |d|
    // p -= 0.1 * d / (|d| + 1e-8)  ->  [0.9, -2.1]
    close(&steps[0], &[0.9, -2.1], 1e-6);
    // step 2: d = [-0.5 + 0.09, 1 - 0.21] = [-0.41, 0.79]
    // m = 0.9 [0.06, 0.005] + 0.1 d = [0.013, 0.0835]
    // v = 0.999 [3.6e-4, 2.5e-6] + 0.001 d^2 = [5.2774e-4, 6.265975e-4]
    // p -= (0.1 / 0.19) m / (sqrt(v) / sqrt(0.001999) + 1e-8)
    close(&steps[1], &[0.8866836214, -2.1784955316], 2e-6);
}

#[test]
fn params_without_gradient_are_skipped() {
    let p = param();
    let q = param();
    let mut opt = Sgd::new(
        vec![p.clone(), q.clone()],
        SgdConfig::new(0.1).momentum(0.9),
    )
    .unwrap();
    p.set_grad(Some(&G1)).unwrap();
    opt.step().unwrap();
    assert_eq!(q.to_vec().unwrap(), vec![1.0, -2.0]);
    assert_ne!(p.to_vec().unwrap(), vec![1.0, -2.0]);
    opt.zero_grad();
    assert!(p.grad_vec().unwrap().is_none());
}

#[test]
fn optimizer_states_round_trip_through_json() {
    // One step, checkpoint (state -> JSON), resume on a copy of the parameter, one more step:
    // the resumed run must match the uninterrupted one exactly.
    let (p1, p2) = (param(), param());
    let mut sgd = Sgd::new(vec![p1.clone()], SgdConfig::new(0.05).momentum(0.9)).unwrap();
    p1.set_grad(Some(&G1)).unwrap();
    sgd.step().unwrap();
    let json = serde_json::to_string(&sgd.state().unwrap()).unwrap();
    let back: SgdState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sgd.state().unwrap());
    p2.set_data(&p1.to_vec().unwrap()).unwrap();
    let mut resumed = Sgd::new(vec![p2.clone()], SgdConfig::new(1.0)).unwrap();
    resumed.load_state(back).unwrap();
    assert_eq!(resumed.lr(), 0.05);
    for (p, o) in [(&p1, &mut sgd as &mut dyn Optimizer), (&p2, &mut resumed)] {
        p.set_grad(Some(&G2)).unwrap();
        o.step().unwrap();
    }
    assert_eq!(
        p1.to_vec().unwrap(),
        p2.to_vec().unwrap(),
        "resumed SGD continues identically"
    );

    let (p1, p2) = (param(), param());
    let mut adam = Adam::new(vec![p1.clone()], AdamConfig::new(0.05)).unwrap();
    p1.set_grad(Some(&G1)).unwrap();
    adam.step().unwrap();
    let json = serde_json::to_string(&adam.state().unwrap()).unwrap();
    let back: AdamState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, adam.state().unwrap());
    p2.set_data(&p1.to_vec().unwrap()).unwrap();
    let mut resumed = Adam::new(vec![p2.clone()], AdamConfig::new(1.0)).unwrap();
    resumed.load_state(back).unwrap();
    for (p, o) in [(&p1, &mut adam as &mut dyn Optimizer), (&p2, &mut resumed)] {
        p.set_grad(Some(&G2)).unwrap();
        o.step().unwrap();
    }
    assert_eq!(
        p1.to_vec().unwrap(),
        p2.to_vec().unwrap(),
        "resumed Adam continues identically (step counts restored)"
    );
}

#[test]
fn load_state_rejects_mismatched_parameters() {
    let mut opt = Sgd::new(vec![param()], SgdConfig::new(0.1).momentum(0.9)).unwrap();
    let bad = SgdState {
        config: SgdConfig::new(0.1),
        momentum_buffers: vec![Some(vec![1.0; 3])],
    };
    assert!(opt.load_state(bad).is_err());
    let bad = SgdState {
        config: SgdConfig::new(0.1),
        momentum_buffers: vec![None, None],
    };
    assert!(opt.load_state(bad).is_err());
}

#[test]
fn cosine_annealing_closed_form() {
    let s = CosineAnnealingLr::new(0.1, 10, 0.001).unwrap();
    assert!((s.lr_at(0) - 0.1).abs() < 1e-7);
    assert!((s.lr_at(5) - 0.0505).abs() < 1e-7); // midpoint: (0.1 + 0.001) / 2
    assert!((s.lr_at(10) - 0.001).abs() < 1e-7);
    // 0.001 + 0.099 (1 + cos(0.2 pi)) / 2, cos(0.2 pi) = 0.80901699
    assert!((s.lr_at(2) - 0.09054634).abs() < 1e-7);
    let mut opt = Sgd::new(vec![param()], SgdConfig::new(0.1)).unwrap();
    s.apply(&mut opt, 5);
    assert!((opt.lr() - 0.0505).abs() < 1e-7);
}

#[test]
fn clip_grad_norm_scales_by_global_norm() {
    let a = Tensor::zeros(&[2]).param();
    let b = Tensor::zeros(&[1]).param();
    a.set_grad(Some(&[3.0, 4.0])).unwrap();
    b.set_grad(Some(&[12.0])).unwrap();
    let n = clip_grad_norm(&[a.clone(), b.clone()], 6.5)
        .unwrap()
        .item()
        .unwrap();
    assert!((n - 13.0).abs() < 1e-5);
    // coefficient 6.5 / (13 + 1e-6)
    close(&a.grad_vec().unwrap().unwrap(), &[1.5, 2.0], 1e-5);
    close(&b.grad_vec().unwrap().unwrap(), &[6.0], 1e-5);
    let n = clip_grad_norm(&[a.clone(), b.clone()], 100.0)
        .unwrap()
        .item()
        .unwrap();
    assert!((n - 6.5).abs() < 1e-4);
    close(&a.grad_vec().unwrap().unwrap(), &[1.5, 2.0], 1e-5);
}
