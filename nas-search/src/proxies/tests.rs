use super::*;
use crate::nets::nb201::Nb201Network;

fn cell(s: &str) -> Nb201Cell {
    Nb201Cell::parse(s).unwrap()
}

const MIXED: &str =
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|";

fn tiny() -> Nb201Config {
    Nb201Config {
        channels: 1,
        cells_per_stage: 1,
        in_channels: 1,
        classes: 3,
    }
}

#[test]
fn proxy_network_is_the_nb201_network() {
    let c = cell(MIXED);
    let config = Nb201Config {
        channels: 4,
        cells_per_stage: 2,
        in_channels: 1,
        classes: 5,
    };
    let a = Nb201Network::new(&c, config, 7).unwrap();
    let b = ProxyNetwork::new(&c, config, 7).unwrap();
    let (sa, sb) = (a.state_dict(), b.state_dict());
    assert_eq!(sa.len(), sb.len());
    for ((na, ta), (nb, tb)) in sa.iter().zip(&sb) {
        assert_eq!(na, nb);
        assert_eq!(ta.to_vec().unwrap(), tb.to_vec().unwrap(), "{na}");
    }
    let x = Tensor::randn(&[3, 1, 8, 8], 2);
    let (ya, yb) = (a.forward(&x).unwrap(), b.forward(&x).unwrap());
    assert_eq!(ya.to_vec().unwrap(), yb.to_vec().unwrap());
    // ReLU inputs: one per convolution edge per cell (3 here) over 6 cells,
    // two per reduction block, one before pooling.
    let (_, relus) = b.forward_with_relu_inputs(&x).unwrap();
    assert_eq!(relus.len(), 3 * 6 + 2 * 2 + 1);
    assert!(b.forward(&Tensor::randn(&[3, 2, 8, 8], 2)).is_err());
}

/// `R(theta)` of the synflow setting (absolute weights, all-ones input), no rescaling.
fn synflow_r(net: &ProxyNetwork, hw: usize) -> f64 {
    let x = Tensor::ones(&[1, 1, hw, hw]);
    no_grad_sum(net, &x)
}

fn no_grad_sum(net: &ProxyNetwork, x: &Tensor) -> f64 {
    nas_tensor::no_grad(|| net.forward(x).unwrap().sum().item().unwrap() as f64)
}

#[test]
fn synflow_equals_finite_differences_and_rescaling_is_exact() {
    for s in [
        MIXED,
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    ] {
        let c = cell(s);
        let hw = 6;
        let ln_score = synflow(&c, tiny(), 3, (hw, hw)).unwrap();
        let ln_plain = synflow_score(&c, tiny(), 3, (hw, hw), false).unwrap();
        assert!(
            (ln_score - ln_plain).abs() < 1e-4,
            "{ln_score} vs {ln_plain}"
        );
        // Central differences of R over every scored weight.
        let mut net = ProxyNetwork::new(&c, tiny(), 3).unwrap();
        net.linearize().unwrap();
        let mut fd_total = 0.0f64;
        for (_, w) in net.scored_weights() {
            let v0 = w.to_vec().unwrap();
            for i in 0..v0.len() {
                let h = 1e-2f32.max(v0[i].abs() * 1e-2);
                let mut v = v0.clone();
                v[i] = v0[i] + h;
                w.set_data(&v).unwrap();
                let up = synflow_r(&net, hw);
                v[i] = v0[i] - h;
                w.set_data(&v).unwrap();
                let down = synflow_r(&net, hw);
                let g = (up - down) / (2.0 * h as f64);
                fd_total += (v0[i] as f64 * g).abs();
            }
            w.set_data(&v0).unwrap();
        }
        let rel = (fd_total.ln() - ln_score).abs();
        assert!(
            rel < 0.01,
            "{s}: ln fd {} vs ln synflow {ln_score}",
            fd_total.ln()
        );
    }
    // A cell whose output is cut off scores -inf; deeper and wider conv cells score higher.
    let cut = cell("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|");
    assert_eq!(
        synflow(&cut, Nb201Config::default(), 0, (32, 32)).unwrap(),
        f64::NEG_INFINITY
    );
}

