//! Finite-difference gradient checks of every differentiable op.

use nas_tensor::{GradcheckOptions, Tensor, gradcheck};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn p(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, seed).param()
}

use crate::common::spaced as spaced_inputs;

/// Spaced values (see [`spaced_inputs::spaced_values`]) as a parameter.
fn spaced(shape: &[usize], seed: u64) -> Tensor {
    spaced_inputs::spaced_values(shape, seed).param()
}

fn check(what: &str, f: impl Fn(&[Tensor]) -> nas_tensor::Result<Tensor>, inputs: &[Tensor]) {
    gradcheck(f, inputs, GradcheckOptions::default())
        .unwrap()
        .assert_ok(what);
}

#[test]
fn binary_ops_with_broadcasting() {
    for (sa, sb) in [
        (vec![3, 4], vec![3, 4]),
        (vec![2, 3, 4], vec![3, 1]),
        (vec![4], vec![2, 3, 1]),
        (vec![2, 3], vec![]),
    ] {
        let a = p(&sa, 1);
        // keep the divisor away from 0
        let b = Tensor::randn(&sb, 2)
            .to_vec()
            .unwrap()
            .iter()
            .map(|x| x.signum() * (1.0 + x.abs()))
            .collect::<Vec<_>>();
        let b = Tensor::from_vec(b, &sb).unwrap().param();
        check("add", |x| x[0].add(&x[1]), &[a.clone(), b.clone()]);
        check("sub", |x| x[0].sub(&x[1]), &[a.clone(), b.clone()]);
        check("mul", |x| x[0].mul(&x[1]), &[a.clone(), b.clone()]);
        check("div", |x| x[0].div(&x[1]), &[a.clone(), b.clone()]);
    }
}

#[test]
fn unary_ops() {
    let a = spaced(&[3, 5], 3);
    check("relu", |x| Ok(x[0].relu()), std::slice::from_ref(&a));
    check("neg", |x| Ok(x[0].neg()), std::slice::from_ref(&a));
    check("exp", |x| Ok(x[0].exp()), std::slice::from_ref(&a));
    check("sigmoid", |x| Ok(x[0].sigmoid()), std::slice::from_ref(&a));
    check("tanh", |x| Ok(x[0].tanh()), std::slice::from_ref(&a));
    check("scale", |x| Ok(x[0].scale(-2.5)), std::slice::from_ref(&a));
    check(
        "add_scalar",
        |x| Ok(x[0].add_scalar(0.7)),
        std::slice::from_ref(&a),
    );
    let pos = Tensor::uniform(&[7], 0.5, 2.0, 4).unwrap().param();
    check("log", |x| Ok(x[0].log()), std::slice::from_ref(&pos));
    check("sqrt", |x| Ok(x[0].sqrt()), std::slice::from_ref(&pos));
}

#[test]
fn matmul_and_linear() {
    let a = p(&[3, 4], 5);
    let b = p(&[4, 5], 6);
    check("matmul", |x| x[0].matmul(&x[1]), &[a, b]);
    let x = p(&[4, 6], 7);
    let w = p(&[3, 6], 8);
    let bias = p(&[3], 9);
    check(
        "linear",
        |t| t[0].linear(&t[1], Some(&t[2])),
        &[x.clone(), w.clone(), bias],
    );
    check("linear without bias", |t| t[0].linear(&t[1], None), &[x, w]);
}

#[test]
fn reductions_softmax_and_cross_entropy() {
    let a = p(&[2, 3, 4], 10);
    check("sum", |x| Ok(x[0].sum()), std::slice::from_ref(&a));
    check("mean", |x| x[0].mean(), std::slice::from_ref(&a));
    for d in 0..3 {
        check(
            "sum_dim",
            |x| x[0].sum_dim(d, false),
            std::slice::from_ref(&a),
        );
        check("softmax", |x| x[0].softmax(d), std::slice::from_ref(&a));
        check(
            "log_softmax",
            |x| x[0].log_softmax(d),
            std::slice::from_ref(&a),
        );
    }
    let logits = p(&[5, 4], 11);
    check(
        "cross_entropy",
        |x| x[0].cross_entropy(&[0, 3, 1, 1, 2]),
        &[logits],
    );
}

