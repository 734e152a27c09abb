//! The autograd core: accumulation, zeroing, detach, no-grad, graph release and typed errors.

use nas_tensor::{Tensor, TensorError, graph_nodes_recorded, live_graph_nodes, no_grad};

fn t(v: &[f32], s: &[usize]) -> Tensor {
    Tensor::from_slice(v, s).unwrap()
}

#[test]
fn shared_subexpressions_accumulate() {
    // y = sum(x * x + x)  =>  dy/dx = 2x + 1
    let x = t(&[1.0, -2.0, 0.5], &[3]).param();
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum();
    y.backward().unwrap();
    assert_eq!(x.grad_vec().unwrap().unwrap(), vec![3.0, -3.0, 2.0]);
}

#[test]
fn gradients_accumulate_across_backward_calls_until_zeroed() {
    let x = t(&[1.0, 2.0], &[2]).param();
    for _ in 0..2 {
        x.scale(3.0).sum().backward().unwrap();
    }
    assert_eq!(x.grad_vec().unwrap().unwrap(), vec![6.0, 6.0]);
    x.zero_grad();
    assert!(x.grad_vec().unwrap().is_none());
    x.scale(-1.0).sum().backward().unwrap();
    assert_eq!(x.grad_vec().unwrap().unwrap(), vec![-1.0, -1.0]);
}

#[test]
fn separate_parameter_sets_get_separate_gradients() {
    // DARTS-style: w and alpha both receive gradients; each is read per handle.
    let w = t(&[2.0], &[1]).param();
    let alpha = t(&[3.0], &[1]).param();
    let x = t(&[5.0], &[1]);
    let loss = x.mul(&w).unwrap().mul(&alpha).unwrap().sum();
    loss.backward().unwrap();
    assert_eq!(w.grad_vec().unwrap().unwrap(), vec![15.0]);
    assert_eq!(alpha.grad_vec().unwrap().unwrap(), vec![10.0]);
    assert!(x.grad_vec().unwrap().is_none(), "constants get no gradient");
}

#[test]
fn detach_stops_the_gradient() {
    let x = t(&[2.0], &[1]).param();
    let y = x.mul(&x.detach()).unwrap().sum(); // d/dx (x * c) = c = 2, not 2x = 4
    y.backward().unwrap();
    assert_eq!(x.grad_vec().unwrap().unwrap(), vec![2.0]);
}

#[test]
fn no_grad_records_nothing_and_keeps_no_intermediate() {
    let w = Tensor::randn(&[4, 4], 1).param();
    let x = Tensor::randn(&[2, 4], 2);
    let before = graph_nodes_recorded();
    let live_before = live_graph_nodes();
    let (out, weak) = no_grad(|| {
        let h = x.matmul(&w).unwrap().relu();
        let weak = h.downgrade();
        (h.scale(2.0).sum(), weak)
    });
    assert_eq!(
        graph_nodes_recorded(),
        before,
        "no node recorded under no_grad"
    );
    assert_eq!(live_graph_nodes(), live_before);
    assert!(!out.requires_grad());
    assert!(weak.upgrade().is_none(), "the intermediate was freed");
    assert!(matches!(
        out.backward(),
        Err(TensorError::InvalidArgument { op: "backward", .. })
    ));

    // The same computation with gradients on records 4 nodes and keeps the intermediate.
    let h = x.matmul(&w).unwrap().relu();
    let weak = h.downgrade();
    let out = h.scale(2.0).sum();
    drop(h);
    assert_eq!(graph_nodes_recorded(), before + 4);
    assert!(weak.upgrade().is_some(), "the graph holds the intermediate");
    drop(out);
    assert!(weak.upgrade().is_none());
    assert_eq!(live_graph_nodes(), live_before);
}

