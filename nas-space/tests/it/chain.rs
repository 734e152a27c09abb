//! Chain (macro) space: moves, closed-form neighbour counts, edit distance, formats.

use nas_space::chain::{ChainArch, ChainLayer, ChainOp, ChainSpace};
use nas_space::{SearchSpace, SpaceError};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet, VecDeque};

fn small() -> ChainSpace {
    ChainSpace::new(3, vec![ChainOp::Conv3x3, ChainOp::Dense], vec![8, 16]).unwrap()
}

/// Every architecture of a space, by decoding every choice vector.
fn enumerate(s: &ChainSpace) -> Vec<ChainArch> {
    let sizes = s.decisions();
    let mut out = HashSet::new();
    let mut choice = vec![0usize; sizes.len()];
    loop {
        out.insert(s.decode_decisions(&choice).unwrap());
        let mut i = 0;
        while i < sizes.len() {
            choice[i] += 1;
            if choice[i] < sizes[i] {
                break;
            }
            choice[i] = 0;
            i += 1;
        }
        if i == sizes.len() {
            break;
        }
    }
    let mut v: Vec<ChainArch> = out.into_iter().collect();
    v.sort();
    v
}

#[test]
fn small_space_exhaustive_moves_and_distances() {
    let s = small();
    let all = enumerate(&s);
    assert_eq!(all.len() as u128, s.size().unwrap());
    assert_eq!(all.len(), 4 + 16 + 64);
    let index: HashMap<&ChainArch, usize> = all.iter().enumerate().map(|(i, a)| (a, i)).collect();
    for a in &all {
        let ns = s.neighbours(a);
        assert_eq!(ns.len(), s.neighbour_count(a), "{a}");
        let set: HashSet<&ChainArch> = ns.iter().collect();
        assert_eq!(set.len(), ns.len());
        let at_one: HashSet<&ChainArch> = all.iter().filter(|b| s.distance(a, b) == 1).collect();
        assert_eq!(set, at_one, "{a}");
    }
    // The distance is exactly the shortest path in the move graph (BFS from every node).
    for (i, a) in all.iter().enumerate() {
        let mut dist = vec![usize::MAX; all.len()];
        dist[i] = 0;
        let mut q = VecDeque::from([i]);
        while let Some(u) = q.pop_front() {
            for n in s.neighbours(&all[u]) {
                let v = index[&n];
                if dist[v] == usize::MAX {
                    dist[v] = dist[u] + 1;
                    q.push_back(v);
                }
            }
        }
        for (j, b) in all.iter().enumerate() {
            assert_eq!(s.distance(a, b), dist[j], "{a} vs {b}");
        }
    }
}

#[test]
fn presets_and_configuration_errors() {
    let cnn = ChainSpace::default();
    assert_eq!(cnn, ChainSpace::cnn());
    assert_eq!(cnn.name(), "chain");
    assert_eq!(cnn.size(), Some((1..=6).map(|l| 12u128.pow(l)).sum()));
    assert_eq!(ChainSpace::mlp().ops(), &[ChainOp::Dense]);
    assert!(ChainSpace::new(0, vec![ChainOp::Dense], vec![8]).is_err());
    assert!(ChainSpace::new(2, vec![], vec![8]).is_err());
    assert!(ChainSpace::new(2, vec![ChainOp::Dense], vec![8, 0]).is_err());
    assert!(ChainSpace::new(2, vec![ChainOp::Dense, ChainOp::Dense], vec![8]).is_err());
    assert!(ChainSpace::new(2, vec![ChainOp::Dense], vec![8, 8]).is_err());
    let json = serde_json::to_string(&cnn).unwrap();
    assert_eq!(serde_json::from_str::<ChainSpace>(&json).unwrap(), cnn);
    let bad = r#"{"max_layers":0,"ops":["Dense"],"widths":[8]}"#;
    assert!(serde_json::from_str::<ChainSpace>(bad).is_err());
    let huge = ChainSpace::new(100, ChainOp::ALL.to_vec(), (1..=100).collect()).unwrap();
    assert_eq!(huge.size(), None);
}

#[test]
fn parse_errors_say_where_and_what() {
    let s = ChainSpace::cnn();
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "expected a layer op name"),
        ("conv7x7(32)", 0, "unknown chain op \"conv7x7\""),
        ("conv3x3(32) -> ", 15, "expected a layer op name"),
        ("conv3x3(0)", 8, "positive"),
        ("conv3x3(32) conv3x3(32)", 12, "expected \"->\""),
        ("conv3x3 32", 8, "expected \"(\""),
        ("conv3x3(32", 10, "expected \")\""),
    ];
    for &(text, pos, what) in cases {
        match s.parse(text) {
            Err(SpaceError::Parse {
                position, message, ..
            }) => {
                assert_eq!(position, pos, "{text:?}: {message}");
                assert!(message.contains(what), "{text:?}: {message}");
            }
            other => panic!("{text:?} gave {other:?}"),
        }
    }
    // Well-formed but outside the space.
    let e = s.parse("dense(32)").unwrap_err();
    assert!(e.to_string().contains("op dense is not one of"), "{e}");
    let e = s.parse("conv3x3(48)").unwrap_err();
    assert!(e.to_string().contains("width 48"), "{e}");
    let seven = ["conv3x3(16)"; 7].join(" -> ");
    assert!(
        s.parse(&seven)
            .unwrap_err()
            .to_string()
            .contains("7 layers")
    );
    assert!(ChainArch::parse(&seven).is_ok());
}