#[test]
fn shape_ops() {
    let a = p(&[2, 6, 3], 12);
    check(
        "reshape",
        |x| x[0].reshape(&[3, usize::MAX]),
        std::slice::from_ref(&a),
    );
    check("flatten", |x| x[0].flatten(1), std::slice::from_ref(&a));
    check(
        "narrow dim0",
        |x| x[0].narrow(0, 1, 1),
        std::slice::from_ref(&a),
    );
    check(
        "narrow dim1",
        |x| x[0].narrow(1, 2, 3),
        std::slice::from_ref(&a),
    );
    let b = p(&[2, 2, 3], 13);
    check(
        "concat dim1",
        |x| Tensor::concat(x, 1),
        &[a.clone(), b.clone()],
    );
    check(
        "split dim1",
        |x| {
            let parts = x[0].split(1, &[1, 3, 2])?;
            // weight the pieces differently so that a mix-up would show
            Tensor::concat(
                &[parts[2].clone(), parts[0].scale(2.0), parts[1].scale(-1.0)],
                1,
            )
        },
        std::slice::from_ref(&a),
    );
}

#[test]
fn weighted_sum_flows_to_inputs_and_weights() {
    let xs: Vec<Tensor> = (0..4).map(|i| p(&[2, 3, 2, 2], 20 + i)).collect();
    let w = p(&[4], 30);
    let mut inputs = xs.clone();
    inputs.push(w);
    check(
        "weighted_sum",
        |t| Tensor::weighted_sum(&t[..4], &t[4]),
        &inputs,
    );
    // softmax-ed architecture weights, as DARTS uses them
    check(
        "weighted_sum(softmax(alpha))",
        |t| Tensor::weighted_sum(&t[..4], &t[4].softmax(0)?),
        &inputs,
    );
    // constant weights (DARTS' weight step): the inputs' gradients take the other path
    let w_const = Tensor::randn(&[4], 31);
    check(
        "weighted_sum, constant weights",
        |t| Tensor::weighted_sum(t, &w_const),
        &xs,
    );
}

#[test]
fn dropout_gradient_uses_the_same_mask() {
    let a = p(&[4, 5], 40);
    check(
        "dropout",
        |x| x[0].dropout(0.3, true, &mut ChaCha8Rng::seed_from_u64(1)),
        std::slice::from_ref(&a),
    );
}

#[test]
fn gradcheck_catches_a_wrong_gradient() {
    // A function whose recorded gradient is wrong on purpose: detach() hides a term.
    let a = p(&[3], 50);
    let report = gradcheck(
        |x| x[0].mul(&x[0].detach()),
        &[a],
        GradcheckOptions::default(),
    )
    .unwrap();
    assert!(!report.ok(), "the checker must flag a missing term");
}

use nas_tensor::ConvOptions;

#[test]
fn conv2d_all_options() {
    let cases = [
        // (c_in, c_out, k, stride, padding, dilation, groups, h, w, bias)
        (3, 4, 3, 1, 1, 1, 1, 5, 5, true),
        (2, 3, 3, 2, 0, 1, 1, 7, 6, false),
        (4, 4, 3, 1, 2, 2, 4, 6, 6, false), // depthwise dilated
        (4, 6, 1, 1, 0, 1, 2, 3, 4, true),  // grouped 1x1
        (2, 2, 5, 1, 2, 1, 1, 5, 5, true),
        (3, 3, 3, 2, 1, 1, 3, 5, 5, false), // depthwise strided
    ];
    for (i, &(ci, co, k, s, pd, d, g, h, w, bias)) in cases.iter().enumerate() {
        let o = ConvOptions::default()
            .stride(s)
            .padding(pd)
            .dilation(d)
            .groups(g);
        let x = p(&[2, ci, h, w], 100 + i as u64);
        let wt = Tensor::randn(&[co, ci / g, k, k], 200 + i as u64)
            .scale(0.5)
            .param();
        let mut inputs = vec![x, wt];
        if bias {
            inputs.push(p(&[co], 300 + i as u64));
        }
        check(
            &format!("conv2d case {i} {o:?}"),
            |t| t[0].conv2d(&t[1], t.get(2), o),
            &inputs,
        );
    }
}

