//! Single-path weight sharing (SPOS, random search with weight sharing): a sampled path is the
//! standalone network of its genotype, BN recalibration, the path search and its outputs.

use nas_search::data::{Dataset, digits_embedded};
use nas_search::nets::nb201::{Nb201Config, Nb201Network};
use nas_search::oneshot::{
    Genotype, Method, OneShotConfig, OneShotSearch, SpaceKind, Supernet, SupernetConfig,
    path_indices, path_mixing, run_oneshot, sample_path,
};
use nas_space::darts::{DartsCell, DartsOp};
use nas_space::nb201::{Nb201Cell, Nb201Op};
use nas_tensor::nn::Module;
use nas_tensor::{Device, Tensor, no_grad};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn digits() -> Dataset {
    digits_embedded().unwrap().normalize().unwrap().train
}

/// The supernet's parameters on the path `index` (one op per edge), in visit order: edge ops
/// are named `cells.<i>.edges.<e>._ops.<k>.*`, and only `k == index[e]` is on the path.
fn path_params(net: &Supernet, index: &[usize]) -> Named {
    net.named_parameters()
        .into_iter()
        .filter(|(name, _)| {
            let p: Vec<&str> = name.split('.').collect();
            match p.iter().position(|s| *s == "_ops") {
                Some(o) => {
                    let e: usize = p[o - 1].parse().unwrap();
                    let k: usize = p[o + 1].parse().unwrap();
                    index[e] == k
                }
                None => true,
            }
        })
        .collect()
}

/// The standalone network's parameters that the supernet has too: NAS-Bench-201's search
/// supernet has non-affine BN on its edge ops (as the benchmark's search code), so the
/// standalone network's edge-op BN scales and shifts (1 and 0 when built, so the forward passes
/// agree) have no counterpart. Returns (matched, unmatched edge-op BN affine parameters).
type Named = Vec<(String, Tensor)>;

fn standalone_params(net: &Nb201Network) -> (Named, Named) {
    net.named_parameters()
        .into_iter()
        .partition(|(name, t)| !(name.contains(".layers.") && t.ndim() == 1))
}

/// A sampled path's forward pass and gradients equal those of the standalone NAS-Bench-201
/// network of its genotype with the same weights (training mode), and no weight off the path
/// gets a gradient.
#[test]
fn sampled_path_equals_standalone_nb201_network() {
    let (c, classes) = (4, 10);
    let net = Supernet::new(
        SupernetConfig {
            space: SpaceKind::Nb201,
            c,
            layers: 1,
            in_channels: 1,
            classes,
        },
        7,
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let x = Tensor::randn_with(&[6, 1, 8, 8], &mut rng);
    let y = vec![0usize, 3, 9, 1, 1, 5];
    use Nb201Op::*;
    let mut cells = vec![
        // every op once, and a node 1 fed by `none` only (its outgoing ops then run on zeros)
        Nb201Cell::new([
            None,
            NorConv3x3,
            SkipConnect,
            AvgPool3x3,
            NorConv1x1,
            NorConv3x3,
        ]),
        Nb201Cell::new([NorConv1x1, None, None, None, None, None]),
    ];
    for _ in 0..3 {
        match sample_path(SpaceKind::Nb201, &mut rng) {
            Genotype::Nb201(cell) => cells.push(cell),
            other => panic!("NB201 space sampled {other:?}"),
        }
    }
    for cell in cells {
        let g = Genotype::Nb201(cell);
        let (index, reduce) = path_indices(&g).unwrap();
        assert!(reduce.is_none());
        let alone = Nb201Network::new(
            &cell,
            Nb201Config {
                channels: c,
                cells_per_stage: 1,
                in_channels: 1,
                classes,
            },
            99,
        )
        .unwrap();
        let sp = path_params(&net, &index);
        let (sa, affine) = standalone_params(&alone);
        assert_eq!(sp.len(), sa.len(), "{cell}: {sp:?}\n{sa:?}");
        for ((ns, ts), (na, ta)) in sp.iter().zip(&sa) {
            assert_eq!(ts.shape(), ta.shape(), "{cell}: {ns} vs {na}");
            ta.copy_from(ts).unwrap();
        }
        for (n, t) in &affine {
            let want = if n.ends_with("weight") { 1.0 } else { 0.0 };
            assert!(t.to_vec().unwrap().iter().all(|&v| v == want), "{n}");
        }
        net.zero_grad();
        alone.zero_grad();
        let mix = path_mixing(&g, Device::Cpu).unwrap();
        let a = net.forward_mix(&x, &mix).unwrap();
        let b = alone.forward(&x).unwrap();
        let (va, vb) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        let diff = va
            .iter()
            .zip(&vb)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-5, "{cell}: logits differ by {diff}");
        a.cross_entropy(&y).unwrap().backward().unwrap();
        b.cross_entropy(&y).unwrap().backward().unwrap();
        for ((ns, ts), (na, ta)) in sp.iter().zip(&sa) {
            // (a cell whose output node has only `none` inputs cuts the graph: no gradient
            // before it, in both networks)
            let grad = |t: &Tensor| match t.grad().unwrap() {
                Some(g) => g.to_vec().unwrap(),
                Option::None => vec![0.0f32; t.numel()],
            };
            let (gs, ga): (Vec<f32>, Vec<f32>) = (grad(ts), grad(ta));
            assert_eq!(
                ts.grad().unwrap().is_some(),
                ta.grad().unwrap().is_some(),
                "{cell}: {ns} / {na}"
            );
            let scale = ga.iter().map(|v| v.abs()).fold(1e-6f32, f32::max);
            let d = gs
                .iter()
                .zip(&ga)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            assert!(d <= 1e-4 * scale, "{cell}: gradient of {ns} differs by {d}");
        }
        // Off the path: no gradient at all (or an exact zero).
        let on: std::collections::HashSet<String> = sp.iter().map(|(n, _)| n.clone()).collect();
        for (n, t) in net.named_parameters() {
            if on.contains(&n) {
                continue;
            }
            if let Some(g) = t.grad().unwrap() {
                assert!(
                    g.to_vec().unwrap().iter().all(|&v| v == 0.0),
                    "{cell}: {n} is off the path but got a gradient"
                );
            }
        }
    }
}

