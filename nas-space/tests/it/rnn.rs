//! DARTS recurrent-cell space: published genotypes, text form, bad genotypes, moves,
//! encodings, canonical form.

use nas_space::rnn::{
    DARTS_V1_RNN, DARTS_V2_RNN, NUM_NODES, RNN_PRIMITIVES, RnnActivation, RnnGenotype, RnnSpace,
};
use nas_space::{SearchSpace, SpaceError};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// The published strings of the original code's `rnn/genotypes.py`.
const V1_TEXT: &str = "Genotype(recurrent=[('relu', 0), ('relu', 1), ('tanh', 2), ('relu', 3), ('relu', 4), ('identity', 1), ('relu', 5), ('relu', 1)], concat=range(1, 9))";
const V2_TEXT: &str = "Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ('relu', 1), ('identity', 1), ('tanh', 2), ('sigmoid', 5), ('tanh', 3), ('relu', 5)], concat=range(1, 9))";

#[test]
fn published_genotypes_round_trip_exactly() {
    assert_eq!(RnnGenotype::parse(V2_TEXT).unwrap(), DARTS_V2_RNN);
    assert_eq!(DARTS_V2_RNN.to_string(), V2_TEXT);
    assert_eq!(RnnGenotype::parse(V1_TEXT).unwrap(), DARTS_V1_RNN);
    assert_eq!(DARTS_V1_RNN.to_string(), V1_TEXT);
    assert_ne!(
        RnnSpace.canonical(&DARTS_V1_RNN),
        RnnSpace.canonical(&DARTS_V2_RNN)
    );
    assert_eq!(
        RNN_PRIMITIVES,
        ["none", "tanh", "relu", "sigmoid", "identity"]
    );
    for (i, a) in RnnActivation::ALL.into_iter().enumerate() {
        assert_eq!(RNN_PRIMITIVES[i + 1], a.as_str());
        assert_eq!(RnnActivation::from_name(a.as_str()), Some(a));
    }
}

#[test]
fn lenient_python_forms_parse() {
    let text = "Genotype(\n concat = [1, 2, 3, 4, 5, 6, 7, 8],\n recurrent=[(\"sigmoid\", 0), ('relu', 1), ('relu', 1), ('identity', 1), ('tanh', 2), ('sigmoid', 5), ('tanh', 3), ('relu',5),],\n)\n";
    assert_eq!(RnnGenotype::parse(text).unwrap(), DARTS_V2_RNN);
}

fn parse_err(text: &str) -> (usize, String) {
    match RnnGenotype::parse(text) {
        Err(SpaceError::Parse {
            position, message, ..
        }) => (position, message),
        other => panic!("{text:?} gave {other:?}"),
    }
}

#[test]
fn bad_genotypes_are_clear_errors() {
    // A node reading a node that does not exist.
    let t = V2_TEXT.replace("('tanh', 3)", "('tanh', 12)");
    let (p, m) = parse_err(&t);
    assert!(
        m.contains("node 7 reads node 12, which does not exist"),
        "{m}"
    );
    assert_eq!(&t[p..p + 12], "('tanh', 12)");
    // A cycle: node 2 reads node 3 and node 3 reads node 2.
    let t = V2_TEXT.replace("('relu', 1), ('relu', 1),", "('relu', 3), ('relu', 2),");
    let (_, m) = parse_err(&t);
    assert!(m.contains("nodes 2 -> 3 -> 2 form a cycle"), "{m}");
    // A node reading itself is a cycle too.
    let (_, m) = parse_err(&V2_TEXT.replacen("('sigmoid', 0)", "('sigmoid', 1)", 1));
    assert!(m.contains("nodes 1 -> 1 form a cycle"), "{m}");
    // A later node without a cycle (node 6 reads 5, 5 reads 2, 2 reads 1, 1 reads 0).
    let (_, m) = parse_err(&V2_TEXT.replacen("('identity', 1)", "('identity', 6)", 1));
    assert!(
        m.contains("node 4 reads node 6, which comes after it"),
        "{m}"
    );
    // Node 1 reading node 4, which reads node 1: a cycle.
    let (_, m) = parse_err(&V2_TEXT.replacen("('sigmoid', 0)", "('sigmoid', 4)", 1));
    assert!(m.contains("nodes 1 -> 4 -> 1 form a cycle"), "{m}");
    // Other malformed forms.
    let (_, m) = parse_err(&V2_TEXT.replace("('relu', 5)]", "]"));
    assert!(m.contains("the cell has 7 nodes; it needs 8"), "{m}");
    let (_, m) = parse_err(&V2_TEXT.replace("'tanh', 2", "'none', 2"));
    assert!(m.contains("`none` is a supernet choice"), "{m}");
    let (_, m) = parse_err(&V2_TEXT.replace("range(1, 9)", "range(2, 9)"));
    assert!(m.contains("concat must be range(1, 9)"), "{m}");
    let (_, m) = parse_err("Genotype(recurrent=[])");
    assert!(m.contains("0 nodes"), "{m}");
    let (_, m) = parse_err(&V2_TEXT.replace(", concat=range(1, 9)", ""));
    assert!(m.contains("lacks the field \"concat\""), "{m}");
    // validate() and new() give the same reasons for values built in code.
    let mut g = DARTS_V2_RNN;
    g.nodes[3].1 = 9;
    let e = RnnSpace.validate(&g).unwrap_err().to_string();
    assert!(
        e.contains("node 4 reads node 9, which does not exist"),
        "{e}"
    );
    assert!(RnnGenotype::new(g.nodes).is_err());
    assert!(RnnSpace.decode_decisions(&[1; 16]).is_err()); // node 1 has 1 input choice
}