#[test]
fn pooling() {
    let x = spaced(&[2, 3, 5, 6], 60);
    check(
        "max_pool2d 3x3 s1 p1",
        |t| t[0].max_pool2d(3, 1, 1),
        std::slice::from_ref(&x),
    );
    check(
        "max_pool2d 3x3 s2 p1",
        |t| t[0].max_pool2d(3, 2, 1),
        std::slice::from_ref(&x),
    );
    check(
        "max_pool2d 2x2 s2",
        |t| t[0].max_pool2d(2, 2, 0),
        std::slice::from_ref(&x),
    );
    check(
        "avg_pool2d 3x3 s1 p1",
        |t| t[0].avg_pool2d(3, 1, 1),
        std::slice::from_ref(&x),
    );
    check(
        "avg_pool2d 3x3 s2 p1",
        |t| t[0].avg_pool2d(3, 2, 1),
        std::slice::from_ref(&x),
    );
    check(
        "global_avg_pool",
        |t| t[0].global_avg_pool(),
        std::slice::from_ref(&x),
    );
}

#[test]
fn avg_pool_excludes_padding_from_the_divisor() {
    let x = Tensor::ones(&[1, 1, 3, 3]);
    let y = x.avg_pool2d(3, 1, 1).unwrap().to_vec().unwrap();
    assert!(
        y.iter().all(|&v| (v - 1.0).abs() < 1e-6),
        "count_include_pad=false keeps ones at 1: {y:?}"
    );
}

/// The output of `f()` and the gradients of `inputs` (zeroed first) of `sum(f() * probe)`: for
/// comparing a fused op with the separate ops it replaces.
fn values_and_grads(
    inputs: &[Tensor],
    probe: &Tensor,
    f: impl FnOnce() -> Tensor,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    for t in inputs {
        t.zero_grad();
    }
    let y = f();
    y.mul(probe).unwrap().sum().backward().unwrap();
    let grads = inputs
        .iter()
        .map(|t| t.grad_vec().unwrap().unwrap())
        .collect();
    (y.to_vec().unwrap(), grads)
}

#[test]
fn relu_conv2d_matches_relu_then_conv2d_and_finite_differences() {
    // (c, c_out, k, stride, padding, dilation, groups, h): the stride-1 direct path (3x3, 5x5,
    // dilated), a strided and a grouped convolution, and a 1x1
    let cases = [
        (3, 4, 3, 1, 1, 1, 1, 6),
        (2, 5, 5, 1, 2, 1, 1, 7),
        (3, 3, 3, 1, 2, 2, 1, 6),
        (3, 4, 3, 2, 1, 1, 1, 7),
        (4, 6, 3, 1, 1, 1, 2, 5),
        (3, 4, 1, 1, 0, 1, 1, 5),
    ];
    for (i, &(c, co, k, s, pad, d, g, h)) in cases.iter().enumerate() {
        let o = ConvOptions::default()
            .stride(s)
            .padding(pad)
            .dilation(d)
            .groups(g);
        let x = spaced(&[2, c, h, h], 500 + i as u64);
        let w = Tensor::randn(&[co, c / g, k, k], 510 + i as u64).param();
        let inputs = [x, w];
        check(
            &format!("relu_conv2d case {i}"),
            |t| t[0].relu_conv2d(&t[1], o),
            &inputs,
        );
        let oh = (h + 2 * pad - d * (k - 1) - 1) / s + 1;
        let probe = Tensor::randn(&[2, co, oh, oh], 520 + i as u64);
        let [x, w] = &inputs;
        assert_eq!(
            values_and_grads(&inputs, &probe, || x.relu_conv2d(w, o).unwrap()),
            values_and_grads(&inputs, &probe, || x.relu().conv2d(w, None, o).unwrap()),
            "case {i}: fused equals separate ops"
        );
    }
    // a weight that does not fit is an error naming the op
    let x = Tensor::randn(&[1, 2, 4, 4], 1).param();
    let bad = Tensor::randn(&[3, 4, 3, 3], 3);
    let err = x.relu_conv2d(&bad, ConvOptions::default()).unwrap_err();
    assert!(err.to_string().contains("relu_conv2d"), "{err}");
}

