//! PC-DARTS: partial channel connections with K = 1 are the full mixed op; K > 1 supernets
//! run, shrink the edge ops and train the edge weights.

use nas_search::data::digits_embedded;
use nas_search::oneshot::{
    Method, Mixing, OneShotConfig, OneShotSearch, SpaceKind, Supernet, SupernetConfig,
};
use nas_tensor::Tensor;
use nas_tensor::nn::Module;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn config(space: SpaceKind) -> SupernetConfig {
    SupernetConfig {
        space,
        c: 4,
        layers: if space == SpaceKind::Darts { 3 } else { 1 },
        in_channels: 1,
        classes: 10,
    }
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().map(|v| v.abs()).fold(1e-6f32, f32::max);
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max)
        / scale
}

/// With K = 1 and every edge weight 1, PC-DARTS' partial mixing is DARTS' mixed op: the same
/// logits, the same weight gradients and the same architecture-weight gradients, on both
/// spaces (the supernets are built from the same seed and get the same weights).
#[test]
fn k1_partial_mixing_equals_the_full_mixed_op() {
    for space in [SpaceKind::Nb201, SpaceKind::Darts] {
        let full = Supernet::new(config(space), 3).unwrap();
        let part = Supernet::new_partial(config(space), 3, 1).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = Tensor::randn_with(&[4, 1, 8, 8], &mut rng);
        let y = [1usize, 7, 2, 2];
        let shape = [space.num_edges(), space.num_ops()];
        let an = Tensor::randn_with(&shape, &mut rng).param();
        let ar = Tensor::randn_with(&shape, &mut rng).param();
        let ones = Tensor::full(&[space.num_edges()], 1.0);
        let reduce = |a: &Tensor| space.has_reduce().then(|| a.softmax(1).unwrap());
        let soft = Mixing::Soft {
            normal: an.softmax(1).unwrap(),
            reduce: reduce(&ar),
        };
        let partial = Mixing::Partial {
            normal: an.softmax(1).unwrap(),
            reduce: reduce(&ar),
            normal_edges: ones.clone(),
            reduce_edges: space.has_reduce().then(|| ones.clone()),
        };
        let mut grads = Vec::new();
        let mut logits = Vec::new();
        for (net, mix) in [(&full, &soft), (&part, &partial)] {
            an.zero_grad();
            ar.zero_grad();
            let out = net.forward_mix(&x, mix).unwrap();
            logits.push(out.to_vec().unwrap());
            out.cross_entropy(&y).unwrap().backward().unwrap();
            let mut g: Vec<Vec<f32>> = net
                .parameters()
                .iter()
                .map(|p| p.grad().unwrap().unwrap().to_vec().unwrap())
                .collect();
            g.push(an.grad().unwrap().unwrap().to_vec().unwrap());
            if space.has_reduce() {
                g.push(ar.grad().unwrap().unwrap().to_vec().unwrap());
            }
            grads.push(g);
        }
        let d = max_rel_diff(&logits[0], &logits[1]);
        assert!(d < 1e-5, "{space:?}: logits differ by {d}");
        assert_eq!(grads[0].len(), grads[1].len());
        for (i, (a, b)) in grads[0].iter().zip(&grads[1]).enumerate() {
            let d = max_rel_diff(a, b);
            assert!(d < 1e-4, "{space:?}: gradient {i} differs by {d}");
        }
    }
}

/// K = 4: the edge ops are built at C/4 channels (fewer weights), a supernet of partial
/// channels refuses plain softmax mixing, odd feature-map sizes (28 -> 14 -> 7 -> 4) work
/// through the bypass pool of reduction edges, and gradients reach op and edge logits.
#[test]
fn k4_supernet_runs_and_trains_edge_weights() {
    let data = digits_embedded().unwrap().normalize().unwrap().train;
    for space in [SpaceKind::Nb201, SpaceKind::Darts] {
        let mut cfg = config(space);
        cfg.c = 8;
        let full = Supernet::new(cfg, 3).unwrap();
        let part = Supernet::new_partial(cfg, 3, 4).unwrap();
        assert!(part.num_parameters() < full.num_parameters());
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let x = Tensor::randn_with(&[2, 1, 28, 28], &mut rng);
        let shape = [space.num_edges(), space.num_ops()];
        let u = Tensor::full(&shape, 1.0 / shape[1] as f32);
        let soft = Mixing::Soft {
            normal: u.clone(),
            reduce: space.has_reduce().then(|| u.clone()),
        };
        let e = part.forward_mix(&x, &soft).err().unwrap().to_string();
        assert!(e.contains("partial"), "{e}");
        assert!(Supernet::new_partial(cfg, 3, 3).is_err());

        let mut oc = OneShotConfig::new(Method::PcDarts, space);
        oc.c = 8;
        oc.layers = cfg.layers;
        oc.batch_size = 16;
        oc.steps_per_epoch = Some(2);
        oc.epochs = 1;
        let mut s = OneShotSearch::new(oc.clone(), &data).unwrap();
        let before = s.arch().snapshot().unwrap();
        assert!(before.edge_weights_normal.is_some());
        s.step().unwrap();
        s.step().unwrap();
        let after = s.arch().snapshot().unwrap();
        assert_ne!(before.edge_weights_normal, after.edge_weights_normal);
        assert_ne!(before.alpha_normal, after.alpha_normal);
        // (each node's edge weights sum to 1)
        let ew = after.edge_weights_normal.unwrap();
        let total: f32 = ew.iter().sum();
        let nodes = if space == SpaceKind::Darts { 4.0 } else { 3.0 };
        assert!((total - nodes).abs() < 1e-4, "{ew:?}");
        s.genotype().unwrap();
        oc.pc_k = 3;
        let e = OneShotSearch::new(oc, &data).err().unwrap().to_string();
        assert!(e.contains("multiple of K"), "{e}");
    }
}
