//! The `SearchSpace` contract, checked the same way on every space.

use nas_space::SearchSpace;
use nas_space::chain::ChainSpace;
use nas_space::darts::DartsSpace;
use nas_space::nb101::Nb101Space;
use nas_space::nb201::Nb201Space;
use nas_space::rnn::RnnSpace;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// Drives a space through sample, mutate, crossover, neighbours, encodings and formats from a
/// seed, asserting the contract of each method.
fn check<S: SearchSpace>(space: &S, seed: u64, rounds: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sizes = space.decisions();
    assert!(sizes.iter().all(|&n| n >= 1));
    for _ in 0..rounds {
        let a = space.sample(&mut rng);
        let b = space.sample(&mut rng);
        space.validate(&a).unwrap();
        // Mutation: valid, one step away, and one of the listed neighbours.
        let m = space.mutate(&a, &mut rng);
        space.validate(&m).unwrap();
        assert_eq!(space.distance(&a, &m), 1, "{a:?} -> {m:?}");
        let ns = space.neighbours(&a);
        assert!(
            ns.contains(&m),
            "mutation {m:?} not among neighbours of {a:?}"
        );
        let distinct: HashSet<&S::Arch> = ns.iter().collect();
        assert_eq!(distinct.len(), ns.len());
        for n in &ns {
            space.validate(n).unwrap();
            assert_eq!(space.distance(&a, n), 1);
        }
        assert_eq!(ns, space.neighbours(&a), "neighbours must be deterministic");
        // Crossover of valid parents is valid; distance is a symmetric metric.
        let c = space.crossover(&a, &b, &mut rng);
        space.validate(&c).unwrap();
        assert_eq!(space.distance(&a, &b), space.distance(&b, &a));
        assert!(space.distance(&a, &b) <= space.distance(&a, &c) + space.distance(&c, &b));
        assert_eq!(space.distance(&a, &a), 0);
        // Formats round trip; the canonical key is stable through them.
        let t = space.parse(&space.to_text(&a)).unwrap();
        assert_eq!(t, a);
        let j: S::Arch = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(j, a);
        assert_eq!(space.canonical(&t), space.canonical(&a));
        // Decisions: in range, decode to a valid architecture with the same canonical key.
        let d = space.encode_decisions(&a);
        assert_eq!(d.len(), sizes.len());
        assert!(d.iter().zip(&sizes).all(|(&c, &n)| c < n));
        let back = space.decode_decisions(&d).unwrap();
        assert_eq!(space.canonical(&back), space.canonical(&a));
        let oh = space.one_hot(&a);
        assert_eq!(oh.len(), sizes.iter().sum::<usize>());
        assert_eq!(oh.iter().sum::<f32>(), sizes.len() as f32);
        // Out-of-range choices are an error, not a panic.
        let mut bad = d.clone();
        bad[0] = sizes[0];
        assert!(space.decode_decisions(&bad).is_err());
        assert!(space.decode_decisions(&d[..d.len() - 1]).is_err());
    }
    // Reproducible from the seed.
    let draw = |s: u64| {
        let mut r = ChaCha8Rng::seed_from_u64(s);
        (0..20).map(|_| space.sample(&mut r)).collect::<Vec<_>>()
    };
    assert_eq!(draw(seed), draw(seed));
}

#[test]
fn nb201_meets_the_contract() {
    check(&Nb201Space, 1, 200);
    assert_eq!(Nb201Space.name(), "nb201");
}

#[test]
fn darts_meets_the_contract() {
    check(&DartsSpace, 2, 200);
    assert_eq!(DartsSpace.name(), "darts");
}

#[test]
fn nb101_meets_the_contract() {
    check(&Nb101Space, 3, 200);
    assert_eq!(Nb101Space.name(), "nb101");
}

#[test]
fn rnn_meets_the_contract() {
    check(&RnnSpace, 6, 200);
    assert_eq!(RnnSpace.name(), "rnn");
}

#[test]
fn chain_meets_the_contract() {
    check(&ChainSpace::cnn(), 4, 200);
    check(&ChainSpace::mlp(), 5, 200);
    assert_eq!(ChainSpace::cnn().name(), "chain");
}

#[test]
fn spaces_are_usable_as_trait_objects() {
    let spaces: Vec<Box<dyn SearchSpace<Arch = nas_space::nb201::Nb201Cell>>> =
        vec![Box::new(Nb201Space)];
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let a = spaces[0].sample(&mut rng);
    assert!(spaces[0].validate(&a).is_ok());
}

fn json_round_trip<
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
>(
    x: &T,
) {
    let s = serde_json::to_string(x).unwrap();
    assert_eq!(&serde_json::from_str::<T>(&s).unwrap(), x, "{s}");
}

#[test]
fn every_public_type_round_trips_through_json() {
    use nas_space::chain::{ChainLayer, ChainOp};
    use nas_space::darts::{DARTS_V1, DartsOp};
    use nas_space::nb101::Nb101Op;
    use nas_space::nb201::{Nb201Cell, Nb201Op};
    for op in Nb201Op::ALL {
        json_round_trip(&op);
    }
    for op in DartsOp::ALL {
        json_round_trip(&op);
    }
    for op in Nb101Op::ALL {
        json_round_trip(&op);
    }
    for op in ChainOp::ALL {
        json_round_trip(&op);
        json_round_trip(&ChainLayer { op, width: 7 });
    }
    json_round_trip(&Nb201Cell::from_index(1234).unwrap());
    json_round_trip(&DARTS_V1);
    json_round_trip(&DARTS_V1.reduce);
    json_round_trip(&Nb201Space);
    json_round_trip(&DartsSpace);
    json_round_trip(&RnnSpace);
    json_round_trip(&nas_space::rnn::DARTS_V2_RNN);
    json_round_trip(&Nb101Space);
    json_round_trip(&ChainSpace::mlp());
    let e = nas_space::nb201::Nb201Cell::parse("|x").unwrap_err();
    assert!(e.to_string().starts_with("parse error at byte 1: "), "{e}");
}
