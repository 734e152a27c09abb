//! NAS-Bench-201 space: the published table, canonical forms, moves, formats, sampling.

use flate2::read::GzDecoder;
use nas_space::nb201::{EDGES, Nb201Cell, Nb201Op, Nb201Space};
use nas_space::{SearchSpace, SpaceError};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};
use std::io::Read;

/// The exact number of classes of our algebraic normal form over the 15,625 cells.
const NORMAL_FORM_CLASSES: usize = 4_930;
/// The number of distinct `isomorph_class` strings in the table.
const BENCHMARK_CLASSES: usize = 6_466;

/// (arch_str, isomorph_class) of every row of the shipped table.
fn table() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/nb201/nb201_combined.csv.gz"
    );
    let file = std::fs::File::open(path).expect("shipped NB201 table");
    let mut text = String::new();
    GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gzip CSV");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let arch_col = header.iter().position(|&h| h == "arch_str").unwrap();
    let iso_col = header.iter().position(|&h| h == "isomorph_class").unwrap();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[arch_col].to_string(), f[iso_col].to_string())
        })
        .collect()
}

#[test]
fn table_parses_prints_and_covers_the_space() {
    let rows = table();
    assert_eq!(rows.len(), 15_625);
    let mut seen = HashSet::new();
    for (arch, _) in &rows {
        let cell = Nb201Cell::parse(arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(&cell.to_string(), arch);
        assert!(seen.insert(cell), "duplicate row {arch}");
    }
    let all: HashSet<Nb201Cell> = Nb201Cell::all().collect();
    assert_eq!(all, seen);
}

#[test]
fn isomorph_class_reproduces_the_benchmark_column() {
    let rows = table();
    let mut classes = HashSet::new();
    for (arch, iso) in &rows {
        let cell = Nb201Cell::parse(arch).unwrap();
        assert_eq!(&cell.isomorph_class(), iso, "row {arch}");
        classes.insert(iso.clone());
    }
    assert_eq!(classes.len(), BENCHMARK_CLASSES);
}

/// The NB201 partition test: our normal form is coarser than the benchmark's classes (every
/// benchmark class inside exactly one of ours) and has exactly `NORMAL_FORM_CLASSES` classes.
#[test]
fn normal_form_partition_refines_to_benchmark_classes() {
    let rows = table();
    let mut bench_to_ours: HashMap<String, String> = HashMap::new();
    let mut ours = HashSet::new();
    for (arch, iso) in &rows {
        let nf = Nb201Cell::parse(arch).unwrap().normal_form();
        ours.insert(nf.clone());
        let prev = bench_to_ours
            .entry(iso.clone())
            .or_insert_with(|| nf.clone());
        assert_eq!(
            prev, &nf,
            "benchmark class {iso} split across two normal forms"
        );
    }
    assert_eq!(bench_to_ours.len(), BENCHMARK_CLASSES);
    assert_eq!(ours.len(), NORMAL_FORM_CLASSES);
    // Strictly coarser: some of our classes hold several benchmark classes.
    let images: HashSet<&String> = bench_to_ours.values().collect();
    assert_eq!(images.len(), NORMAL_FORM_CLASSES);
}

#[test]
fn normal_form_merges_differently_nested_sums() {
    // x + conv(x) reached directly at node 3, or summed at node 2 and skipped to node 3.
    let a =
        Nb201Cell::parse("|none~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|")
            .unwrap();
    let b = Nb201Cell::parse(
        "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|skip_connect~1|skip_connect~2|",
    )
    .unwrap();
    let c =
        Nb201Cell::parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|")
            .unwrap();
    // a: node 1 is zero so conv(node1) is zero: output is x. Not equal to b.
    assert_eq!(a.normal_form(), "x");
    assert_eq!(b.normal_form(), "nor_conv_3x3(x)+x");
    assert_eq!(c.normal_form(), "nor_conv_3x3(x)+x");
    let d = Nb201Cell::parse(
        "|skip_connect~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
    )
    .unwrap();
    assert_eq!(d.normal_form(), "nor_conv_3x3(x)+x");
    assert_ne!(c.isomorph_class(), d.isomorph_class());
    let zero = Nb201Cell::default();
    assert_eq!(zero.normal_form(), "0");
    assert!(zero.is_zero());
    assert_eq!(zero.isomorph_class(), "#+#+#");
}

#[test]
fn edges_and_index_round_trip() {
    assert_eq!(EDGES[2], (1, 2));
    assert_eq!(Nb201Cell::edge_source_target(5), (2, 3));
    assert_eq!(Nb201Cell::edge_index(1, 3), Some(4));
    assert_eq!(Nb201Cell::edge_index(3, 1), None);
    for (i, cell) in Nb201Cell::all().enumerate() {
        assert_eq!(cell.index(), i);
    }
    assert_eq!(Nb201Cell::all().count(), 15_625);
    assert_eq!(Nb201Cell::from_index(15_625), None);
}

#[test]
fn op_names_round_trip_and_reject_unknown() {
    for op in Nb201Op::ALL {
        assert_eq!(op.as_str().parse::<Nb201Op>().unwrap(), op);
        assert_eq!(Nb201Op::from_index(op.index()), Some(op));
    }
    assert!("conv_3x3".parse::<Nb201Op>().is_err());
}

#[test]
fn parse_errors_say_where_and_what() {
    let good = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "expected \"|\""),
        ("|conv~0|", 1, "unknown NAS-Bench-201 op \"conv\""),
        ("|nor_conv_3x3~1|", 14, "must come from node 0"),
        ("|nor_conv_3x3~0|+|none~0|", 25, "expected an op name"),
        ("|nor_conv_3x3~0", 15, "expected \"|\""),
        ("|nor_conv_3x3~x", 14, "expected a number"),
        ("|none~99999999999999999999999|", 6, "too large"),
    ];
    for &(text, pos, what) in cases {
        match Nb201Cell::parse(text) {
            Err(SpaceError::Parse {
                position, message, ..
            }) => {
                assert_eq!(position, pos, "{text:?}: {message}");
                assert!(message.contains(what), "{text:?}: {message}");
            }
            other => panic!("{text:?} gave {other:?}"),
        }
    }
    let trailing = format!("{good}x");
    match Nb201Cell::parse(&trailing) {
        Err(SpaceError::Parse { position, .. }) => assert_eq!(position, good.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn encodings_have_the_documented_shape() {
    let s = Nb201Space;
    let cell = Nb201Cell::parse(
        "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|",
    )
    .unwrap();
    let oh = s.one_hot(&cell);
    assert_eq!(oh.len(), 30);
    assert_eq!(oh.iter().sum::<f32>(), 6.0);
    assert_eq!(oh[3], 1.0); // edge 0 = nor_conv_3x3 (index 3)
    let p = cell.path_encoding();
    assert_eq!(p.len(), 84);
    // Paths: [skip] via edge 3; (0,4): edge 4 none; (1,5): edge 1 none; (0,2,5): conv3, pool, conv1.
    assert_eq!(p.iter().sum::<f32>(), 2.0);
    assert_eq!(p[0], 1.0); // skip_connect alone
    let idx3 = 20 + (2 * 16 + 3 * 4 + 1); // conv3x3(2), avg_pool(3), conv1x1(1)
    assert_eq!(p[idx3], 1.0);
    let a = cell.adjacency_encoding();
    assert_eq!(a.len(), 58);
    let adj = cell.vertex_adjacency();
    assert!(adj[0][1] && adj[1][3] && adj[3][6] && adj[6][7] && adj[0][4] && adj[4][7]);
    assert!(!adj[0][2] && !adj[2][6]); // edge 1 is none
}

#[test]
fn sampling_is_reproducible_and_uniform() {
    let s = Nb201Space;
    let draw = |seed: u64| -> Vec<Nb201Cell> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..200).map(|_| s.sample(&mut rng)).collect()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));

    // Chi-square on (edge, op) frequencies: 6 independent 5-way tests, df = 4 each, summed
    // to df = 24; the 0.1% critical value of chi2(24) is 51.18.
    let n = 20_000usize;
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut counts = [[0usize; 5]; 6];
    for _ in 0..n {
        let c = s.sample(&mut rng);
        for e in 0..6 {
            counts[e][c.ops[e].index()] += 1;
        }
    }
    let expected = n as f64 / 5.0;
    let chi2: f64 = counts
        .iter()
        .flatten()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 51.18, "chi2 = {chi2}, counts {counts:?}");
    // And a biased sampler would fail: shift 3% of the mass on one op of one edge.
    let mut biased = counts;
    biased[0][0] += n / 30;
    biased[0][1] -= n / 30;
    let chi2b: f64 = biased
        .iter()
        .flatten()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    assert!(chi2b > 51.18, "biased chi2 = {chi2b}");
}