#[test]
fn backward_releases_the_graph() {
    let live_before = live_graph_nodes();
    let w = Tensor::randn(&[3, 3], 3).param();
    let x = Tensor::randn(&[5, 3], 4);
    let h = x.matmul(&w).unwrap().relu();
    let weak = h.downgrade();
    let loss = h.matmul(&w).unwrap().sum();
    drop(h);
    assert_eq!(live_graph_nodes(), live_before + 4); // matmul, relu, matmul, sum
    loss.backward().unwrap();
    assert_eq!(
        live_graph_nodes(),
        live_before,
        "every node released while `loss` is still alive"
    );
    assert!(weak.upgrade().is_none(), "intermediates released");
    assert!(w.grad_vec().unwrap().is_some());
    // A second backward on the released graph is an error, not a silent no-op.
    assert!(matches!(
        loss.backward(),
        Err(TensorError::InvalidArgument { op: "backward", .. })
    ));
}

#[test]
fn errors_are_typed_and_name_op_and_shapes() {
    let a = Tensor::zeros(&[2, 3]).param();
    let b = Tensor::zeros(&[4, 5]);
    let e = a.matmul(&b).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TensorError::Shape { op: "matmul", .. }));
    assert!(msg.contains("[2, 3]") && msg.contains("[4, 5]"), "{msg}");

    let e = a.add(&Tensor::zeros(&[4])).unwrap_err();
    assert!(matches!(e, TensorError::Shape { op: "add", .. }), "{e}");

    let e = a.scale(2.0).backward().unwrap_err();
    assert!(
        matches!(&e, TensorError::NonScalarBackward(s) if s == &vec![2, 3]),
        "{e}"
    );

    let e = Tensor::from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
    assert!(matches!(e, TensorError::Shape { op: "from_vec", .. }));

    let e = Tensor::zeros(&[2, 3]).cross_entropy(&[0, 3]).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::InvalidArgument {
                op: "cross_entropy",
                ..
            }
        ),
        "{e}"
    );

    let e = Tensor::zeros(&[2, 3]).narrow(1, 2, 2).unwrap_err();
    assert!(
        matches!(e, TensorError::InvalidArgument { op: "narrow", .. }),
        "{e}"
    );

    let e = Tensor::concat(&[Tensor::zeros(&[2, 3]), Tensor::zeros(&[3, 3])], 1).unwrap_err();
    assert!(matches!(e, TensorError::Shape { op: "concat", .. }), "{e}");

    // a pooling window wider than the padded input: the op, the window and the input's shape
    let x = Tensor::zeros(&[1, 2, 3, 3]);
    let e = x.max_pool2d(5, 1, 0).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            TensorError::InvalidArgument {
                op: "max_pool2d",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        msg.contains("window 5") && msg.contains("[1, 2, 3, 3]"),
        "{msg}"
    );
    let (rm, rv) = (Tensor::zeros(&[2]), Tensor::ones(&[2]));
    let e = x
        .pool_batch_norm(false, 5, 1, 0, Some(&rm), Some(&rv), true, 0.1, 1e-5)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            TensorError::InvalidArgument {
                op: "pool_batch_norm",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        msg.contains("window 5") && msg.contains("[1, 2, 3, 3]"),
        "{msg}"
    );
}

#[test]
fn creation_and_ndarray_round_trip() {
    let a = Tensor::randn(&[2, 3, 4], 7);
    assert_eq!(
        Tensor::randn(&[2, 3, 4], 7).to_vec().unwrap(),
        a.to_vec().unwrap(),
        "seeded"
    );
    assert_ne!(
        Tensor::randn(&[2, 3, 4], 8).to_vec().unwrap(),
        a.to_vec().unwrap()
    );
    let arr = a.to_ndarray().unwrap();
    assert_eq!(arr.shape(), &[2, 3, 4]);
    assert_eq!(arr[[1, 2, 3]], a.to_vec().unwrap()[12 + 8 + 3]);
    let b = Tensor::from_ndarray(&arr);
    assert_eq!(b.to_vec().unwrap(), a.to_vec().unwrap());
    assert_eq!(b.shape(), a.shape());
    let u = Tensor::uniform(&[1000], -0.5, 0.25, 1)
        .unwrap()
        .to_vec()
        .unwrap();
    assert!(u.iter().all(|&x| (-0.5..0.25).contains(&x)));
    let mean: f32 = u.iter().sum::<f32>() / 1000.0;
    assert!((mean + 0.125).abs() < 0.02, "{mean}");
    assert_eq!(Tensor::ones(&[2, 2]).to_vec().unwrap(), vec![1.0; 4]);
    assert_eq!(Tensor::full(&[3], 2.5).to_vec().unwrap(), vec![2.5; 3]);
}

