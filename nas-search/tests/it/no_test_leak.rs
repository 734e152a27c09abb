//! No strategy's choice ever reads a test column of the NAS-Bench-201 table.
//!
//! A poisoned copy of the table keeps every validation column and replaces both test columns
//! (200-epoch and 12-epoch) with pseudo-random accuracies. Every strategy of the crate runs the
//! same seeded search on the real and on the poisoned table: the candidates it asks, the
//! fidelities, the scores it sees and its final choice must be identical. A strategy (or an
//! evaluator fidelity) that looked at test accuracy anywhere would see different numbers and,
//! with overwhelming probability, ask or choose differently; the test checks that the poison
//! is strong enough to change a test-based choice.

use nas_search::strategy::{ControllerConfig, LstmController, Tpe, TpeConfig};
use nas_search::tabular::{Dataset, HEADER, Nb201Evaluator, Nb201Table};
use nas_search::{Budget, SearchConfig, Strategy, StrategyKind, run_search};
use nas_space::SearchSpace;
use nas_space::nb201::{Nb201Cell, Nb201Space};
use std::sync::Arc;

/// SplitMix64 of `x`, mapped to an accuracy in [10, 95).
fn poison(x: u64) -> f64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    10.0 + 85.0 * (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The table with its validation columns kept and its test columns replaced by noise.
fn poisoned(real: &Nb201Table) -> Nb201Table {
    let mut csv = String::from(HEADER);
    csv.push('\n');
    for r in real.rows() {
        let i = r.index as u64 * 8;
        let p = |k: u64| poison(i + k);
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.index,
            r.cell,
            p(0),
            p(1),
            p(2),
            p(3),
            r.valid_12[0],
            p(4),
            r.valid_12[1],
            p(5),
            r.valid_12[2],
            r.isomorph_class
        ));
    }
    Nb201Table::from_csv(&csv, "<poisoned>").expect("the poisoned table parses")
}

/// Every strategy the crate has, with a budget that suits it.
fn strategies() -> Vec<(String, Box<dyn Strategy<Nb201Space>>, Budget)> {
    let mut out: Vec<(String, Box<dyn Strategy<Nb201Space>>, Budget)> = Vec::new();
    for spec in [
        "random",
        "rea",
        "reinforce",
        "local",
        "hyperband",
        "hyperband:brackets=1:eta=4",
        "bananas",
        "bohb",
        "nsga2",
        "pareto",
    ] {
        let kind = StrategyKind::parse(spec).unwrap();
        let budget = if kind.fidelities(12).len() > 1 {
            Budget::cost(6000.0)
        } else {
            Budget::evaluations(120)
        };
        out.push((spec.to_string(), kind.build(&Nb201Space).unwrap(), budget));
    }
    out.push((
        "tpe".into(),
        Box::new(Tpe::new(TpeConfig::default()).unwrap()),
        Budget::evaluations(120),
    ));
    let mut flops = StrategyKind::parse("nsga2").unwrap();
    flops.set_objectives(nas_search::pareto::Objectives::parse("acc,flops").unwrap());
    out.push((
        "nsga2 acc,flops".into(),
        flops.build(&Nb201Space).unwrap(),
        Budget::evaluations(120),
    ));
    let lstm = LstmController::new(ControllerConfig::default(), &Nb201Space.decisions()).unwrap();
    out.push((
        "lstm-controller".into(),
        Box::new(lstm),
        Budget::evaluations(60),
    ));
    out
}

#[test]
fn no_strategy_reads_a_test_column() {
    let real = Nb201Table::embedded().unwrap();
    let fake = Arc::new(poisoned(&real));
    // The poison keeps what the search may see and changes what it must not.
    for (a, b) in real.rows().iter().zip(fake.rows()) {
        assert_eq!((a.cell, a.valid_12), (b.cell, b.valid_12));
    }
    let names_real: Vec<String> = strategies().into_iter().map(|s| s.0).collect();
    let mut checked = 0;
    let mut test_choice_differs = 0;
    for dataset in [Dataset::Cifar10, Dataset::Cifar100] {
        let c = dataset.column();
        let ev_real = Nb201Evaluator::new(real.clone(), dataset);
        let ev_fake = Nb201Evaluator::new(fake.clone(), dataset);
        for seed in [3u64, 17] {
            let runs = strategies().into_iter().zip(strategies());
            for ((name, mut s_real, budget), (_, mut s_fake, _)) in runs {
                let cfg = SearchConfig::new(seed, budget);
                let a = run_search(&Nb201Space, s_real.as_mut(), &ev_real, &cfg).unwrap();
                let b = run_search(&Nb201Space, s_fake.as_mut(), &ev_fake, &cfg).unwrap();
                assert!(a.history.len() >= 20, "{name}: {}", a.history.len());
                assert_eq!(
                    a.history.len(),
                    b.history.len(),
                    "{name} {dataset:?} {seed}"
                );
                for (x, y) in a.history.trials.iter().zip(&b.history.trials) {
                    assert_eq!(
                        (x.arch, x.fidelity, x.score()),
                        (y.arch, y.fidelity, y.score()),
                        "{name} on {dataset:?}, seed {seed}, trial {}: the search saw a test column",
                        x.id
                    );
                    // The poison did reach the reported column.
                    let (tx, ty) = (
                        x.metrics().unwrap().test_accuracy.unwrap(),
                        y.metrics().unwrap().test_accuracy.unwrap(),
                    );
                    assert_eq!(tx, real.get(&x.arch).test_200[c]);
                    assert_eq!(ty, fake.get(&y.arch).test_200[c]);
                }
                let (ca, cb) = (a.best().unwrap().arch, b.best().unwrap().arch);
                assert_eq!(ca, cb, "{name} on {dataset:?}, seed {seed}: final choice");
                // Power of the check: choosing by the test column among the same evaluated
                // cells would (usually) pick differently on the two tables.
                let by_test = |t: &Nb201Table| -> Nb201Cell {
                    a.history
                        .trials
                        .iter()
                        .map(|x| x.arch)
                        .max_by(|p, q| t.get(p).test_200[c].total_cmp(&t.get(q).test_200[c]))
                        .unwrap()
                };
                if by_test(&real) != by_test(&fake) {
                    test_choice_differs += 1;
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, names_real.len() * 4);
    assert!(
        test_choice_differs * 10 >= checked * 9,
        "the poison changed a test-based choice in only {test_choice_differs} of {checked} runs"
    );
}

/// The evaluator itself: at every fidelity it serves, the search-visible accuracy comes from a
/// validation column (equal on both tables) and the reported one from the test column.
#[test]
fn every_fidelity_shows_validation_accuracy() {
    use nas_search::{EvalRequest, Evaluator};
    let real = Nb201Table::embedded().unwrap();
    let fake = Arc::new(poisoned(&real));
    for dataset in Dataset::ALL {
        let (er, ef) = (
            Nb201Evaluator::new(real.clone(), dataset),
            Nb201Evaluator::new(fake.clone(), dataset),
        );
        for row in real.rows().iter().step_by(97) {
            for fidelity in [12, 200] {
                let req = EvalRequest {
                    arch: &row.cell,
                    fidelity,
                    trial_id: 0,
                    seed: 0,
                    deadline: None,
                };
                let (mr, mf) = (er.evaluate(&req).unwrap(), ef.evaluate(&req).unwrap());
                assert_eq!(mr.valid_accuracy, mf.valid_accuracy, "fidelity {fidelity}");
                assert_ne!(mr.test_accuracy, mf.test_accuracy);
            }
        }
    }
}
