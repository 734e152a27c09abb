//! Tensor-level ops against naive reference implementations on random shapes (proptest).

use nas_tensor::Tensor;
use proptest::prelude::*;

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

/// A shape of rank 1..=3 with sizes 1..=4, and a second shape broadcastable against it.
fn shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec(1usize..=4, 1..=3).prop_flat_map(|a| {
        let n = a.len();
        (
            Just(a.clone()),
            prop::collection::vec(any::<bool>(), n),
            0..=n,
        )
            .prop_map(|(a, ones, drop)| {
                let b: Vec<usize> = a
                    .iter()
                    .zip(&ones)
                    .map(|(&s, &o)| if o { 1 } else { s })
                    .collect();
                (a, b[drop..].to_vec())
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn broadcasting_binary_ops_match_naive((sa, sb) in shapes(), seed in 0u64..1000, swap in any::<bool>()) {
        let (sa, sb) = if swap { (sb, sa) } else { (sa, sb) };
        let a = Tensor::randn(&sa, seed);
        let b = Tensor::randn(&sb, seed + 1);
        let out = a.mul(&b).unwrap();
        let sum = a.add(&b).unwrap();
        let os = out.shape().to_vec();
        let (av, bv, ov, sv) = (a.to_vec().unwrap(), b.to_vec().unwrap(), out.to_vec().unwrap(), sum.to_vec().unwrap());
        let (sta, stb) = (strides(&sa), strides(&sb));
        for i in 0..ov.len() {
            let idx = unravel(i, &os);
            let pick = |shape: &[usize], st: &[usize]| -> usize {
                let off = os.len() - shape.len();
                (0..shape.len()).map(|d| if shape[d] == 1 { 0 } else { idx[d + off] * st[d] }).sum()
            };
            let (x, y) = (av[pick(&sa, &sta)], bv[pick(&sb, &stb)]);
            prop_assert_eq!(ov[i], x * y);
            prop_assert_eq!(sv[i], x + y);
        }
    }

    #[test]
    fn concat_split_narrow_round_trip(
        base in prop::collection::vec(1usize..=4, 1..=4),
        dim_pick in 0usize..4,
        sizes in prop::collection::vec(1usize..=3, 1..=4),
        seed in 0u64..1000,
    ) {
        let dim = dim_pick % base.len();
        let parts: Vec<Tensor> = sizes.iter().enumerate().map(|(i, &s)| {
            let mut sh = base.clone();
            sh[dim] = s;
            Tensor::randn(&sh, seed + i as u64)
        }).collect();
        let cat = Tensor::concat(&parts, dim).unwrap();
        prop_assert_eq!(cat.shape()[dim], sizes.iter().sum::<usize>());
        let back = cat.split(dim, &sizes).unwrap();
        for (p, q) in parts.iter().zip(&back) {
            prop_assert_eq!(p.shape(), q.shape());
            prop_assert_eq!(p.to_vec().unwrap(), q.to_vec().unwrap());
        }
        // narrow against naive indexing
        let (start, len) = (sizes[0] / 2, sizes.iter().sum::<usize>() - sizes[0] / 2);
        let nar = cat.narrow(dim, start, len).unwrap();
        let cv = cat.to_vec().unwrap();
        let cs = cat.shape().to_vec();
        let st = strides(&cs);
        for (i, v) in nar.to_vec().unwrap().into_iter().enumerate() {
            let mut idx = unravel(i, nar.shape());
            idx[dim] += start;
            let off: usize = idx.iter().zip(&st).map(|(a, b)| a * b).sum();
            prop_assert_eq!(v, cv[off]);
        }
    }

    #[test]
    fn permute_matches_naive_and_inverts(shape in prop::collection::vec(1usize..=4, 1..=4), seed in 0u64..1000, rot in 0usize..4) {
        let n = shape.len();
        let perm: Vec<usize> = (0..n).map(|i| (i + rot) % n).collect();
        let x = Tensor::randn(&shape, seed);
        let y = x.permute(&perm).unwrap();
        let (xv, yv) = (x.to_vec().unwrap(), y.to_vec().unwrap());
        let st = strides(&shape);
        for (i, &v) in yv.iter().enumerate() {
            let oi = unravel(i, y.shape());
            let off: usize = (0..n).map(|d| oi[d] * st[perm[d]]).sum();
            prop_assert_eq!(v, xv[off]);
        }
        let mut inv = vec![0; n];
        for (i, &p) in perm.iter().enumerate() { inv[p] = i; }
        prop_assert_eq!(y.permute(&inv).unwrap().to_vec().unwrap(), xv);
    }

    #[test]
    fn reductions_and_softmax_match_naive(shape in prop::collection::vec(1usize..=5, 1..=3), dim_pick in 0usize..3, seed in 0u64..1000) {
        let dim = dim_pick % shape.len();
        let x = Tensor::randn(&shape, seed);
        let xv = x.to_vec().unwrap();
        let s = x.sum_dim(dim, true).unwrap();
        let sm = x.softmax(dim).unwrap().to_vec().unwrap();
        let lsm = x.log_softmax(dim).unwrap().to_vec().unwrap();
        let st = strides(&shape);
        for (i, v) in s.to_vec().unwrap().into_iter().enumerate() {
            let idx = unravel(i, s.shape());
            let base: usize = idx.iter().zip(&st).map(|(a, b)| a * b).sum();
            let naive: f32 = (0..shape[dim]).map(|j| xv[base + j * st[dim]]).sum();
            prop_assert!((v - naive).abs() < 1e-5);
            let z: f32 = (0..shape[dim]).map(|j| xv[base + j * st[dim]].exp()).sum();
            let total: f32 = (0..shape[dim]).map(|j| sm[base + j * st[dim]]).sum();
            prop_assert!((total - 1.0).abs() < 1e-5);
            for j in 0..shape[dim] {
                let k = base + j * st[dim];
                prop_assert!((sm[k] - xv[k].exp() / z).abs() < 1e-5);
                prop_assert!((lsm[k] - (xv[k] - z.ln())).abs() < 1e-4);
            }
        }
        let total = x.sum().item().unwrap();
        prop_assert!((total - xv.iter().sum::<f32>()).abs() < 1e-4);
    }
}

#[test]
fn tensors_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tensor>();
    check::<nas_tensor::nn::Sequential>();
    // a tensor built on one thread can be used (and backpropagated) on another
    let w = Tensor::randn(&[3, 3], 1).param();
    let w2 = w.clone();
    std::thread::spawn(move || w2.square().sum().backward().unwrap())
        .join()
        .unwrap();
    let g = w.grad_vec().unwrap().unwrap();
    let expect: Vec<f32> = w.to_vec().unwrap().iter().map(|v| 2.0 * v).collect();
    assert_eq!(g, expect);
}