#[test]
fn forward_values_match_hand_computation() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t(&[1.0, 0.0, -1.0, 2.0, 0.5, 1.0], &[3, 2]);
    assert_eq!(
        a.matmul(&b).unwrap().to_vec().unwrap(),
        vec![0.5, 7.0, 2.0, 16.0]
    );
    // broadcasting a row
    let r = t(&[10.0, 20.0, 30.0], &[3]);
    assert_eq!(
        a.add(&r).unwrap().to_vec().unwrap(),
        vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
    );
    let s = a.softmax(1).unwrap().to_vec().unwrap();
    let e: Vec<f32> = [1.0f32, 2.0, 3.0].iter().map(|x| x.exp()).collect();
    let z: f32 = e.iter().sum();
    for j in 0..3 {
        assert!((s[j] - e[j] / z).abs() < 1e-6);
    }
    // cross-entropy of uniform logits is ln(classes)
    let ce = Tensor::zeros(&[3, 4])
        .cross_entropy(&[0, 1, 3])
        .unwrap()
        .item()
        .unwrap();
    assert!((ce - 4f32.ln()).abs() < 1e-6);
    let cat = Tensor::concat(&[t(&[1.0, 2.0], &[1, 2]), t(&[3.0], &[1, 1])], 1).unwrap();
    assert_eq!(cat.to_vec().unwrap(), vec![1.0, 2.0, 3.0]);
    let w = Tensor::weighted_sum(
        &[t(&[1.0, 2.0], &[2]), t(&[10.0, 20.0], &[2])],
        &t(&[0.5, 2.0], &[2]),
    )
    .unwrap();
    assert_eq!(w.to_vec().unwrap(), vec![20.5, 41.0]);
}

#[test]
fn darts_style_alternating_updates_with_two_optimizers() {
    use nas_tensor::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
    // weights w (network) and alpha (architecture): mixed = sum_k softmax(alpha)_k * op_k(x w)
    let w = Tensor::randn(&[4, 3], 1).param();
    let alpha = Tensor::zeros(&[3]).param();
    let forward = |x: &Tensor| -> nas_tensor::Result<Tensor> {
        let h = x.matmul(&w)?;
        let ops = [h.clone(), h.relu(), h.tanh()];
        Tensor::weighted_sum(&ops, &alpha.softmax(0)?)
    };
    let x_train = Tensor::randn(&[5, 4], 2);
    let x_val = Tensor::randn(&[5, 4], 3);
    let labels = [0usize, 1, 2, 1, 0];
    let mut w_opt = Sgd::new(vec![w.clone()], SgdConfig::new(0.1).momentum(0.9)).unwrap();
    let mut a_opt = Adam::new(vec![alpha.clone()], AdamConfig::new(0.01)).unwrap();

    // architecture step on the validation batch: only alpha moves
    let w_before = w.to_vec().unwrap();
    forward(&x_val)
        .unwrap()
        .cross_entropy(&labels)
        .unwrap()
        .backward()
        .unwrap();
    assert!(w.grad_vec().unwrap().is_some() && alpha.grad_vec().unwrap().is_some());
    a_opt.step().unwrap();
    assert_eq!(
        w.to_vec().unwrap(),
        w_before,
        "the architecture optimizer does not touch w"
    );
    assert_ne!(alpha.to_vec().unwrap(), vec![0.0; 3]);

    // weight step on the training batch with fresh gradients: only w moves
    w_opt.zero_grad();
    a_opt.zero_grad();
    let alpha_before = alpha.to_vec().unwrap();
    forward(&x_train)
        .unwrap()
        .cross_entropy(&labels)
        .unwrap()
        .backward()
        .unwrap();
    let gw = w.grad_vec().unwrap().unwrap();
    w_opt.step().unwrap();
    assert_eq!(
        alpha.to_vec().unwrap(),
        alpha_before,
        "the weight optimizer does not touch alpha"
    );
    // first SGD step with momentum: w -= lr * grad
    for ((after, before), g) in w.to_vec().unwrap().iter().zip(&w_before).zip(&gw) {
        assert!((after - (before - 0.1 * g)).abs() < 1e-6);
    }
    assert_eq!(live_graph_nodes(), 0);
}