#[test]
fn relu_conv_conv_matches_the_three_ops_and_finite_differences() {
    // (c, c_out, k, stride, dilation, h): separable (stride 1 and 2) and dilated blocks
    for (i, &(c, co, k, s, d, h)) in [(3, 4, 3, 1, 1, 5), (3, 3, 3, 2, 1, 6), (2, 3, 3, 1, 2, 6)]
        .iter()
        .enumerate()
    {
        let o1 = ConvOptions::default()
            .stride(s)
            .padding(d * (k / 2))
            .dilation(d)
            .groups(c);
        let o2 = ConvOptions::default();
        // input values away from ReLU's kink
        let x = spaced(&[2, c, h, h], 400 + i as u64);
        let w1 = Tensor::randn(&[c, 1, k, k], 410 + i as u64).param();
        let w2 = Tensor::randn(&[co, c, 1, 1], 420 + i as u64).param();
        let inputs = [x, w1, w2];
        check(
            &format!("relu_conv_conv case {i}"),
            |t| t[0].relu_conv_conv(&t[1], o1, &t[2], o2),
            &inputs,
        );
        // the same values and gradients as ReLU, conv, conv recorded separately
        let probe = Tensor::randn(&[2, co, h.div_ceil(s), h.div_ceil(s)], 430 + i as u64);
        let [x, w1, w2] = &inputs;
        let separate = || {
            let r = x.relu().conv2d(w1, None, o1).unwrap();
            r.conv2d(w2, None, o2).unwrap()
        };
        assert_eq!(
            values_and_grads(&inputs, &probe, || x
                .relu_conv_conv(w1, o1, w2, o2)
                .unwrap()),
            values_and_grads(&inputs, &probe, separate),
            "case {i}: fused equals separate ops"
        );
        // only the input's gradient: the weights' stay untouched
        for t in &inputs {
            t.zero_grad();
        }
        let [x, w1, w2] = &inputs;
        let y = x.relu_conv_conv(w1, o1, w2, o2).unwrap();
        y.mul(&probe)
            .unwrap()
            .sum()
            .backward_for(std::slice::from_ref(x))
            .unwrap();
        assert!(
            x.grad_vec().unwrap().is_some()
                && w1.grad_vec().unwrap().is_none()
                && w2.grad_vec().unwrap().is_none()
        );
    }
    // shapes that do not chain are an error naming the op
    let x = Tensor::randn(&[1, 2, 4, 4], 1).param();
    let w1 = Tensor::randn(&[2, 1, 3, 3], 2);
    let bad = Tensor::randn(&[3, 4, 1, 1], 3);
    let o = ConvOptions::default().padding(1).groups(2);
    let err = x
        .relu_conv_conv(&w1, o, &bad, ConvOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("relu_conv_conv"), "{err}");
    // an empty kernel is an error, not an underflow
    let empty = Tensor::zeros(&[2, 1, 0, 3]);
    let err = x.conv2d(&empty, None, o).unwrap_err();
    assert!(err.to_string().contains("`kh` must be positive"), "{err}");
}

#[test]
fn batch_norm_train_and_eval() {
    let x = p(&[3, 2, 2, 3], 70);
    let gamma = Tensor::randn(&[2], 71).add_scalar(1.0).param();
    let beta = p(&[2], 72);
    check(
        "batch_norm train affine",
        |t| t[0].batch_norm(Some(&t[1]), Some(&t[2]), None, None, true, 0.1, 1e-5),
        &[x.clone(), gamma.clone(), beta.clone()],
    );
    check(
        "batch_norm train plain",
        |t| t[0].batch_norm(None, None, None, None, true, 0.1, 1e-5),
        std::slice::from_ref(&x),
    );
    let rm = Tensor::from_slice(&[0.3, -0.2], &[2]).unwrap();
    let rv = Tensor::from_slice(&[1.5, 0.7], &[2]).unwrap();
    check(
        "batch_norm eval affine",
        |t| {
            t[0].batch_norm(
                Some(&t[1]),
                Some(&t[2]),
                Some(&rm),
                Some(&rv),
                false,
                0.1,
                1e-5,
            )
        },
        &[x.clone(), gamma, beta],
    );
    // non-affine: the rule keeps the output (x-hat) instead of the input
    check(
        "batch_norm eval plain",
        |t| t[0].batch_norm(None, None, Some(&rm), Some(&rv), false, 0.1, 1e-5),
        &[x],
    );
}

