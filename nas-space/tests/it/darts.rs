//! DARTS space: published genotypes, Python text form, moves, encodings, canonical keys.

use nas_space::darts::{
    DARTS_PRIMITIVES, DARTS_V1, DARTS_V2, DartsCell, DartsGenotype, DartsOp, DartsSpace,
};
use nas_space::{SearchSpace, SpaceError};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// The published strings of the original code's `genotypes.py`.
const V1_TEXT: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])";
const V2_TEXT: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])";

#[test]
fn published_genotypes_round_trip_exactly() {
    assert_eq!(DartsGenotype::parse(V2_TEXT).unwrap(), DARTS_V2);
    assert_eq!(DARTS_V2.to_string(), V2_TEXT);
    assert_eq!(DartsGenotype::parse(V1_TEXT).unwrap(), DARTS_V1);
    assert_eq!(DARTS_V1.to_string(), V1_TEXT);
    assert!(DARTS_V1.validate().is_ok() && DARTS_V2.validate().is_ok());
    assert_ne!(
        DartsSpace.canonical(&DARTS_V1),
        DartsSpace.canonical(&DARTS_V2)
    );
}

#[test]
fn primitives_in_original_order() {
    assert_eq!(DARTS_PRIMITIVES[0], "none");
    assert_eq!(DARTS_PRIMITIVES[4], "sep_conv_3x3");
    for (i, op) in DartsOp::ALL.iter().enumerate() {
        assert_eq!(op.index(), i);
        assert_eq!(DARTS_PRIMITIVES[op.primitive_index()], op.as_str());
        assert_eq!(op.as_str().parse::<DartsOp>().unwrap(), *op);
    }
    assert!("none".parse::<DartsOp>().is_err());
}

#[test]
fn lenient_python_forms_parse() {
    let text = "Genotype(\n  normal=[(\"sep_conv_3x3\", 0), ('sep_conv_3x3', 1),\n ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2),],\n  normal_concat=range(2, 6),\n  reduce_concat = [2,3,4,5],\n  reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)],\n)\n";
    assert_eq!(DartsGenotype::parse(text).unwrap(), DARTS_V2);
}

fn parse_err(text: &str) -> (usize, String) {
    match DartsGenotype::parse(text) {
        Err(SpaceError::Parse {
            position, message, ..
        }) => (position, message),
        other => panic!("{text:?} gave {other:?}"),
    }
}

#[test]
fn parse_errors_say_where_and_what() {
    let (p, m) = parse_err("");
    assert_eq!(p, 0);
    assert!(m.contains("Genotype"), "{m}");
    // Unknown op: points at the name.
    let bad = V2_TEXT.replacen("dil_conv_3x3", "dil_conv_7x7", 1);
    let (p, m) = parse_err(&bad);
    assert_eq!(p, V2_TEXT.find("dil_conv_3x3").unwrap());
    assert!(m.contains("unknown DARTS op \"dil_conv_7x7\""), "{m}");
    // Input out of range at node 2 (second edge).
    let bad = V2_TEXT.replacen("('sep_conv_3x3', 1)", "('sep_conv_3x3', 2)", 1);
    let (p, m) = parse_err(&bad);
    assert_eq!(p, V2_TEXT.find("('sep_conv_3x3', 1)").unwrap());
    assert!(m.contains("normal node 2 takes input 2"), "{m}");
    // Same input twice.
    let bad = V2_TEXT.replacen("('sep_conv_3x3', 1)", "('sep_conv_3x3', 0)", 1);
    let (_, m) = parse_err(&bad);
    assert!(m.contains("twice"), "{m}");
    // Another concat.
    let bad = V2_TEXT.replacen("normal_concat=[2, 3, 4, 5]", "normal_concat=[4, 5]", 1);
    let (p, m) = parse_err(&bad);
    assert_eq!(p, V2_TEXT.find("[2, 3, 4, 5]").unwrap());
    assert!(m.contains("[4, 5]"), "{m}");
    // Too few edges.
    let bad = V2_TEXT
        .replacen("('dil_conv_3x3', 2)", "", 1)
        .replacen(", ]", "]", 1);
    let (_, m) = parse_err(&bad);
    assert!(m.contains("7 edges"), "{m}");
    // Missing field.
    let bad = V2_TEXT.replacen(", reduce_concat=[2, 3, 4, 5]", "", 1);
    let (_, m) = parse_err(&bad);
    assert!(m.contains("reduce_concat"), "{m}");
    // Trailing garbage.
    let (p, _) = parse_err(&format!("{V2_TEXT} x"));
    assert_eq!(p, V2_TEXT.len() + 1);
    // Duplicate field.
    let bad = V2_TEXT.replacen("normal_concat", "normal", 1);
    let (_, m) = parse_err(&bad);
    assert!(m.contains("given twice"), "{m}");
}