/// `backward_for` computes only what reaches the requested leaves: their gradients equal a
/// full backward's, other leaves get none, and ops that lead nowhere wanted are not
/// differentiated (a parameter upstream of them gets no gradient either).
#[test]
fn backward_for_computes_only_gradients_that_reach_the_requested_leaves() {
    use nas_tensor::ConvOptions;
    let build = || {
        let x = Tensor::randn(&[2, 3, 6, 6], 1).param(); // leads to nothing wanted below
        let w1 = Tensor::randn(&[4, 3, 3, 3], 2).param();
        let w2 = Tensor::randn(&[4, 4, 3, 3], 3).param();
        let alpha = t(&[0.7, -0.4], &[2]).param();
        let o = ConvOptions::default().padding(1);
        let h = x.conv2d(&w1, None, o).unwrap().relu(); // does not depend on alpha
        let a = h.conv2d(&w2, None, o).unwrap();
        let mixed = Tensor::weighted_sum(&[h.clone(), a], &alpha).unwrap(); // alpha enters here
        let out = mixed.conv2d(&w2, None, o).unwrap().relu().square().sum();
        (x, w1, w2, alpha, out)
    };
    let (x, w1, w2, alpha, out) = build();
    out.backward().unwrap();
    let full = alpha.grad_vec().unwrap().unwrap();
    assert!(
        x.grad_vec().unwrap().is_some()
            && w1.grad_vec().unwrap().is_some()
            && w2.grad_vec().unwrap().is_some()
    );

    let (x, w1, w2, alpha, out) = build();
    out.backward_for(std::slice::from_ref(&alpha)).unwrap();
    assert_eq!(
        alpha.grad_vec().unwrap().unwrap(),
        full,
        "same architecture gradient"
    );
    assert!(
        w1.grad_vec().unwrap().is_none()
            && w2.grad_vec().unwrap().is_none()
            && x.grad_vec().unwrap().is_none()
    );
    assert_eq!(out.grad_fn_name(), None, "graph released");

    // the wanted set may also hold activations' leaves, as a recomputed cell's inputs
    let (x, w1, _, alpha, out) = build();
    out.backward_for(&[alpha.clone(), w1.clone()]).unwrap();
    assert_eq!(alpha.grad_vec().unwrap().unwrap(), full);
    assert!(w1.grad_vec().unwrap().is_some() && x.grad_vec().unwrap().is_none());
}

const PAD1: nas_tensor::ConvOptions = nas_tensor::ConvOptions {
    stride: 1,
    padding: 1,
    dilation: 1,
    groups: 1,
};

/// The composite of the test below in one expression: conv -> BN (non-affine) -> ReLU ->
/// (avg-pool + itself) -> scale -> product with a fixed probe -> sum.
fn conv_bn_relu_pool_loss(w: &Tensor) -> nas_tensor::Result<Tensor> {
    let x = Tensor::randn(&[2, 3, 5, 5], 11);
    let probe = Tensor::randn(&[2, 4, 5, 5], 13);
    let b = x
        .conv2d(w, None, PAD1)?
        .batch_norm(None, None, None, None, true, 0.1, 1e-5)?;
    let r = b.relu();
    Ok(r.avg_pool2d(3, 1, 1)?
        .add(&r)?
        .scale(0.5)
        .mul(&probe)?
        .sum())
}