#[test]
fn batch_norm_running_statistics_follow_pytorch() {
    // one channel, values 1, 2, 3, 6: mean 3, biased var 3.5, unbiased var 14/3
    let x = Tensor::from_slice(&[1.0, 2.0, 3.0, 6.0], &[2, 1, 1, 2]).unwrap();
    let rm = Tensor::zeros(&[1]);
    let rv = Tensor::ones(&[1]);
    let y = x
        .batch_norm(None, None, Some(&rm), Some(&rv), true, 0.1, 1e-5)
        .unwrap()
        .to_vec()
        .unwrap();
    assert!((rm.to_vec().unwrap()[0] - 0.3).abs() < 1e-6);
    assert!((rv.to_vec().unwrap()[0] - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-6);
    let inv = 1.0 / (3.5f32 + 1e-5).sqrt();
    for (a, b) in y.iter().zip([-2.0, -1.0, 0.0, 3.0]) {
        assert!((a - b * inv).abs() < 1e-5);
    }
    // evaluation uses the running statistics and leaves them alone
    let y = x
        .batch_norm(None, None, Some(&rm), Some(&rv), false, 0.1, 1e-5)
        .unwrap()
        .to_vec()
        .unwrap();
    let rvv = 0.9 + 0.1 * 14.0 / 3.0;
    assert!((y[0] - (1.0 - 0.3) / (rvv + 1e-5f32).sqrt()).abs() < 1e-5);
    assert!((rm.to_vec().unwrap()[0] - 0.3).abs() < 1e-6);
}

#[test]
fn composite_network_conv_bn_relu_pool_linear_cross_entropy() {
    let x = p(&[4, 2, 6, 6], 80);
    let w1 = Tensor::randn(&[4, 2, 3, 3], 81).scale(0.4).param();
    let b1 = p(&[4], 82);
    let gamma = Tensor::randn(&[4], 83).scale(0.2).add_scalar(1.0).param();
    let beta = p(&[4], 84);
    let w2 = Tensor::randn(&[3, 4 * 3 * 3], 85).scale(0.3).param();
    let b2 = p(&[3], 86);
    let labels = [0usize, 2, 1, 2];
    let net = |t: &[Tensor]| {
        let h = t[0].conv2d(&t[1], Some(&t[2]), ConvOptions::default().padding(1))?;
        let h = h.batch_norm(Some(&t[3]), Some(&t[4]), None, None, true, 0.1, 1e-5)?;
        let h = h.relu().max_pool2d(3, 2, 1)?;
        let h = h.flatten(1)?;
        h.linear(&t[5], Some(&t[6]))?.cross_entropy(&labels)
    };
    // ReLU after batch norm leaves many zeros, so max-pool windows hold near-ties: points
    // next to such a kink are detected (two step sizes disagree) and skipped, at most 5%.
    let opts = GradcheckOptions {
        eps: 3e-3,
        atol: 1e-3,
        rtol: 2e-2,
        skip_kinks: true,
        ..Default::default()
    };
    let report = gradcheck(net, &[x, w1, b1, gamma, beta, w2, b2], opts).unwrap();
    report.assert_ok("conv-bn-relu-pool-linear-ce");
    assert!(report.checked >= 460, "{report:?}");
}

#[test]
fn more_elementwise_and_reductions() {
    let a = spaced(&[2, 3, 4], 90);
    let b = spaced(&[3, 1], 91).detach().add_scalar(0.02).param(); // no ties with a
    check("maximum", |x| x[0].maximum(&x[1]), &[a.clone(), b.clone()]);
    check("minimum", |x| x[0].minimum(&x[1]), &[a.clone(), b.clone()]);
    check("square", |x| Ok(x[0].square()), std::slice::from_ref(&a));
    check("abs", |x| Ok(x[0].abs()), std::slice::from_ref(&a));
    let away = Tensor::uniform(&[2, 5], 0.5, 2.0, 92).unwrap().param();
    check("recip", |x| Ok(x[0].recip()), std::slice::from_ref(&away));
    check(
        "recip of negatives",
        |x| Ok(x[0].neg().recip()),
        std::slice::from_ref(&away),
    );
    for d in 0..3 {
        check(
            "mean_dim",
            |x| x[0].mean_dim(d, true),
            std::slice::from_ref(&a),
        );
        check(
            "max_dim",
            |x| x[0].max_dim(d, false),
            std::slice::from_ref(&a),
        );
    }
    check(
        "permute",
        |x| x[0].permute(&[2, 0, 1]),
        std::slice::from_ref(&a),
    );
    let v = a.permute(&[1, 2, 0]).unwrap();
    assert_eq!(v.shape(), &[3, 4, 2]);
    // element [i, j, k] of the permuted tensor is element [k, i, j] of the original
    let (av, vv) = (a.to_vec().unwrap(), v.to_vec().unwrap());
    assert_eq!(vv[(2 * 4 + 1) * 2 + 1], av[(3 + 2) * 4 + 1]);
    assert!(a.permute(&[0, 0, 1]).is_err());
}