#[test]
fn invalid_cells_are_rejected_by_validate_and_decode() {
    let mut g = DARTS_V2;
    g.normal.nodes[1][1].1 = 3;
    assert!(matches!(
        DartsSpace.validate(&g),
        Err(SpaceError::Invalid(_))
    ));
    let mut g = DARTS_V2;
    g.reduce.nodes[3][0].1 = g.reduce.nodes[3][1].1;
    assert!(DartsSpace.validate(&g).is_err());
    let mut d = DartsSpace.encode_decisions(&DARTS_V2);
    d[0] = 1; // node 2 has only one pair
    assert!(matches!(
        DartsSpace.decode_decisions(&d),
        Err(SpaceError::Encoding(_))
    ));
    assert!(DartsSpace.decode_decisions(&d[..5]).is_err());
}

#[test]
fn sampling_is_reproducible_and_uniform_over_ops() {
    let s = DartsSpace;
    let draw = |seed: u64| -> Vec<DartsGenotype> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..50).map(|_| s.sample(&mut rng)).collect()
    };
    assert_eq!(draw(3), draw(3));
    assert_ne!(draw(3), draw(4));
    // Op frequencies over 16 edges x 3000 samples: chi-square with 6 df, 0.1% point 22.46.
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut counts = [0usize; 7];
    let n = 3000;
    for _ in 0..n {
        let g = s.sample(&mut rng);
        for cell in g.cells() {
            for node in cell.nodes {
                for (op, _) in node {
                    counts[op.index()] += 1;
                }
            }
        }
    }
    let expected = (n * 16) as f64 / 7.0;
    let chi2: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 22.46, "chi2 {chi2} counts {counts:?}");
    // Input pairs of node 5 (10 pairs): chi-square with 9 df, 0.1% point 27.88.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut pairs = [0usize; 10];
    for _ in 0..n {
        let d = s.encode_decisions(&s.sample(&mut rng));
        pairs[d[9]] += 1;
    }
    let e = n as f64 / 10.0;
    let chi2: f64 = pairs.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
    assert!(chi2 < 27.88, "chi2 {chi2} pairs {pairs:?}");
}

/// Any valid genotype, with each node's edges in either order.
fn arb_genotype() -> impl Strategy<Value = DartsGenotype> {
    let sizes = DartsSpace.decisions();
    let choices: Vec<BoxedStrategy<usize>> = sizes.iter().map(|&n| (0..n).boxed()).collect();
    (choices, any::<u8>()).prop_map(|(c, swaps)| {
        let mut g = DartsSpace.decode_decisions(&c).unwrap();
        for k in 0..4 {
            if swaps & (1 << k) != 0 {
                g.normal.nodes[k].swap(0, 1);
            }
            if swaps & (1 << (k + 4)) != 0 {
                g.reduce.nodes[k].swap(0, 1);
            }
        }
        g
    })
}