#[test]
fn canonical_form_merges_renumberings_and_separates_different_trees() {
    // Nodes 2 and 3 both read node 1 with different activations: swapping their numbers
    // (and the readers of each) gives the same cell.
    use RnnActivation::*;
    let a = RnnGenotype::new([
        (Tanh, 0),
        (Relu, 1),
        (Sigmoid, 1),
        (Identity, 2),
        (Tanh, 3),
        (Relu, 0),
        (Relu, 6),
        (Tanh, 4),
    ])
    .unwrap();
    let b = RnnGenotype::new([
        (Tanh, 0),
        (Sigmoid, 1),
        (Relu, 1),
        (Tanh, 2),
        (Identity, 3),
        (Relu, 0),
        (Relu, 6),
        (Tanh, 5),
    ])
    .unwrap();
    assert_ne!(a, b);
    assert_eq!(RnnSpace.canonical(&a), RnnSpace.canonical(&b));
    assert_eq!(a.canonical(), b.canonical());
    // Changing one activation changes the tree.
    let mut c = b;
    c.nodes[7].0 = Relu;
    assert_ne!(RnnSpace.canonical(&a), RnnSpace.canonical(&c));
    assert_eq!(a.canonical().canonical(), a.canonical());
}

#[test]
fn size_decisions_and_sampling() {
    assert_eq!(RnnSpace.size(), Some(4u128.pow(8) * 40_320));
    let d = RnnSpace.decisions();
    assert_eq!(d, [1, 4, 2, 4, 3, 4, 4, 4, 5, 4, 6, 4, 7, 4, 8, 4]);
    assert_eq!(
        d.iter().map(|&n| n as u128).product::<u128>(),
        RnnSpace.size().unwrap()
    );
    // Sampling is uniform over each node's activations: chi-square on 8000 draws.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut counts = [0usize; 4];
    for _ in 0..1000 {
        for (act, _) in RnnSpace.sample(&mut rng).nodes {
            counts[act.index()] += 1;
        }
    }
    let e = 2000.0;
    let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
    assert!(chi2 < 16.27, "chi2 {chi2} counts {counts:?}"); // p = 0.001, 3 dof
}

/// Any valid genotype.
fn arb_genotype() -> impl Strategy<Value = RnnGenotype> {
    let choices: Vec<BoxedStrategy<usize>> = RnnSpace
        .decisions()
        .iter()
        .map(|&n| (0..n).boxed())
        .collect();
    choices.prop_map(|c| RnnSpace.decode_decisions(&c).unwrap())
}

/// The (node, field) entries that differ.
fn raw_changes(a: &RnnGenotype, b: &RnnGenotype) -> usize {
    a.nodes
        .iter()
        .zip(b.nodes)
        .map(|(x, y)| usize::from(x.0 != y.0) + usize::from(x.1 != y.1))
        .sum()
}