/// DARTS genotypes map to one op per edge (`none` on unused edges); a genotype that feeds one
/// node the same input twice is no supernet path and is refused, naming the node.
#[test]
fn darts_path_indices() {
    let g = nas_space::darts::DARTS_V2;
    let (n, r) = path_indices(&Genotype::Darts(g)).unwrap();
    let r = r.unwrap();
    assert_eq!(n.len(), 14);
    assert_eq!(n.iter().filter(|&&i| i != 0).count(), 8);
    assert_eq!(r.iter().filter(|&&i| i != 0).count(), 8);
    // node 2 (rows 0, 1) of DARTS_V2's normal cell: sep_conv_3x3 from 0 and from 1
    assert_eq!(&n[..2], &[DartsOp::SepConv3x3.primitive_index(); 2]);
    let mut bad = g;
    bad.normal = DartsCell {
        nodes: [[(DartsOp::SkipConnect, 0), (DartsOp::MaxPool3x3, 0)]; 4],
    };
    let e = path_indices(&Genotype::Darts(bad)).unwrap_err().to_string();
    assert!(e.contains("node 2 takes input 0 twice"), "{e}");
}

fn spos_config(method: Method, space: SpaceKind) -> OneShotConfig {
    let mut c = OneShotConfig::new(method, space);
    c.c = 4;
    c.layers = if space == SpaceKind::Darts { 3 } else { 1 };
    c.batch_size = 32;
    c.seed = 5;
    c.bn_batches = 2;
    c.candidates = 12;
    c
}

/// Recalibration sets the running statistics to the path's batch statistics: after it on one
/// batch, the evaluation-mode forward pass of that batch equals the training-mode one (up to
/// the unbiased variance the running statistics keep); before it, they differ. The search's own
/// statistics are restored by `path_accuracy`.
#[test]
fn bn_recalibration_uses_the_paths_batch_statistics() {
    let data = digits();
    let mut s = OneShotSearch::new(spos_config(Method::Spos, SpaceKind::Nb201), &data).unwrap();
    for _ in 0..3 {
        s.step().unwrap();
    }
    let g = sample_path(SpaceKind::Nb201, &mut ChaCha8Rng::seed_from_u64(4));
    let mix = path_mixing(&g, Device::Cpu).unwrap();
    let batches = s.bn_batches().unwrap();
    assert_eq!(batches.len(), 2);
    let x = &batches[0].x;
    let net = s.supernet();
    let logits = |training: bool| -> Vec<f32> {
        net.set_training(training);
        let v = no_grad(|| net.forward_mix(x, &mix).unwrap().to_vec().unwrap());
        net.set_training(true);
        v
    };
    let gap = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max)
    };
    let before: Vec<Vec<f32>> = net
        .named_buffers()
        .iter()
        .map(|(_, t)| t.to_vec().unwrap())
        .collect();
    // (the training-mode pass updates running statistics: take the baseline on a copy's worth)
    let eval0 = logits(false);
    let train0 = logits(true);
    let gap0 = gap(&eval0, &train0);
    s.recalibrate_bn(&mix, &batches[..1]).unwrap();
    let net = s.supernet();
    let eval1 = {
        net.set_training(false);
        let v = no_grad(|| net.forward_mix(x, &mix).unwrap().to_vec().unwrap());
        net.set_training(true);
        v
    };
    let train1 = no_grad(|| net.forward_mix(x, &mix).unwrap().to_vec().unwrap());
    let gap1 = gap(&eval1, &train1);
    let scale = train1.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    eprintln!("eval vs train logits: {gap0} before recalibration, {gap1} after (scale {scale})");
    assert!(gap1 <= 0.02 * scale.max(1.0), "{gap1}");
    assert!(gap0 > 20.0 * gap1, "{gap0} vs {gap1}");
    // path_accuracy leaves the supernet's statistics as it found them.
    let snap: Vec<Vec<f32>> = s
        .supernet()
        .named_buffers()
        .iter()
        .map(|(_, t)| t.to_vec().unwrap())
        .collect();
    let (_, acc) = s.path_accuracy(&g, &batches).unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let after: Vec<Vec<f32>> = s
        .supernet()
        .named_buffers()
        .iter()
        .map(|(_, t)| t.to_vec().unwrap())
        .collect();
    assert_eq!(snap, after);
    assert_ne!(before, snap);
}

