//! Recurrent ops against references built from elementary ops, whole-sequence gradient
//! checks, truncated BPTT and the dropout variants. (Per-op gradient checks on every backend
//! are in `backends.rs`.)

use nas_tensor::nn::{CarriedState, Embedding, LstmLayer, Module, TokenWindows, lookup_in};
use nas_tensor::{Device, GradcheckOptions, Tensor, gradcheck, live_graph_nodes, no_grad};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn leaves(shapes: &[&[usize]], seed: u64) -> Vec<Tensor> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| Tensor::randn(s, seed + i as u64).scale(0.7).param())
        .collect()
}

/// An LSTM step written with elementary ops only (the textbook equations, PyTorch's gate
/// order i, f, g, o).
fn reference_cell(
    x: &Tensor,
    h: &Tensor,
    c: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    b: &Tensor,
) -> (Tensor, Tensor) {
    let hid = h.shape()[1];
    let a = x
        .linear(w_ih, Some(b))
        .unwrap()
        .add(&h.linear(w_hh, None).unwrap())
        .unwrap();
    let gate = |k: usize| a.narrow(1, k * hid, hid).unwrap();
    let (i, f, g, o) = (
        gate(0).sigmoid(),
        gate(1).sigmoid(),
        gate(2).tanh(),
        gate(3).sigmoid(),
    );
    let c2 = f.mul(c).unwrap().add(&i.mul(&g).unwrap()).unwrap();
    let h2 = o.mul(&c2.tanh()).unwrap();
    (h2, c2)
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{k}]: {x} vs {y}"
        );
    }
}

fn grads(ts: &[Tensor]) -> Vec<Vec<f32>> {
    ts.iter()
        .map(|t| t.grad_vec().unwrap().unwrap_or_default())
        .collect()
}

const SHAPES: [&[usize]; 7] = [
    &[2, 2, 3],
    &[2, 4],
    &[2, 4],
    &[16, 3],
    &[16, 4],
    &[16],
    &[2, 2, 4],
];

#[test]
fn the_cell_matches_the_elementary_equations_values_and_gradients() {
    let xs = leaves(&SHAPES, 1);
    let x0 = xs[0].narrow(0, 0, 1).unwrap().reshape(&[2, 3]).unwrap();
    let (h, c) = Tensor::lstm_cell(&x0, &xs[1], &xs[2], &xs[3], &xs[4], Some(&xs[5])).unwrap();
    let loss = h.square().sum().add(&c.scale(0.3).sum()).unwrap();
    loss.backward().unwrap();
    let (hv, cv, g) = (h.to_vec().unwrap(), c.to_vec().unwrap(), grads(&xs[..6]));
    for t in &xs {
        t.zero_grad();
    }
    let x0 = xs[0].narrow(0, 0, 1).unwrap().reshape(&[2, 3]).unwrap();
    let (hr, cr) = reference_cell(&x0, &xs[1], &xs[2], &xs[3], &xs[4], &xs[5]);
    let loss = hr.square().sum().add(&cr.scale(0.3).sum()).unwrap();
    loss.backward().unwrap();
    close(&hv, &hr.to_vec().unwrap(), 1e-5, "h");
    close(&cv, &cr.to_vec().unwrap(), 1e-5, "c");
    for (k, (a, b)) in g.iter().zip(grads(&xs[..6])).enumerate() {
        close(a, &b, 1e-4, &format!("gradient of input {k}"));
    }
}

/// Two steps of the cell, both outputs and the final cell in the loss: the gradient of the
/// whole sequence (inputs of both steps, initial state, shared weights) by central
/// differences.
#[test]
fn a_two_step_recurrence_passes_a_whole_sequence_gradcheck() {
    let xs = leaves(&SHAPES[..6], 2);
    let f = |v: &[Tensor]| {
        let mut h = v[1].clone();
        let mut c = v[2].clone();
        let mut outs = Vec::new();
        for t in 0..2 {
            let x = v[0].narrow(0, t, 1)?.reshape(&[2, 3])?;
            (h, c) = Tensor::lstm_cell(&x, &h, &c, &v[3], &v[4], Some(&v[5]))?;
            outs.push(h.clone());
        }
        outs.push(c);
        Tensor::concat(&outs, 1)
    };
    let report = gradcheck(f, &xs, GradcheckOptions::default()).unwrap();
    report.assert_ok("2-step LSTM-cell recurrence");
    assert_eq!(report.checked, 12 + 8 + 8 + 48 + 64 + 16);
    // The fused layer over the same two steps: its own whole-sequence check.
    let fused = |v: &[Tensor]| Ok(Tensor::lstm(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5])?.output);
    gradcheck(fused, &xs, GradcheckOptions::default())
        .unwrap()
        .assert_ok("fused 2-step LSTM");
}