/// The number of (cell, node, edge, field) entries that differ, edges compared in order.
fn raw_changes(a: &DartsGenotype, b: &DartsGenotype) -> usize {
    let mut n = 0;
    for (ca, cb) in a.cells().iter().zip(b.cells()) {
        for (na, nb) in ca.nodes.iter().zip(cb.nodes) {
            for (ea, eb) in na.iter().zip(nb) {
                n += usize::from(ea.0 != eb.0) + usize::from(ea.1 != eb.1);
            }
        }
    }
    n
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutation_changes_one_field_of_one_edge(g in arb_genotype(), seed in any::<u64>()) {
        let s = DartsSpace;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let m = s.mutate(&g, &mut rng);
        prop_assert!(s.validate(&m).is_ok());
        prop_assert_eq!(raw_changes(&g, &m), 1);
        prop_assert_eq!(s.distance(&g, &m), 1);
    }

    #[test]
    fn crossover_is_valid_and_takes_each_decision_from_a_parent(
        a in arb_genotype(), b in arb_genotype(), seed in any::<u64>()
    ) {
        let s = DartsSpace;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let c = s.crossover(&a, &b, &mut rng);
        prop_assert!(s.validate(&c).is_ok());
        let (da, db, dc) = (s.encode_decisions(&a), s.encode_decisions(&b), s.encode_decisions(&c));
        for i in 0..dc.len() {
            prop_assert!(dc[i] == da[i] || dc[i] == db[i]);
        }
    }

    #[test]
    fn neighbours_are_120_distinct_valid_at_distance_one(g in arb_genotype()) {
        let s = DartsSpace;
        let ns = s.neighbours(&g);
        prop_assert_eq!(ns.len(), 120);
        let canon: HashSet<String> = ns.iter().map(|n| s.canonical(n)).collect();
        prop_assert_eq!(canon.len(), 120);
        prop_assert!(!canon.contains(&s.canonical(&g)));
        for n in &ns {
            prop_assert!(s.validate(n).is_ok());
            prop_assert_eq!(s.distance(&g, n), 1);
            prop_assert_eq!(raw_changes(&g, n), 1);
        }
    }

    #[test]
    fn distance_is_symmetric_and_bounded_by_walk_length(
        g in arb_genotype(), seed in any::<u64>(), steps in 0usize..12
    ) {
        let s = DartsSpace;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut h = g;
        for _ in 0..steps {
            h = s.mutate(&h, &mut rng);
        }
        prop_assert!(s.distance(&g, &h) <= steps);
        prop_assert_eq!(s.distance(&g, &h), s.distance(&h, &g));
        prop_assert_eq!(s.distance(&g, &g.sorted()), 0);
    }

    #[test]
    fn text_json_and_decisions_round_trip(g in arb_genotype()) {
        let s = DartsSpace;
        prop_assert_eq!(s.parse(&s.to_text(&g)).unwrap(), g);
        let json = serde_json::to_string(&g).unwrap();
        prop_assert_eq!(serde_json::from_str::<DartsGenotype>(&json).unwrap(), g);
        let d = s.encode_decisions(&g);
        prop_assert_eq!(s.decode_decisions(&d).unwrap(), g.sorted());
        prop_assert_eq!(s.canonical(&g), s.canonical(&g.sorted()));
    }

    #[test]
    fn relabel_key_is_invariant_under_valid_node_renumbering(
        g in arb_genotype(), perm in Just([0usize, 1, 2, 3]).prop_shuffle()
    ) {
        let cell = g.normal;
        // Relabel node k -> perm[k]; keep it only when every input precedes its node.
        let mut out = DartsCell { nodes: cell.nodes };
        let mut ok = true;
        for k in 0..4 {
            let mut node = cell.nodes[k];
            for e in node.iter_mut() {
                if e.1 >= 2 {
                    e.1 = perm[e.1 - 2] + 2;
                }
                ok &= e.1 <= perm[k] + 1;
            }
            out.nodes[perm[k]] = node;
        }
        if ok {
            prop_assert!(out.validate().is_ok());
            prop_assert_eq!(out.relabel_key(), cell.relabel_key());
        }
        // The key is a cell equivalent to the input: same multiset of ops.
        let mut ops_a: Vec<DartsOp> = cell.nodes.iter().flatten().map(|e| e.0).collect();
        let mut ops_b: Vec<DartsOp> = cell.relabel_key().nodes.iter().flatten().map(|e| e.0).collect();
        ops_a.sort();
        ops_b.sort();
        prop_assert_eq!(ops_a, ops_b);
        prop_assert!(cell.relabel_key().validate().is_ok());
    }

    #[test]
    fn parser_never_panics_on_arbitrary_strings(text in ".{0,200}") {
        let _ = DartsGenotype::parse(&text);
    }

    #[test]
    fn parser_reports_errors_on_mutated_valid_strings(
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
        match DartsGenotype::parse(&m) {
            Ok(p) => prop_assert!(p.validate().is_ok()),
            Err(SpaceError::Parse { position, message, .. }) => {
                prop_assert!(position <= m.len());
                prop_assert!(!message.is_empty());
            }
            Err(e) => prop_assert!(false, "unexpected error kind {e:?}"),
        }
    }
}

#[test]
fn relabel_key_merges_swapped_independent_nodes() {
    use DartsOp::*;
    let a = DartsCell {
        nodes: [
            [(SepConv3x3, 0), (MaxPool3x3, 1)],
            [(SkipConnect, 0), (DilConv5x5, 1)],
            [(SepConv5x5, 2), (AvgPool3x3, 3)],
            [(SkipConnect, 4), (SepConv3x3, 2)],
        ],
    };
    // Nodes 2 and 3 swapped (both read only the cell inputs), references renamed.
    let b = DartsCell {
        nodes: [
            [(DilConv5x5, 1), (SkipConnect, 0)],
            [(SepConv3x3, 0), (MaxPool3x3, 1)],
            [(AvgPool3x3, 2), (SepConv5x5, 3)],
            [(SepConv3x3, 3), (SkipConnect, 4)],
        ],
    };
    assert!(a.validate().is_ok() && b.validate().is_ok());
    assert_ne!(a.sorted(), b.sorted());
    assert_eq!(a.relabel_key(), b.relabel_key());
    // Changing one op breaks the equivalence.
    let mut c = b;
    c.nodes[3][0].0 = SepConv5x5;
    assert_ne!(a.relabel_key(), c.relabel_key());
}

#[test]
fn constructors_check_their_input() {
    assert_eq!(DartsOp::from_primitive_index(0), None);
    assert_eq!(DartsOp::from_primitive_index(4), Some(DartsOp::SepConv3x3));
    assert_eq!(DartsOp::from_primitive_index(8), None);
    assert_eq!(
        DartsCell::new(DARTS_V2.normal.nodes).unwrap(),
        DARTS_V2.normal
    );
    let mut nodes = DARTS_V2.normal.nodes;
    nodes[0][1].1 = 0;
    assert!(DartsCell::new(nodes).is_err());
}