/// Gradients of `w` (conv weight) for [`conv_bn_relu_pool_loss`], built step by step so the
/// intermediates can be watched; `keep` holds every intermediate alive.
fn conv_bn_relu_pool_grads(keep: bool) -> (Vec<f32>, Vec<bool>) {
    let x = Tensor::randn(&[2, 3, 5, 5], 11);
    let w = Tensor::randn(&[4, 3, 3, 3], 12).scale(0.3).param();
    let probe = Tensor::randn(&[2, 4, 5, 5], 13);
    let c = x.conv2d(&w, None, PAD1).unwrap();
    let b = c
        .batch_norm(None, None, None, None, true, 0.1, 1e-5)
        .unwrap();
    let r = b.relu();
    let p = r.avg_pool2d(3, 1, 1).unwrap();
    let q = p.add(&r).unwrap();
    let s = q.scale(0.5);
    let loss = s.mul(&probe).unwrap().sum();
    let weak: Vec<_> = [&c, &b, &r, &p, &q, &s]
        .iter()
        .map(|t| t.downgrade())
        .collect();
    let held = keep.then(|| vec![c.clone(), b.clone(), r.clone(), p.clone(), q.clone()]);
    drop((c, b, r, p, q, s));
    let alive = weak.iter().map(|t| t.values_alive()).collect();
    assert!(
        weak.iter().all(|t| t.node_alive()),
        "the graph keeps every node"
    );
    loss.backward().unwrap();
    drop(held);
    (w.grad_vec().unwrap().unwrap(), alive)
}

#[test]
fn values_no_gradient_rule_needs_are_freed_and_gradients_do_not_change() {
    let (g_held, alive_held) = conv_bn_relu_pool_grads(true);
    let (g_freed, alive) = conv_bn_relu_pool_grads(false);
    assert!(alive_held.iter().all(|&a| a));
    // conv output: BN (non-affine) keeps its output instead; BN output: kept (BN's and ReLU's
    // rules read it); ReLU output: kept (its own mask); pool output: freed (add needs no
    // values); sum: freed (scale needs none); scaled: kept (the product reads it)
    assert_eq!(alive, vec![false, true, true, false, false, true]);
    assert_eq!(g_held, g_freed, "freeing values changes no gradient");
    assert!(g_freed.iter().any(|v| v.abs() > 1e-4));
    // the gradient with the values freed is the right one: it matches the affine batch norm
    // with scale 1 and shift 0, whose rule keeps the input instead of the output (central
    // differences are no check here: ReLU kinks near BN outputs of 0 spoil them)
    let w = Tensor::randn(&[4, 3, 3, 3], 12).scale(0.3).param();
    let (gamma, beta) = (Tensor::ones(&[4]), Tensor::zeros(&[4]));
    let x = Tensor::randn(&[2, 3, 5, 5], 11);
    let probe = Tensor::randn(&[2, 4, 5, 5], 13);
    let r = x
        .conv2d(&w, None, PAD1)
        .unwrap()
        .batch_norm(Some(&gamma), Some(&beta), None, None, true, 0.1, 1e-5)
        .unwrap()
        .relu();
    let affine = r.avg_pool2d(3, 1, 1).unwrap().add(&r).unwrap().scale(0.5);
    affine.mul(&probe).unwrap().sum().backward().unwrap();
    for (a, b) in w.grad_vec().unwrap().unwrap().iter().zip(&g_freed) {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
            "affine {a} vs non-affine {b}"
        );
    }
    w.zero_grad();
    conv_bn_relu_pool_loss(&w).unwrap().backward().unwrap();
    assert_eq!(
        w.grad_vec().unwrap().unwrap(),
        g_freed,
        "the same graph in one expression"
    );
}

