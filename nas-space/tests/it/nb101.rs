//! NAS-Bench-101 style space: validity, pruning, isomorphism hash, moves, formats.

use nas_space::nb101::{Nb101Arch, Nb101Op, Nb101Space};
use nas_space::{SearchSpace, SpaceError};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};

fn arch(rows: &[&str], ops: &[Nb101Op]) -> Nb101Arch {
    let matrix = rows
        .iter()
        .map(|r| r.bytes().map(|b| b == b'1').collect())
        .collect();
    Nb101Arch::new(matrix, ops.to_vec()).unwrap()
}

use Nb101Op::{Conv1x1BnRelu as C1, Conv3x3BnRelu as C3, MaxPool3x3 as MP};

#[test]
fn enumeration_gives_the_published_count() {
    assert_eq!(Nb101Space::count_unique_graphs(7), 423_624);
    assert_eq!(Nb101Space.size(), Some(423_624));
}

/// A brute-force key: the smallest (matrix, ops) over all permutations of interior vertices
/// (no colour refinement, no packing), on the pruned graph.
/// (vertex count, matrix, interior ops) of a relabelled graph.
type Key = (usize, Vec<Vec<bool>>, Vec<Nb101Op>);

fn brute_key(a: &Nb101Arch) -> Key {
    let p = a.prune().unwrap();
    let n = p.num_vertices();
    let interior: Vec<usize> = (1..n - 1).collect();
    let mut best: Option<Key> = None;
    for perm in permutations(&interior) {
        // new vertex k (1..n-1) is old vertex perm[k-1]
        let mut order = vec![0];
        order.extend(&perm);
        order.push(n - 1);
        let matrix: Vec<Vec<bool>> = (0..n)
            .map(|i| (0..n).map(|j| p.matrix[order[i]][order[j]]).collect())
            .collect();
        let ops: Vec<Nb101Op> = perm.iter().map(|&v| p.ops[v - 1]).collect();
        let key = (n, matrix, ops);
        if best.as_ref().is_none_or(|b| key < *b) {
            best = Some(key);
        }
    }
    best.unwrap()
}

fn permutations(xs: &[usize]) -> Vec<Vec<usize>> {
    if xs.is_empty() {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for i in 0..xs.len() {
        let mut rest = xs.to_vec();
        let x = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, x);
            out.push(p);
        }
    }
    out
}

#[test]
fn iso_hash_agrees_with_brute_force_isomorphism_up_to_6_vertices() {
    let mut by_hash: HashMap<u64, Key> = HashMap::new();
    let mut keys = HashSet::new();
    let mut graphs = 0;
    Nb101Space::for_each_pruned_graph(6, |a| {
        graphs += 1;
        let key = brute_key(a);
        keys.insert(key.clone());
        let prev = by_hash.entry(a.iso_hash()).or_insert_with(|| key.clone());
        assert_eq!(*prev, key, "hash collision or split at {a}");
    });
    assert_eq!(graphs, 128_509);
    // Same number of classes both ways: the hash neither splits nor merges classes.
    assert_eq!(by_hash.len(), keys.len());
    assert_eq!(keys.len(), 64_542);
}

#[test]
fn pruning_removes_dead_vertices_and_rejects_disconnected_graphs() {
    // Vertex 2 has no input; vertex 3 has no path to the output.
    let a = arch(
        &["01000", "00011", "00001", "00000", "00000"],
        &[C3, MP, C1],
    );
    assert!(a.validate().is_ok());
    let p = a.prune().unwrap();
    assert_eq!(p, arch(&["010", "001", "000"], &[C3]));
    assert_eq!(p.num_vertices(), 3);
    assert_eq!(p.ops, vec![C3]);
    assert_eq!(a.iso_hash(), p.iso_hash());
    let none = arch(&["010", "000", "000"], &[MP]);
    assert!(matches!(none.prune(), Err(SpaceError::Invalid(_))));
    assert!(none.validate().is_err());
    assert_ne!(none.iso_hash() >> 63, 0);
}

#[test]
fn validity_limits_edges_after_pruning() {
    // Complete 7-vertex DAG: 21 edges, invalid.
    let full: Vec<String> = (0..7)
        .map(|i| (0..7).map(|j| if j > i { '1' } else { '0' }).collect())
        .collect();
    let rows: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
    let a = arch(&rows, &[C3; 5]);
    let e = a.validate().unwrap_err();
    assert!(e.to_string().contains("21 edges after pruning"), "{e}");
    // Lower-triangular entries and bad op counts are shape errors.
    let mut m = vec![vec![false; 3]; 3];
    m[2][0] = true;
    assert!(Nb101Arch::new(m, vec![C3]).is_err());
    assert!(Nb101Arch::new(vec![vec![false; 3]; 3], vec![]).is_err());
    assert!(Nb101Arch::new(vec![vec![false; 8]; 8], vec![C3; 6]).is_err());
}