#[test]
fn sampling_is_reproducible_and_depth_uniform() {
    let s = ChainSpace::cnn();
    let draw = |seed: u64| -> Vec<ChainArch> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..100).map(|_| s.sample(&mut rng)).collect()
    };
    assert_eq!(draw(1), draw(1));
    assert_ne!(draw(1), draw(2));
    // Depth 1..=6 uniform: chi-square, 5 df, 0.1% point 20.52.
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let mut counts = [0usize; 6];
    for _ in 0..6000 {
        counts[s.sample(&mut rng).len() - 1] += 1;
    }
    let chi2: f64 = counts
        .iter()
        .map(|&c| (c as f64 - 1000.0).powi(2) / 1000.0)
        .sum();
    assert!(chi2 < 20.52, "{chi2} {counts:?}");
}

fn arb_chain() -> impl Strategy<Value = ChainArch> {
    let s = ChainSpace::cnn();
    let ops = s.ops().to_vec();
    let widths = s.widths().to_vec();
    prop::collection::vec(
        (prop::sample::select(ops), prop::sample::select(widths))
            .prop_map(|(op, width)| ChainLayer { op, width }),
        1..=6,
    )
    .prop_map(|layers| ChainArch { layers })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutation_is_valid_and_one_move(a in arb_chain(), seed in any::<u64>()) {
        let s = ChainSpace::cnn();
        let m = s.mutate(&a, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert!(s.validate(&m).is_ok());
        prop_assert_eq!(s.distance(&a, &m), 1);
        prop_assert!(s.neighbours(&a).contains(&m));
    }

    #[test]
    fn crossover_takes_each_field_from_a_parent(a in arb_chain(), b in arb_chain(), seed in any::<u64>()) {
        let s = ChainSpace::cnn();
        let c = s.crossover(&a, &b, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert!(s.validate(&c).is_ok());
        prop_assert!(c.len() == a.len() || c.len() == b.len());
        for (i, l) in c.layers.iter().enumerate() {
            let ops: Vec<ChainOp> = [a.layers.get(i), b.layers.get(i)].iter().flatten().map(|x| x.op).collect();
            let ws: Vec<usize> = [a.layers.get(i), b.layers.get(i)].iter().flatten().map(|x| x.width).collect();
            prop_assert!(ops.contains(&l.op) && ws.contains(&l.width));
        }
    }

    #[test]
    fn neighbours_match_the_closed_form(a in arb_chain()) {
        let s = ChainSpace::cnn();
        let ns = s.neighbours(&a);
        prop_assert_eq!(ns.len(), s.neighbour_count(&a));
        let set: HashSet<&ChainArch> = ns.iter().collect();
        prop_assert_eq!(set.len(), ns.len());
        for n in &ns {
            prop_assert!(s.validate(n).is_ok());
            prop_assert_eq!(s.distance(&a, n), 1);
        }
    }

    #[test]
    fn distance_is_a_symmetric_walk_bound(a in arb_chain(), seed in any::<u64>(), steps in 0usize..10) {
        let s = ChainSpace::cnn();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut b = a.clone();
        for _ in 0..steps {
            b = s.mutate(&b, &mut rng);
        }
        prop_assert!(s.distance(&a, &b) <= steps);
        prop_assert_eq!(s.distance(&a, &b), s.distance(&b, &a));
        prop_assert_eq!(s.distance(&a, &a), 0);
    }

    #[test]
    fn text_json_and_decisions_round_trip(a in arb_chain()) {
        let s = ChainSpace::cnn();
        prop_assert_eq!(s.parse(&s.to_text(&a)).unwrap(), a.clone());
        let json = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(serde_json::from_str::<ChainArch>(&json).unwrap(), a.clone());
        prop_assert_eq!(s.decode_decisions(&s.encode_decisions(&a)).unwrap(), a.clone());
        prop_assert_eq!(s.one_hot(&a).iter().sum::<f32>(), 13.0);
    }

    #[test]
    fn parser_never_panics_on_arbitrary_strings(text in ".{0,120}") {
        let _ = ChainArch::parse(&text);
        let _ = ChainSpace::cnn().parse(&text);
    }

    #[test]
    fn parser_reports_errors_on_mutated_valid_strings(
        a in arb_chain(),
        pos in any::<prop::sample::Index>(),
        ch in any::<char>(),
        mode in 0usize..3,
    ) {
        let s = ChainSpace::cnn();
        let text = a.to_string();
        let mut chars: Vec<char> = text.chars().collect();
        let i = pos.index(chars.len());
        match mode {
            0 => { chars.remove(i); }
            1 => { chars.insert(i, ch); }
            _ => { chars[i] = ch; }
        }
        let m: String = chars.into_iter().collect();
        match s.parse(&m) {
            Ok(p) => prop_assert!(s.validate(&p).is_ok()),
            Err(SpaceError::Parse { position, message, .. }) => {
                prop_assert!(position <= m.len());
                prop_assert!(!message.is_empty());
            }
            Err(e) => prop_assert!(false, "unexpected error kind {e:?}"),
        }
    }
}