/// A size the machine cannot hold is an error naming the size, not an aborted process.
#[test]
fn an_allocation_that_cannot_fit_is_an_error() {
    let e = nas_tensor::Tensor::zeros_on(&[1 << 30, 1 << 30], nas_tensor::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("out of memory") && e.contains("1152921504606846976"),
        "{e}"
    );
    let x = nas_tensor::Tensor::ones(&[2, 3]);
    assert!(x.reshape(&[3, 2]).is_ok(), "ordinary sizes still allocate");
}

/// One pass of `pool_batch_norm` (`fused`) or a pool then a non-affine batch norm, read by two
/// weighted sums (the DARTS pattern: edges of two nodes share a pool of one state), returning
/// the output's values, the running statistics, the gradients of the input and both weight
/// vectors, and whether the output's values were still held after the forward pass.
fn pool_bn_pass(fused: bool, max: bool, stride: usize, training: bool) -> (Vec<Vec<f32>>, bool) {
    let x = Tensor::randn(&[4, 3, 7, 7], 1).param();
    let (rm, rv) = (
        Tensor::from_slice(&[0.1, -0.2, 0.3], &[3]).unwrap(),
        Tensor::from_slice(&[1.5, 0.7, 1.1], &[3]).unwrap(),
    );
    let (w1, w2) = (
        Tensor::randn(&[2], 2).param(),
        Tensor::randn(&[2], 3).param(),
    );
    let y = if fused {
        x.pool_batch_norm(max, 3, stride, 1, Some(&rm), Some(&rv), training, 0.1, 1e-5)
    } else {
        let p = if max {
            x.max_pool2d(3, stride, 1)
        } else {
            x.avg_pool2d(3, stride, 1)
        };
        p.unwrap()
            .batch_norm(None, None, Some(&rm), Some(&rv), training, 0.1, 1e-5)
    }
    .unwrap();
    let other = x.avg_pool2d(3, stride, 1).unwrap();
    let t = Tensor::randn(y.shape(), 4);
    let s1 = Tensor::weighted_sum(&[y.clone(), other.clone()], &w1).unwrap();
    let s2 = Tensor::weighted_sum(&[other, y.clone()], &w2).unwrap();
    let loss = s1
        .mul(&s1)
        .unwrap()
        .add(&s2.mul(&t).unwrap())
        .unwrap()
        .sum();
    let values = y.to_vec().unwrap();
    let weak = y.downgrade();
    drop(y);
    let kept = weak.values_alive();
    loss.backward().unwrap();
    let out = vec![
        values,
        rm.to_vec().unwrap(),
        rv.to_vec().unwrap(),
        x.grad_vec().unwrap().unwrap(),
        w1.grad_vec().unwrap().unwrap(),
        w2.grad_vec().unwrap().unwrap(),
    ];
    (out, kept)
}

#[test]
fn pool_batch_norm_recomputes_its_output_and_equals_pool_then_batch_norm() {
    for max in [false, true] {
        for stride in [1, 2] {
            for training in [true, false] {
                let case = format!("max {max}, stride {stride}, training {training}");
                let (fused, fused_kept) = pool_bn_pass(true, max, stride, training);
                let (plain, plain_kept) = pool_bn_pass(false, max, stride, training);
                // values, running statistics and every gradient equal bit for bit (the
                // recomputed output is the forward's)
                for (i, (a, b)) in fused.iter().zip(&plain).enumerate() {
                    let (a, b): (Vec<u32>, Vec<u32>) = (
                        a.iter().map(|v| v.to_bits()).collect(),
                        b.iter().map(|v| v.to_bits()).collect(),
                    );
                    assert_eq!(a, b, "{case}: output {i}");
                }
                assert!(plain_kept, "{case}: the separate ops keep the output");
                // in training nothing keeps the output: the batch norm's rule and the weighted
                // sums recompute it; in evaluation it is kept
                assert_eq!(fused_kept, !training, "{case}: output kept");
            }
        }
    }
}