#[test]
fn encodings_have_the_documented_shape() {
    // input -> 1(conv3) -> 2(pool) -> output, plus input -> output.
    let a = arch(&["0101", "0010", "0001", "0000"], &[C3, MP]);
    let paths = a.paths();
    assert_eq!(paths.len(), 2);
    assert!(paths.contains(&vec![]) && paths.contains(&vec![C3, MP]));
    let p = a.path_encoding();
    assert_eq!(p.len(), 364);
    assert_eq!(p.iter().sum::<f32>(), 2.0);
    assert_eq!(p[0], 1.0);
    assert_eq!(p[1 + 3 + 2], 1.0); // length 2, digits (0, 2)
    let adj = a.adjacency_encoding();
    assert_eq!(adj.len(), 36);
    // 7-vertex form: 0->1, 1->2, 2->6, 0->6.
    assert_eq!(adj[..21].iter().sum::<f32>(), 4.0);
    assert_eq!(Nb101Space.one_hot(&a).len(), 21 * 2 + 5 * 3);
}

#[test]
fn parse_errors_say_where_and_what() {
    let good = "ModelSpec(matrix=[[0, 1, 0], [0, 0, 1], [0, 0, 0]], ops=['input', 'maxpool3x3', 'output'])";
    assert!(Nb101Arch::parse(good).is_ok());
    let cases: &[(&str, &str, &str)] = &[
        ("maxpool3x3", "maxpool5x5", "unknown NAS-Bench-101 op"),
        ("[0, 0, 1], [0", "[0, 0, 2], [0", "not 0 or 1"),
        ("'input'", "'inp'", "first op must be 'input'"),
        ("[0, 0, 1], [0, 0, 0]]", "[0, 0, 1]]", "not square"),
        ("[[0, 1, 0], [0, 0, 1]", "[[0, 0, 0], [0, 0, 1]", "no path"),
        (
            "[0, 0, 1], [0, 0, 0]]",
            "[0, 1, 1], [0, 0, 0]]",
            "not strictly upper",
        ),
    ];
    for &(from, to, what) in cases {
        let bad = good.replacen(from, to, 1);
        match Nb101Arch::parse(&bad) {
            Err(SpaceError::Parse {
                position, message, ..
            }) => {
                assert!(message.contains(what), "{bad}: {message}");
                assert!(position < bad.len());
            }
            other => panic!("{bad} gave {other:?}"),
        }
    }
    // Lower-triangle entry (row 2, col 0) is reported too.
    let bad = good.replacen("[0, 0, 0]]", "[1, 0, 0]]", 1);
    assert!(Nb101Arch::parse(&bad).is_err());
    // Position of an unknown op is the op's byte offset.
    let bad = good.replacen("maxpool3x3", "maxpool5x5", 1);
    match Nb101Arch::parse(&bad) {
        Err(SpaceError::Parse { position, .. }) => {
            assert_eq!(position, bad.find("maxpool5x5").unwrap())
        }
        other => panic!("{other:?}"),
    }
    // Unwrapped form and double quotes are accepted.
    let bare = "matrix=[[0,1],[0,0]], ops=[\"input\", \"output\"]";
    assert_eq!(Nb101Arch::parse(bare).unwrap().num_vertices(), 2);
}

#[test]
fn sampling_is_reproducible_and_valid() {
    let s = Nb101Space;
    let draw = |seed: u64| -> Vec<Nb101Arch> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..100).map(|_| s.sample(&mut rng)).collect()
    };
    let a = draw(11);
    assert_eq!(a, draw(11));
    assert_ne!(a, draw(12));
    assert!(a.iter().all(|x| x.is_valid() && x.num_vertices() == 7));
    // Ops of sampled graphs are uniform: chi-square, 2 df, 0.1% point 13.82.
    let mut counts = [0usize; 3];
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..2000 {
        for op in s.sample(&mut rng).ops {
            counts[op.index()] += 1;
        }
    }
    let e = 10_000.0 / 3.0;
    let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
    assert!(chi2 < 13.82, "{chi2} {counts:?}");
}

/// A valid 7-vertex graph drawn by the space's sampler from a seed.
fn arb_arch() -> impl Strategy<Value = Nb101Arch> {
    any::<u64>().prop_map(|seed| Nb101Space.sample(&mut ChaCha8Rng::seed_from_u64(seed)))
}