#[test]
fn the_fused_layer_equals_stepping_the_cell() {
    let xs = leaves(&SHAPES, 3);
    let proj = &xs[6]; // a fixed projection of the outputs
    let out = Tensor::lstm(&xs[0], &xs[1], &xs[2], &xs[3], &xs[4], &xs[5]).unwrap();
    out.output.mul(proj).unwrap().sum().backward().unwrap();
    let (fv, fc, fg) = (
        out.output.to_vec().unwrap(),
        out.c.to_vec().unwrap(),
        grads(&xs[..6]),
    );
    assert!(!out.c.requires_grad());
    assert_eq!(out.h.to_vec().unwrap(), fv[8..].to_vec());
    for t in &xs {
        t.zero_grad();
    }
    let (mut h, mut c) = (xs[1].clone(), xs[2].clone());
    let mut hs = Vec::new();
    for t in 0..2 {
        let x = xs[0].narrow(0, t, 1).unwrap().reshape(&[2, 3]).unwrap();
        (h, c) = Tensor::lstm_cell(&x, &h, &c, &xs[3], &xs[4], Some(&xs[5])).unwrap();
        hs.push(h.reshape(&[1, 2, 4]).unwrap());
    }
    let stepped = Tensor::concat(&hs, 0).unwrap();
    stepped.mul(proj).unwrap().sum().backward().unwrap();
    close(&fv, &stepped.to_vec().unwrap(), 1e-5, "outputs");
    close(&fc, &c.to_vec().unwrap(), 1e-5, "last cell");
    for (k, (a, b)) in fg.iter().zip(grads(&xs[..6])).enumerate() {
        close(a, &b, 1e-4, &format!("gradient of input {k}"));
    }
}

#[test]
fn bad_shapes_and_indices_are_errors() {
    let xs = leaves(&SHAPES, 4);
    let e = Tensor::lstm(&xs[0], &xs[1], &xs[2], &xs[4], &xs[4], &xs[5]).unwrap_err();
    assert!(e.to_string().contains("w_ih must be [16, 3]"), "{e}");
    let e = Tensor::lstm_cell(&xs[1], &xs[1], &xs[5], &xs[3], &xs[4], None).unwrap_err();
    assert!(e.to_string().contains("lstm_cell"), "{e}");
    let table = Tensor::randn(&[4, 3], 0);
    let e = table.embedding(&[1, 4]).unwrap_err();
    assert!(
        e.to_string()
            .contains("index 4 is out of range for a table of 4 rows"),
        "{e}"
    );
    let e = lookup_in(&table, &[1, 2, 3], &[2, 2]).unwrap_err();
    assert!(e.to_string().contains("3 ids for the shape [2, 2]"), "{e}");
    let e = xs[0].dropout_shared(0.5, true, &[2, 1, 1, 1], &mut ChaCha8Rng::seed_from_u64(0));
    assert!(e.is_err());
    assert!(
        Tensor::dropout_mask(&[2], 1.0, &mut ChaCha8Rng::seed_from_u64(0), Device::Cpu).is_err()
    );
}

#[test]
fn token_windows_cover_every_consecutive_pair_once() {
    let stream: Vec<u32> = (0..103).collect();
    let (batch, bptt) = (4, 7);
    let w = TokenWindows::new(&stream, batch, bptt).unwrap();
    // 4 columns of 25 tokens (3 dropped): 24 pairs each, in windows of 7, 7, 7, 3.
    assert_eq!((w.num_windows(), w.num_predictions()), (4, 96));
    let windows: Vec<_> = w.collect();
    assert_eq!(
        windows.iter().map(|w| w.steps).collect::<Vec<_>>(),
        [7, 7, 7, 3]
    );
    let mut pairs = Vec::new();
    for w in &windows {
        for (i, t) in w.inputs.iter().zip(&w.targets) {
            pairs.push((*i, *t));
        }
    }
    pairs.sort_unstable();
    let want: Vec<(usize, usize)> = (0..4)
        .flat_map(|j| (0..24).map(move |t| (25 * j + t, 25 * j + t + 1)))
        .collect();
    assert_eq!(pairs, want);
    // Column j of window k continues where window k - 1 stopped.
    assert_eq!(windows[1].inputs[batch + 2], 50 + 8);
    assert!(TokenWindows::new(&stream[..7], 4, 3).is_err());
    assert!(TokenWindows::new(&stream, 0, 3).is_err());
}