/// Renumbers node `k` (1..=8) as `perm[k - 1] + 1`; `None` unless every input stays earlier.
fn relabel(g: &RnnGenotype, perm: &[usize]) -> Option<RnnGenotype> {
    let new = |v: usize| if v == 0 { 0 } else { perm[v - 1] + 1 };
    let mut out = *g;
    for i in 1..=NUM_NODES {
        let (act, input) = g.nodes[i - 1];
        out.nodes[new(i) - 1] = (act, new(input));
    }
    out.validate().ok().map(|_| out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutation_changes_one_field_of_one_node(g in arb_genotype(), seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let m = RnnSpace.mutate(&g, &mut rng);
        prop_assert!(m.validate().is_ok());
        prop_assert_eq!(raw_changes(&g, &m), 1);
        prop_assert_eq!(RnnSpace.distance(&g, &m), 1);
    }

    #[test]
    fn neighbours_are_52_distinct_valid_at_distance_one(g in arb_genotype()) {
        let ns = RnnSpace.neighbours(&g);
        prop_assert_eq!(ns.len(), 52);
        prop_assert_eq!(ns.iter().collect::<HashSet<_>>().len(), 52);
        for n in &ns {
            prop_assert!(n.validate().is_ok());
            prop_assert_eq!(raw_changes(&g, n), 1);
        }
    }

    #[test]
    fn crossover_is_valid_and_takes_each_decision_from_a_parent(
        a in arb_genotype(), b in arb_genotype(), seed in any::<u64>()
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let c = RnnSpace.crossover(&a, &b, &mut rng);
        prop_assert!(c.validate().is_ok());
        let (da, db, dc) = (
            RnnSpace.encode_decisions(&a),
            RnnSpace.encode_decisions(&b),
            RnnSpace.encode_decisions(&c),
        );
        for i in 0..dc.len() {
            prop_assert!(dc[i] == da[i] || dc[i] == db[i]);
        }
    }

    #[test]
    fn distance_is_bounded_by_walk_length(g in arb_genotype(), seed in any::<u64>(), steps in 0usize..12) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut h = g;
        for _ in 0..steps {
            h = RnnSpace.mutate(&h, &mut rng);
        }
        prop_assert!(RnnSpace.distance(&g, &h) <= steps);
        prop_assert_eq!(RnnSpace.distance(&g, &h), RnnSpace.distance(&h, &g));
    }

    #[test]
    fn text_json_and_decisions_round_trip(g in arb_genotype()) {
        prop_assert_eq!(RnnSpace.parse(&RnnSpace.to_text(&g)).unwrap(), g);
        let json = serde_json::to_string(&g).unwrap();
        prop_assert_eq!(serde_json::from_str::<RnnGenotype>(&json).unwrap(), g);
        prop_assert_eq!(RnnSpace.decode_decisions(&RnnSpace.encode_decisions(&g)).unwrap(), g);
    }

    #[test]
    fn canonical_form_is_invariant_under_order_keeping_renumbering(
        g in arb_genotype(), perm in Just((0..8).collect::<Vec<usize>>()).prop_shuffle()
    ) {
        let c = g.canonical();
        prop_assert!(c.validate().is_ok());
        prop_assert_eq!(c.canonical(), c);
        // Same multiset of activations, and the same tree shape (node depths).
        let mut acts_a: Vec<_> = g.nodes.iter().map(|n| n.0).collect();
        let mut acts_b: Vec<_> = c.nodes.iter().map(|n| n.0).collect();
        acts_a.sort();
        acts_b.sort();
        prop_assert_eq!(acts_a, acts_b);
        if let Some(r) = relabel(&g, &perm) {
            prop_assert_eq!(RnnSpace.canonical(&r), RnnSpace.canonical(&g));
        }
    }

    #[test]
    fn parser_never_panics_and_mutated_strings_give_positioned_errors(
        g in arb_genotype(),
        pos in any::<prop::sample::Index>(),
        ch in any::<char>(),
        mode in 0usize..3,
    ) {
        let text = g.to_string();
        let mut chars: Vec<char> = text.chars().collect();
        let i = pos.index(chars.len());
        match mode {
            0 => { chars.remove(i); }
            1 => { chars.insert(i, ch); }
            _ => { chars[i] = ch; }
        }
        let m: String = chars.into_iter().collect();
        match RnnGenotype::parse(&m) {
            Ok(p) => prop_assert!(p.validate().is_ok()),
            Err(SpaceError::Parse { position, message, .. }) => {
                prop_assert!(position <= m.len());
                prop_assert!(!message.is_empty());
            }
            Err(e) => prop_assert!(false, "unexpected error kind {e:?}"),
        }
    }
}