/// A short SPOS run on the real digits: the shared weights learn (the reference path's
/// validation accuracy ends well above chance), the architecture weights are untouched, the
/// path search proposes `candidates` cells, picks the most accurate, reports the table
/// correlation and writes `candidates.json` and `genotype.txt`; RSWS runs on the DARTS space.
#[test]
fn spos_and_rsws_train_search_and_write_outputs() {
    let data = digits();
    for (method, space, epochs) in [
        (Method::Spos, SpaceKind::Nb201, 4),
        (Method::RandomWs, SpaceKind::Darts, 1),
    ] {
        let mut cfg = spos_config(method, space);
        cfg.epochs = epochs;
        cfg.steps_per_epoch = Some(25);
        let s = OneShotSearch::new(cfg.clone(), &data).unwrap();
        let alpha0 = s.arch().snapshot().unwrap();
        drop(s);
        let dir = tempfile::tempdir().unwrap();
        let out = run_oneshot(&cfg, &data, dir.path(), false).unwrap();
        assert_eq!(
            out.arch, alpha0,
            "{method:?} must not train architecture weights"
        );
        assert_eq!(out.history.len(), epochs);
        let first = &out.history[0];
        let last = out.history.last().unwrap();
        assert!(first.search_loss.is_finite() && first.search_acc > 0.0);
        let p = out.paths.as_ref().expect("a path search");
        assert_eq!(p.candidates.len(), 12);
        let best = &p.candidates[p.best];
        assert!(p.candidates.iter().all(|c| c.valid_acc <= best.valid_acc));
        assert_eq!(out.genotype, best.genotype);
        let g = std::fs::read_to_string(dir.path().join("genotype.txt")).unwrap();
        assert_eq!(g.trim(), out.genotype.to_string());
        let j: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("candidates.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(j["candidates"].as_array().unwrap().len(), 12);
        assert!(!dir.path().join("alphas.svg").exists());
        assert!(dir.path().join("epochs/epoch_000.json").exists());
        eprintln!(
            "{method:?}/{space:?}: reference path {} acc {:?} -> {:?}; best {} {:.3}; {:?}",
            last.genotype,
            first.valid_acc,
            last.valid_acc,
            best.genotype,
            best.valid_acc,
            p.spearman_vs_table
        );
        match space {
            SpaceKind::Nb201 => {
                assert_eq!(p.strategy, "rea");
                // 10 classes: chance is 0.1
                assert!(last.valid_acc.unwrap() > 0.3, "{last:?}");
                assert_eq!(
                    last.genotype,
                    OneShotSearch::new(cfg.clone(), &data)
                        .unwrap()
                        .reference_path()
                );
                let (rho, n) = p.spearman_vs_table.unwrap();
                assert!(rho.is_finite() && (-1.0..=1.0).contains(&rho));
                assert_eq!(
                    n,
                    p.candidates.iter().filter(|c| c.same_as.is_none()).count()
                );
                assert!(best.nb201_cifar10_test.is_some());
                // Resuming the finished run with more candidates trains nothing and extends
                // the same path search.
                let mut more = cfg.clone();
                more.candidates = 16;
                let again = run_oneshot(&more, &data, dir.path(), true).unwrap();
                assert_eq!(again.steps_run, 0);
                let q = again.paths.unwrap();
                assert_eq!(q.candidates.len(), 16);
                assert_eq!(q.candidates[..12], p.candidates[..]);
            }
            SpaceKind::Darts => {
                assert_eq!(p.strategy, "random");
                assert!(matches!(out.genotype, Genotype::Darts(_)));
                assert!(p.spearman_vs_table.is_none());
                // one short epoch: no accuracy bar, but the paths differ
                let accs: Vec<u64> = p.candidates.iter().map(|c| c.valid_acc.to_bits()).collect();
                assert!(accs.iter().any(|&a| a != accs[0]), "{accs:?}");
            }
            SpaceKind::Rnn => unreachable!("an image space"),
        }
    }
}

#[test]
fn bad_spos_settings_are_errors() {
    let data = digits();
    let mut cfg = spos_config(Method::Spos, SpaceKind::Nb201);
    cfg.candidates = 0;
    let e = OneShotSearch::new(cfg, &data).err().unwrap().to_string();
    assert!(e.contains("at least one candidate"), "{e}");
    let mut cfg = spos_config(Method::RandomWs, SpaceKind::Nb201);
    cfg.bn_batches = 0;
    assert!(OneShotSearch::new(cfg, &data).is_err());
    assert_eq!(Method::parse("random-ws").unwrap(), Method::RandomWs);
    assert_eq!(Method::parse("spos").unwrap().name(), "spos");
    let e = Method::parse("sposs").unwrap_err().to_string();
    assert!(e.contains("spos, rsws or enas"), "{e}");
}