/// Relabels the interior vertices along a random topological order (keeps the matrix upper
/// triangular, so the result is again an architecture of the space).
fn relabel(a: &Nb101Arch, seed: u64) -> Nb101Arch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = a.num_vertices();
    let mut order = vec![0];
    let mut placed = vec![false; n];
    placed[0] = true;
    placed[n - 1] = true;
    while order.len() < n - 1 {
        let ready: Vec<usize> = (1..n - 1)
            .filter(|&v| !placed[v] && (0..n).all(|u| !a.matrix[u][v] || placed[u] && u != n - 1))
            .collect();
        let v = ready[rng.random_range(0..ready.len())];
        placed[v] = true;
        order.push(v);
    }
    order.push(n - 1);
    let matrix = (0..n)
        .map(|i| (0..n).map(|j| a.matrix[order[i]][order[j]]).collect())
        .collect();
    let ops = order[1..n - 1].iter().map(|&v| a.ops[v - 1]).collect();
    Nb101Arch::new(matrix, ops).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn mutation_is_valid_and_one_step(a in arb_arch(), seed in any::<u64>()) {
        let s = Nb101Space;
        let m = s.mutate(&a, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert!(m.is_valid());
        prop_assert_eq!(s.distance(&a, &m), 1);
    }

    #[test]
    fn neighbours_are_exactly_the_valid_one_decision_changes(a in arb_arch()) {
        let s = Nb101Space;
        let ns = s.neighbours(&a);
        let d = s.encode_decisions(&a);
        let sizes = s.decisions();
        let mut expected = Vec::new();
        for i in 0..d.len() {
            for c in 0..sizes[i] {
                if c != d[i] {
                    let mut e = d.clone();
                    e[i] = c;
                    if let Ok(x) = s.decode_decisions(&e) {
                        expected.push(x);
                    }
                }
            }
        }
        prop_assert_eq!(&ns, &expected);
        prop_assert!(ns.len() >= 10 && ns.len() <= 31);
        for n in &ns {
            prop_assert!(n.is_valid());
            prop_assert_eq!(s.distance(&a, n), 1);
        }
    }

    #[test]
    fn crossover_is_valid_and_mixes_decisions(a in arb_arch(), b in arb_arch(), seed in any::<u64>()) {
        let s = Nb101Space;
        let c = s.crossover(&a, &b, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert!(c.is_valid());
        let (da, db, dc) = (s.encode_decisions(&a), s.encode_decisions(&b), s.encode_decisions(&c));
        for i in 0..dc.len() {
            prop_assert!(dc[i] == da[i] || dc[i] == db[i]);
        }
    }

    #[test]
    fn text_json_and_decisions_round_trip(a in arb_arch()) {
        let s = Nb101Space;
        prop_assert_eq!(s.parse(&s.to_text(&a)).unwrap(), a.clone());
        let p = a.prune().unwrap();
        prop_assert_eq!(s.parse(&s.to_text(&p)).unwrap(), p.clone());
        let json = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(serde_json::from_str::<Nb101Arch>(&json).unwrap(), a.clone());
        prop_assert_eq!(s.decode_decisions(&s.encode_decisions(&a)).unwrap(), a.clone());
        prop_assert_eq!(p.to_full().prune().unwrap(), p);
    }

    #[test]
    fn hash_and_canonical_are_invariant_under_relabelling(a in arb_arch(), seed in any::<u64>()) {
        let s = Nb101Space;
        let b = relabel(&a, seed);
        prop_assert!(b.is_valid());
        prop_assert_eq!(a.iso_hash(), b.iso_hash());
        prop_assert_eq!(s.canonical(&a), s.canonical(&b));
        prop_assert_eq!(a.path_encoding(), b.path_encoding());
        let p = a.prune().unwrap();
        prop_assert_eq!(a.iso_hash(), p.iso_hash());
        prop_assert_eq!(a.iso_hash(), p.to_full().iso_hash());
        let pb = relabel(&p, seed ^ 1);
        prop_assert_eq!(p.iso_hash(), pb.iso_hash());
    }

    #[test]
    fn changing_an_op_on_a_path_changes_the_hash(a in arb_arch(), v in 0usize..5, k in 1usize..3) {
        // An interior vertex that survives pruning: changing its op changes the multiset of
        // ops, so the graphs cannot be isomorphic.
        let keep = a.prune().unwrap();
        let mut b = a.clone();
        b.ops[v] = Nb101Op::ALL[(a.ops[v].index() + k) % 3];
        let kb = b.prune().unwrap();
        let count = |x: &Nb101Arch| { let mut o = x.ops.clone(); o.sort(); o };
        if count(&keep) != count(&kb) {
            prop_assert_ne!(a.iso_hash(), b.iso_hash());
        } else {
            prop_assert_eq!(a.iso_hash(), b.iso_hash());
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_strings(text in ".{0,200}") {
        let _ = Nb101Arch::parse(&text);
    }

    #[test]
    fn parser_reports_errors_on_mutated_valid_strings(
        a in arb_arch(),
        pos in any::<prop::sample::Index>(),
        ch in any::<char>(),
        mode in 0usize..3,
    ) {
        let text = a.to_string();
        let mut chars: Vec<char> = text.chars().collect();
        let i = pos.index(chars.len());
        match mode {
            0 => { chars.remove(i); }
            1 => { chars.insert(i, ch); }
            _ => { chars[i] = ch; }
        }
        let m: String = chars.into_iter().collect();
        match Nb101Arch::parse(&m) {
            Ok(p) => prop_assert!(p.is_valid()),
            Err(SpaceError::Parse { position, message, .. }) => {
                prop_assert!(position <= m.len());
                prop_assert!(!message.is_empty());
            }
            Err(e) => prop_assert!(false, "unexpected error kind {e:?}"),
        }
    }
}