/// Truncated BPTT: running windows of 3 steps with the state carried (detached) gives the
/// same outputs as one pass over all 9 steps, and each window's backward stays in its window.
#[test]
fn carried_state_reproduces_the_full_sequence_and_cuts_the_graph() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let layer = LstmLayer::new(3, 5, &mut rng).unwrap();
    let x = Tensor::randn(&[9, 2, 3], 10);
    let (h0, c0) = layer.zero_state(2).unwrap();
    let full = no_grad(|| {
        layer
            .forward_from(&x, &h0, &c0)
            .unwrap()
            .output
            .to_vec()
            .unwrap()
    });
    let mut state = CarriedState::zeros(&[&[2, 5], &[2, 5]], Device::Cpu).unwrap();
    let mut pieces = Vec::new();
    let nodes_before = live_graph_nodes();
    for k in 0..3 {
        let xk = x.narrow(0, 3 * k, 3).unwrap();
        let s = state.get().to_vec();
        assert!(s.iter().all(|t| !t.requires_grad()));
        let out = layer.forward_from(&xk, &s[0], &s[1]).unwrap();
        pieces.extend(out.output.to_vec().unwrap());
        out.output.square().sum().backward().unwrap();
        state.carry(&[out.h.clone(), out.c.clone()]).unwrap();
        drop(out);
        // The window's graph is released: nothing links the next window to this one.
        assert_eq!(live_graph_nodes(), nodes_before);
    }
    close(&pieces, &full, 1e-5, "windowed vs full outputs");
    assert!(layer.weight_hh.grad_vec().unwrap().is_some());
    assert_eq!(layer.parameters().len(), 3);
    assert!(state.carry(&[h0]).is_err());
}

#[test]
fn variational_and_embedding_dropout_share_their_masks() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = Tensor::ones(&[5, 3, 8]).param();
    let y = x.dropout_shared(0.5, true, &[1, 3, 8], &mut rng).unwrap();
    let v = y.to_vec().unwrap();
    let step = 3 * 8;
    for t in 1..5 {
        assert_eq!(
            v[t * step..(t + 1) * step],
            v[..step],
            "step {t} uses another mask"
        );
    }
    assert!(v.iter().all(|&e| e == 0.0 || e == 2.0));
    let dropped = v[..step].iter().filter(|&&e| e == 0.0).count();
    assert!(
        (4..=20).contains(&dropped),
        "{dropped} of 24 dropped at p = 0.5"
    );
    y.sum().backward().unwrap();
    assert_eq!(x.grad_vec().unwrap().unwrap(), v); // the gradient is the mask
    // Embedding dropout: whole rows of the table, then the lookup.
    let emb = Embedding::new(6, 4, &mut rng).unwrap();
    let masked = emb
        .weight
        .dropout_shared(0.5, true, &[6, 1], &mut rng)
        .unwrap();
    let m = masked.to_vec().unwrap();
    let w = emb.weight.to_vec().unwrap();
    for r in 0..6 {
        let row = &m[r * 4..(r + 1) * 4];
        let zero = row.iter().all(|&e| e == 0.0);
        let scaled = row
            .iter()
            .zip(&w[r * 4..])
            .all(|(a, b)| (a - 2.0 * b).abs() < 1e-6);
        assert!(zero || scaled, "row {r}: {row:?}");
    }
    let looked = lookup_in(&masked, &[5, 0, 5], &[3]).unwrap();
    assert_eq!(looked.shape(), &[3, 4]);
    assert_eq!(looked.to_vec().unwrap()[..4], m[20..24]);
    // Evaluation: the identity.
    let same = x.dropout_shared(0.5, false, &[1, 3, 8], &mut rng).unwrap();
    assert!(same.same(&x));
}