#[test]
fn synflow_of_the_full_size_network_stays_finite() {
    // All 3x3 convolutions at C=16, N=5: the score (about e^100) overflows f32 without the
    // rescaling; here it is finite and above the all-1x1 cell's.
    let conv3 = cell(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    );
    let conv1 = cell(
        "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    );
    let a = synflow(&conv3, Nb201Config::default(), 0, (32, 32)).unwrap();
    let b = synflow(&conv1, Nb201Config::default(), 0, (32, 32)).unwrap();
    assert!(a.is_finite() && b.is_finite() && a > b + 10.0, "{a} {b}");
    assert!(a > 88.7, "ln score {a} fits f32 without rescaling");
}

#[test]
fn grad_norm_and_snip_equal_finite_differences_of_the_loss() {
    let c = cell(MIXED);
    let x = Tensor::randn(&[4, 1, 6, 6], 9);
    let labels = [0, 2, 1, 2];
    let p = data_proxies(&c, tiny(), 5, &x, &labels).unwrap();
    let net = ProxyNetwork::new(&c, tiny(), 5).unwrap();
    let loss = |net: &ProxyNetwork| {
        nas_tensor::no_grad(|| {
            net.forward(&x)
                .unwrap()
                .cross_entropy(&labels)
                .unwrap()
                .item()
                .unwrap() as f64
        })
    };
    let (mut gn, mut snip) = (0.0, 0.0);
    for (_, w) in net.scored_weights() {
        let v0 = w.to_vec().unwrap();
        let mut sq = 0.0;
        for i in 0..v0.len() {
            let h = 1e-3f32;
            let mut v = v0.clone();
            v[i] = v0[i] + h;
            w.set_data(&v).unwrap();
            let up = loss(&net);
            v[i] = v0[i] - h;
            w.set_data(&v).unwrap();
            let down = loss(&net);
            let g = (up - down) / (2.0 * h as f64);
            sq += g * g;
            snip += (v0[i] as f64 * g).abs();
        }
        w.set_data(&v0).unwrap();
        gn += f64::sqrt(sq);
    }
    assert!(
        (p.grad_norm - gn).abs() < 0.02 * gn,
        "{} vs {gn}",
        p.grad_norm
    );
    assert!((p.snip - snip).abs() < 0.02 * snip, "{} vs {snip}", p.snip);
    assert!(
        data_proxies(&c, tiny(), 5, &x, &labels[..3])
            .unwrap_err()
            .to_string()
            .contains("3 labels")
    );
}

#[test]
fn jacob_cov_uses_the_input_gradients() {
    let c = cell(MIXED);
    let n = 3;
    let x = Tensor::randn(&[n, 1, 6, 6], 4);
    let p = data_proxies(&c, tiny(), 1, &x, &[0, 1, 2]).unwrap();
    // Central differences of sum(net(x)) with respect to each pixel, in training mode (the
    // batch statistics couple images, so each pixel's effect is taken on the whole sum).
    let net = ProxyNetwork::new(&c, tiny(), 1).unwrap();
    let x0 = x.to_vec().unwrap();
    let mut jac = vec![0.0f32; x0.len()];
    for i in 0..x0.len() {
        let h = 1e-2f32;
        let mut v = x0.clone();
        v[i] += h;
        let up = no_grad_sum(&net, &Tensor::from_vec(v.clone(), x.shape()).unwrap());
        v[i] -= 2.0 * h;
        let down = no_grad_sum(&net, &Tensor::from_vec(v, x.shape()).unwrap());
        jac[i] = ((up - down) / (2.0 * h as f64)) as f32;
    }
    let fd = jacob_cov_score(&jac, n);
    assert!(p.jacob_cov.is_finite());
    assert!(
        (p.jacob_cov - fd).abs() < 0.02 * fd.abs(),
        "{} vs {fd}",
        p.jacob_cov
    );
}

#[test]
fn jacob_cov_score_by_hand() {
    let k = 1e-5f64;
    // Two rows with correlation 1: eigenvalues 2 and 0.
    let s = jacob_cov_score(&[1.0, 2.0, 4.0, 2.0, 4.0, 8.0], 2);
    let want = -((2.0 + k).ln() + 1.0 / (2.0 + k) + k.ln() + 1.0 / k);
    assert!((s - want).abs() < 1e-6 * want.abs(), "{s} {want}");
    // Correlation -0.5 between [1,2,3] and [3,1,2]: eigenvalues 1.5 and 0.5.
    let s = jacob_cov_score(&[1.0, 2.0, 3.0, 3.0, 1.0, 2.0], 2);
    let want = -((1.5 + k).ln() + 1.0 / (1.5 + k) + (0.5 + k).ln() + 1.0 / (0.5 + k));
    assert!((s - want).abs() < 1e-9, "{s} {want}");
    assert!(jacob_cov_score(&[1.0, 1.0, 1.0, 3.0, 1.0, 2.0], 2).is_nan());
    let mut ev = symmetric_eigenvalues(vec![2.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 5.0], 3);
    ev.sort_by(f64::total_cmp);
    for (a, b) in ev.iter().zip([1.0, 3.0, 5.0]) {
        assert!((a - b).abs() < 1e-12, "{ev:?}");
    }
}

#[test]
fn nwot_kernel_and_log_det_by_hand() {
    // Images' codes [1,0], [1,1], [0,0]: agreements 2 1 1 / 1 2 0 / 1 0 2, det 4.
    let t = Tensor::from_vec(vec![1.0, -1.0, 0.5, 2.0, -1.0, 0.0], &[3, 2]).unwrap();
    let k = nwot_kernel(std::slice::from_ref(&t), 3).unwrap();
    assert_eq!(k, vec![2.0, 1.0, 1.0, 1.0, 2.0, 0.0, 1.0, 0.0, 2.0]);
    assert!((log_abs_det(k, 3) - 4f64.ln()).abs() < 1e-12);
    // Two ReLUs add up; a second image equal to the first makes K singular.
    let k2 = nwot_kernel(&[t.clone(), t], 3).unwrap();
    assert!((log_abs_det(k2, 3) - 32f64.ln()).abs() < 1e-12);
    let same = Tensor::from_vec(vec![1.0, 1.0, 1.0, 1.0], &[2, 2]).unwrap();
    let k = nwot_kernel(&[same], 2).unwrap();
    assert_eq!(log_abs_det(k, 2), f64::NEG_INFINITY);
    // 70 units (two 64-bit words).
    let v: Vec<f32> = (0..140)
        .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
        .collect();
    let k = nwot_kernel(&[Tensor::from_vec(v, &[2, 70]).unwrap()], 2).unwrap();
    let agree = (0..70)
        .filter(|j| (j % 3 == 0) == ((70 + j) % 3 == 0))
        .count() as f64;
    assert_eq!(k, vec![70.0, agree, agree, 70.0]);
}

#[test]
fn spearman_by_hand() {
    let (r, n) = spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]);
    assert_eq!(n, 4);
    assert!((r - 0.8).abs() < 1e-12);
    // Ties get average ranks: [1, 2.5, 2.5, 4] against [1, 2, 3, 4].
    let (r, _) = spearman(&[1.0, 2.0, 2.0, 3.0], &[10.0, 20.0, 30.0, 40.0]);
    assert!((r - 4.5 / 22.5f64.sqrt()).abs() < 1e-12);
    // NaN pairs are left out; -inf ranks lowest.
    let (r, n) = spearman(
        &[f64::NAN, f64::NEG_INFINITY, 1.0, 2.0],
        &[5.0, 1.0, 2.0, 3.0],
    );
    assert_eq!(n, 3);
    assert!((r - 1.0).abs() < 1e-12);
    assert!(spearman(&[1.0], &[2.0]).0.is_nan());
}