fn arb_cell() -> impl Strategy<Value = Nb201Cell> {
    (0usize..15_625).prop_map(|i| Nb201Cell::from_index(i).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutation_changes_exactly_one_edge(cell in arb_cell(), seed in any::<u64>()) {
        let s = Nb201Space;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let m = s.mutate(&cell, &mut rng);
        prop_assert!(s.validate(&m).is_ok());
        prop_assert_eq!(s.distance(&cell, &m), 1);
    }

    #[test]
    fn crossover_takes_each_edge_from_a_parent(a in arb_cell(), b in arb_cell(), seed in any::<u64>()) {
        let s = Nb201Space;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let c = s.crossover(&a, &b, &mut rng);
        prop_assert!(s.validate(&c).is_ok());
        for e in 0..6 {
            prop_assert!(c.ops[e] == a.ops[e] || c.ops[e] == b.ops[e]);
        }
        prop_assert_eq!(s.distance(&a, &c) + s.distance(&c, &b), s.distance(&a, &b));
    }

    #[test]
    fn neighbours_are_24_distinct_at_distance_one(cell in arb_cell()) {
        let s = Nb201Space;
        let ns = s.neighbours(&cell);
        prop_assert_eq!(ns.len(), 24);
        let set: HashSet<_> = ns.iter().collect();
        prop_assert_eq!(set.len(), 24);
        for n in &ns {
            prop_assert_eq!(s.distance(&cell, n), 1);
            prop_assert!(s.validate(n).is_ok());
        }
    }

    #[test]
    fn text_json_and_decisions_round_trip(cell in arb_cell()) {
        let s = Nb201Space;
        prop_assert_eq!(s.parse(&s.to_text(&cell)).unwrap(), cell);
        let json = serde_json::to_string(&cell).unwrap();
        prop_assert_eq!(serde_json::from_str::<Nb201Cell>(&json).unwrap(), cell);
        let d = s.encode_decisions(&cell);
        prop_assert_eq!(s.decode_decisions(&d).unwrap(), cell);
    }

    #[test]
    fn swapping_independent_nodes_keeps_the_normal_form(cell in arb_cell()) {
        // With edge 1->2 absent, nodes 1 and 2 are interchangeable: swap their edges. (The
        // benchmark's string is not invariant here: it keeps a `#` for the absent edge 1->2,
        // which node 2 has and node 1 lacks.)
        let mut a = cell;
        a.ops[2] = Nb201Op::None;
        let mut b = a;
        b.ops.swap(0, 1);
        b.ops.swap(4, 5);
        prop_assert_eq!(a.normal_form(), b.normal_form());
        prop_assert_eq!(Nb201Space.canonical(&a), Nb201Space.canonical(&b));
    }

    #[test]
    fn skip_into_a_zero_node_is_a_no_op(cell in arb_cell()) {
        // If node 1 is zero (edge 0 none), the ops on edges out of node 1 do not matter.
        let mut a = cell;
        a.ops[0] = Nb201Op::None;
        for op2 in Nb201Op::ALL {
            for op4 in Nb201Op::ALL {
                let mut b = a;
                b.ops[2] = op2;
                b.ops[4] = op4;
                prop_assert_eq!(a.normal_form(), b.normal_form());
            }
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_strings(text in ".{0,120}") {
        let _ = Nb201Cell::parse(&text);
    }

    #[test]
    fn parser_reports_errors_on_mutated_valid_strings(
        cell in arb_cell(),
        pos in any::<prop::sample::Index>(),
        byte in any::<char>(),
        mode in 0usize..3,
    ) {
        let text = cell.to_string();
        let chars: Vec<char> = text.chars().collect();
        let i = pos.index(chars.len());
        let mut m = chars.clone();
        match mode {
            0 => { m.remove(i); }
            1 => { m.insert(i, byte); }
            _ => { m[i] = byte; }
        }
        let m: String = m.into_iter().collect();
        match Nb201Cell::parse(&m) {
            Ok(c) => prop_assert_eq!(Nb201Cell::parse(&c.to_string()).unwrap(), c),
            Err(SpaceError::Parse { position, message, .. }) => {
                prop_assert!(position <= m.len());
                prop_assert!(!message.is_empty());
            }
            Err(e) => prop_assert!(false, "unexpected error kind {e:?}"),
        }
    }
}
