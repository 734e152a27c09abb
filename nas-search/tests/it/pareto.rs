//! Multi-objective search: non-dominated sorting, crowding distance and hypervolume on
//! hand-made and brute-forced point sets; NSGA-II and Pareto evolution on the NAS-Bench-201
//! table; hard cost limits never broken; bad settings refused naming the flag.

use nas_search::builder::Search;
use nas_search::pareto::{
    Objectives, accuracy_cost_hypervolume, crowding_distance, dominates, hypervolume_2d,
    non_dominated_sort,
};
use nas_search::search::{Budget, SearchConfig, run_search};
use nas_search::strategy::StrategyKind;
use nas_search::tabular::{Dataset, Nb201Evaluator, Nb201Table};
use nas_space::nb201::Nb201Space;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn pts(v: &[(f64, f64)]) -> Vec<Vec<f64>> {
    v.iter().map(|&(a, b)| vec![a, b]).collect()
}

#[test]
fn dominance_is_strict_in_one_objective() {
    assert!(dominates(&[1.0, 2.0], &[1.0, 3.0]));
    assert!(dominates(&[0.0, 0.0], &[1.0, 3.0]));
    assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0]), "equal vectors");
    assert!(!dominates(&[1.0, 4.0], &[2.0, 3.0]), "a trade-off");
    assert!(!dominates(&[2.0, 3.0], &[1.0, 4.0]));
}

#[test]
fn non_dominated_sort_on_hand_made_sets() {
    // Three fronts: {0, 1, 2}, {3, 4}, {5}.
    let p = pts(&[
        (1.0, 5.0),
        (2.0, 3.0),
        (4.0, 1.0),
        (3.0, 4.0),
        (5.0, 2.0),
        (6.0, 6.0),
    ]);
    assert_eq!(
        non_dominated_sort(&p),
        vec![vec![0, 1, 2], vec![3, 4], vec![5]]
    );
    // Duplicates share a front; a tie in one objective is decided by the other.
    let p = pts(&[
        (2.0, 2.0),
        (1.0, 3.0),
        (2.0, 2.0),
        (1.0, 4.0),
        (3.0, 2.0),
        (1.0, 3.0),
    ]);
    assert_eq!(non_dominated_sort(&p), vec![vec![0, 1, 2, 5], vec![3, 4]]);
    // All equal: one front; empty: none.
    let p = pts(&[(1.0, 1.0); 4]);
    assert_eq!(non_dominated_sort(&p), vec![vec![0, 1, 2, 3]]);
    assert!(non_dominated_sort(&[]).is_empty());
    // A chain: every point its own front.
    let p = pts(&[(3.0, 3.0), (1.0, 1.0), (2.0, 2.0)]);
    assert_eq!(non_dominated_sort(&p), vec![vec![1], vec![2], vec![0]]);
}

#[test]
fn non_dominated_sort_agrees_with_the_definition_on_random_sets() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..200 {
        let n = rng.random_range(1..30);
        let p: Vec<Vec<f64>> = (0..n)
            .map(|_| vec![rng.random_range(0..6) as f64, rng.random_range(0..6) as f64])
            .collect();
        let fronts = non_dominated_sort(&p);
        let mut rank = vec![usize::MAX; n];
        for (r, f) in fronts.iter().enumerate() {
            for &i in f {
                assert_eq!(rank[i], usize::MAX, "index {i} in two fronts");
                rank[i] = r;
            }
        }
        for i in 0..n {
            assert!(rank[i] != usize::MAX, "index {i} in no front");
            // Rank = length of the longest chain of dominators above it.
            let expect = (0..n)
                .filter(|&j| dominates(&p[j], &p[i]))
                .map(|j| rank[j] + 1)
                .max()
                .unwrap_or(0);
            assert_eq!(rank[i], expect, "{p:?}");
        }
    }
}

#[test]
fn crowding_distance_on_hand_made_fronts() {
    let p = pts(&[(1.0, 5.0), (2.0, 3.0), (3.0, 2.0), (5.0, 1.0)]);
    let d = crowding_distance(&p, &[0, 1, 2, 3]);
    assert!(d[0].is_infinite() && d[3].is_infinite());
    // (2, 3): (3 - 1) / 4 + (5 - 2) / 4; (3, 2): (5 - 2) / 4 + (3 - 1) / 4.
    assert!((d[1] - 1.25).abs() < 1e-12, "{d:?}");
    assert!((d[2] - 1.25).abs() < 1e-12, "{d:?}");
    // Uneven spacing: the member in the sparse region gets more.
    let p = pts(&[(0.0, 10.0), (1.0, 9.0), (2.0, 8.0), (10.0, 0.0)]);
    let d = crowding_distance(&p, &[0, 1, 2, 3]);
    assert!((d[1] - (0.2 + 0.2)).abs() < 1e-12, "{d:?}");
    assert!((d[2] - (0.9 + 0.9)).abs() < 1e-12, "{d:?}");
    // Order of `front` is kept in the output.
    let d2 = crowding_distance(&p, &[2, 0, 3, 1]);
    assert_eq!(d2[0], d[2]);
    assert_eq!(d2[3], d[1]);
    // Up to two members: both infinite.
    assert!(
        crowding_distance(&p, &[1, 2])
            .iter()
            .all(|d| d.is_infinite())
    );
    // All equal: no objective has a range, every distance 0.
    let p = pts(&[(1.0, 1.0); 3]);
    assert_eq!(crowding_distance(&p, &[0, 1, 2]), vec![0.0, 0.0, 0.0]);
    // Duplicates at an end: (1, 4) twice. Objective 0 sorts 0, 1, 2, 3 (ties by position):
    // 0 is an end; objective 1 sorts 3, 2, 0, 1: 1 is an end. Both copies are infinite.
    let p = pts(&[(1.0, 4.0), (1.0, 4.0), (2.0, 2.0), (4.0, 1.0)]);
    let d = crowding_distance(&p, &[0, 1, 2, 3]);
    assert!(d[0].is_infinite() && d[1].is_infinite() && d[3].is_infinite());
    // (2, 2): (4 - 1) / 3 + (4 - 1) / 3.
    assert!((d[2] - 2.0).abs() < 1e-12, "{d:?}");
    // A duplicated inner point: the two copies neighbour each other.
    let p = pts(&[(0.0, 4.0), (2.0, 2.0), (2.0, 2.0), (4.0, 0.0)]);
    let d = crowding_distance(&p, &[0, 1, 2, 3]);
    // Objective 0 order 0, 1, 2, 3: 1 gets (2 - 0) / 4, 2 gets (4 - 2) / 4. Objective 1 order
    // 3, 1, 2, 0: 1 gets (2 - 0) / 4, 2 gets (4 - 2) / 4.
    assert!(
        (d[1] - 1.0).abs() < 1e-12 && (d[2] - 1.0).abs() < 1e-12,
        "{d:?}"
    );
}

/// The hypervolume by counting unit cells of an integer grid: exact for integer points.
fn grid_hypervolume(p: &[[f64; 2]], reference: [f64; 2]) -> f64 {
    let mut cells = 0;
    for x in 0..reference[0] as i64 {
        for y in 0..reference[1] as i64 {
            // The cell [x, x+1] x [y, y+1] is dominated iff some point is at or below its
            // lower corner.
            if p.iter().any(|q| q[0] <= x as f64 && q[1] <= y as f64) {
                cells += 1;
            }
        }
    }
    cells as f64
}

#[test]
fn hypervolume_equals_a_brute_force_grid_count() {
    // Hand-made: the staircase (1, 3), (2, 1) under (4, 4) is 3 + 4.
    assert_eq!(hypervolume_2d(&[[1.0, 3.0], [2.0, 1.0]], [4.0, 4.0]), 7.0);
    // Dominated, duplicated and out-of-box points add nothing.
    assert_eq!(
        hypervolume_2d(
            &[
                [1.0, 3.0],
                [2.0, 1.0],
                [3.0, 3.0],
                [2.0, 1.0],
                [5.0, 0.0],
                [0.0, 4.0]
            ],
            [4.0, 4.0]
        ),
        7.0
    );
    assert_eq!(hypervolume_2d(&[], [4.0, 4.0]), 0.0);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..300 {
        let n = rng.random_range(0..25);
        let reference = [
            rng.random_range(1..30) as f64,
            rng.random_range(1..30) as f64,
        ];
        let p: Vec<[f64; 2]> = (0..n)
            .map(|_| {
                [
                    rng.random_range(0..35) as f64,
                    rng.random_range(0..35) as f64,
                ]
            })
            .collect();
        assert_eq!(
            hypervolume_2d(&p, reference),
            grid_hypervolume(&p, reference),
            "{p:?} {reference:?}"
        );
    }
    // Real-valued points against a fine grid (cell 1/200): within the grid's resolution.
    for _ in 0..20 {
        let p: Vec<[f64; 2]> = (0..rng.random_range(1..12))
            .map(|_| [rng.random::<f64>(), rng.random::<f64>()])
            .collect();
        let scaled: Vec<[f64; 2]> = p
            .iter()
            .map(|q| [(q[0] * 200.0).ceil(), (q[1] * 200.0).ceil()])
            .collect();
        let grid = grid_hypervolume(&scaled, [200.0, 200.0]) / 40000.0;
        let exact = hypervolume_2d(&p, [1.0, 1.0]);
        assert!(exact >= grid - 1e-12, "{exact} {grid}");
        assert!(
            exact - grid <= 2.0 * p.len() as f64 / 200.0,
            "{exact} {grid}"
        );
    }
    // In the accuracy/cost plane: accuracy maximised.
    let hv = accuracy_cost_hypervolume(&[(80.0, 2.0), (60.0, 1.0)], 0.0, 4.0);
    assert_eq!(hv, 80.0 * 2.0 + 60.0 * 1.0);
}

#[test]
fn objectives_parse_and_bad_ones_name_the_flag() {
    assert_eq!(
        Objectives::parse("acc,params").unwrap().label(),
        "acc,params"
    );
    assert_eq!(
        Objectives::parse("flops, acc").unwrap().label(),
        "acc,flops"
    );
    assert_eq!(
        Objectives::parse("latency,acc").unwrap().label(),
        "acc,latency"
    );
    for bad in [
        "acc",
        "acc,params,flops",
        "params,flops",
        "acc,acc",
        "acc,size",
        "acc,latency,params",
        "",
    ] {
        let e = Objectives::parse(bad).unwrap_err().to_string();
        assert!(e.contains("--objectives"), "{bad}: {e}");
    }
}

fn table_search(
    strategy: &str,
    seed: u64,
    limit: Option<&str>,
    n: u64,
) -> nas_search::builder::SearchReport {
    Search::new()
        .space("nb201")
        .evaluator("nb201-table")
        .strategy_spec(strategy)
        .max_params(limit)
        .objectives(Some("acc,params"))
        .evaluations(n)
        .seed(seed)
        .run()
        .unwrap()
}

#[test]
fn no_strategy_evaluates_a_candidate_over_the_limits() {
    // 300k parameters on CIFAR-10: about a quarter of the cells are over.
    for strategy in [
        "random",
        "rea",
        "local",
        "tpe",
        "reinforce",
        "nsga2",
        "pareto",
        "hyperband",
    ] {
        for seed in 0..3 {
            let r = table_search(strategy, seed, Some("3e5"), 60);
            assert!(!r.trials.is_empty());
            for t in &r.trials {
                let p = t.params.expect("the table reports params");
                assert!(
                    p as f64 <= 3e5,
                    "{strategy} seed {seed}: trial {} has {p}",
                    t.id
                );
            }
            // The front's hypervolume is taken with the limit as reference.
            assert_eq!(r.front.as_ref().unwrap().reference.1, 3e5);
        }
    }
    // Without the limit, the same searches do evaluate larger cells (the limit bites).
    let r = table_search("nsga2", 0, None, 60);
    assert!(r.trials.iter().any(|t| t.params.unwrap() as f64 > 3e5));
    // FLOPs too, and on two workers.
    let r = Search::new()
        .space("nb201")
        .evaluator("nb201-table")
        .strategy_spec("nsga2")
        .objectives(Some("acc,flops"))
        .max_flops(Some("40M"))
        .workers(2)
        .evaluations(50)
        .run()
        .unwrap();
    assert!(r.trials.iter().all(|t| t.flops.unwrap() as f64 <= 4e7));
    assert_eq!(r.front.unwrap().objectives, "acc,flops");
}

#[test]
fn bad_objectives_and_limits_are_refused_naming_the_flag() {
    let run = |obj: Option<&str>, params: Option<&str>, flops: Option<&str>, strategy: &str| {
        Search::new()
            .space("nb201")
            .evaluator("nb201-table")
            .strategy_spec(strategy)
            .objectives(obj)
            .max_params(params)
            .max_flops(flops)
            .evaluations(5)
            .run()
            .unwrap_err()
            .to_string()
    };
    let e = run(Some("latency,params"), None, None, "nsga2");
    assert!(e.contains("--objectives"), "{e}");
    let e = run(Some("params"), None, None, "random");
    assert!(e.contains("--objectives"), "{e}");
    for bad in ["-5", "0", "abc", "nan", "inf", "1e6x"] {
        let e = run(None, Some(bad), None, "nsga2");
        assert!(e.contains("--max-params"), "{bad}: {e}");
        let e = run(None, None, Some(bad), "rea");
        assert!(e.contains("--max-flops"), "{bad}: {e}");
    }
    // A limit no cell meets: the strategy is stopped with the limit named.
    let e = run(None, Some("10"), None, "random");
    assert!(e.contains("--max-params 10"), "{e}");
    // One-shot methods take neither.
    let e = run(Some("acc,params"), None, None, "darts");
    assert!(e.contains("--objectives"), "{e}");
}

/// Mean hypervolume (validation accuracy vs params, reference: 0 % and the largest cell) of
/// the fronts found in `runs` seeded table searches of `n` evaluations.
fn mean_hv(strategy: &str, runs: u64, n: u64) -> f64 {
    let table = Nb201Table::embedded().unwrap();
    let ev = Nb201Evaluator::new(table.clone(), Dataset::Cifar10);
    let ref_cost = table
        .rows()
        .iter()
        .map(|r| r.cost[0].params as f64)
        .fold(0.0, f64::max);
    let mut total = 0.0;
    for seed in 0..runs {
        let mut s = StrategyKind::parse(strategy)
            .unwrap()
            .build(&Nb201Space)
            .unwrap();
        let out = run_search(
            &Nb201Space,
            s.as_mut(),
            &ev,
            &SearchConfig::new(seed, Budget::evaluations(n)),
        )
        .unwrap();
        let f = nas_search::pareto::ParetoFront::of_trials(
            &out.history.trials,
            Objectives::default(),
            Some(ref_cost),
        );
        total += f.hypervolume;
    }
    total / runs as f64
}

#[test]
fn nsga2_and_pareto_evolution_find_larger_fronts_than_random_search() {
    let random = mean_hv("random", 30, 100);
    let nsga2 = mean_hv("nsga2", 30, 100);
    let pareto = mean_hv("pareto", 30, 100);
    eprintln!(
        "mean hypervolume at 100 evaluations: random {random:.5}, nsga2 {nsga2:.5}, pareto {pareto:.5}"
    );
    assert!(nsga2 > random, "nsga2 {nsga2} random {random}");
    assert!(pareto > random, "pareto {pareto} random {random}");
}

/// Conv3x3 edges of a cell: the injected "latency" of the constraint test.
fn conv3x3(c: &nas_space::nb201::Nb201Cell) -> f64 {
    c.ops
        .iter()
        .filter(|o| **o == nas_space::nb201::Nb201Op::NorConv3x3)
        .count() as f64
}

#[test]
fn a_latency_limit_rejects_cells_over_it_with_injected_latencies() {
    use nas_search::pareto::{Constrained, Limits};
    let ev = Nb201Evaluator::new(Nb201Table::embedded().unwrap(), Dataset::Cifar10);
    let run = |limit: Option<f64>| {
        let mut s = StrategyKind::parse("rea")
            .unwrap()
            .build(&Nb201Space)
            .unwrap();
        if let Some(max) = limit {
            let c = Constrained::new(
                s,
                Limits {
                    max_latency_ms: Some(max),
                    ..Default::default()
                },
                // never called: there is no parameter or FLOP limit
                std::sync::Arc::new(|_: &nas_space::nb201::Nb201Cell| -> nas_search::Result<nas_search::nets::NetworkCost> {
                    panic!("the closed-form cost was asked for")
                }),
            )
            .with_latency(std::sync::Arc::new(|c: &nas_space::nb201::Nb201Cell| {
                Ok(conv3x3(c) + 0.5)
            }));
            s = Box::new(c);
        }
        run_search(
            &Nb201Space,
            s.as_mut(),
            &ev,
            &SearchConfig::new(3, Budget::evaluations(60)),
        )
        .unwrap()
        .history
        .trials
    };
    let limited = run(Some(2.0));
    assert_eq!(limited.len(), 60);
    assert!(limited.iter().all(|t| conv3x3(&t.arch) + 0.5 <= 2.0));
    // Without the limit the same search evaluates cells over it.
    assert!(run(None).iter().any(|t| conv3x3(&t.arch) + 0.5 > 2.0));
}

#[test]
fn a_latency_search_on_the_table_measures_sums_and_keeps_the_limit() {
    use nas_search::latency::{LatencySettings, LatencyTable, TABLE_FILE, TableKey, nb201_ops};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lat");
    let run = |limit: Option<&str>, out: &std::path::Path| {
        Search::new()
            .space("nb201")
            .evaluator("nb201-table")
            .strategy_spec("nsga2")
            .objectives(Some("acc,latency"))
            .max_latency_ms(limit)
            .evaluations(30)
            .seed(1)
            .output_dir(out)
            .run()
            .unwrap()
    };
    let free = run(None, &tmp.path().join("free"));
    let lat: Vec<f64> = free.trials.iter().map(|t| t.latency_ms.unwrap()).collect();
    let mut sorted = lat.clone();
    sorted.sort_by(f64::total_cmp);
    let limit = sorted[sorted.len() / 2];
    let r = run(Some(&limit.to_string()), &dir);
    assert!(r.trials.iter().all(|t| t.latency_ms.unwrap() <= limit));
    let front = r.front.unwrap();
    assert_eq!(front.objectives, "acc,latency");
    assert_eq!(front.reference.1, limit);
    // Each trial's latency is its network's ops summed over the saved table.
    let table = LatencyTable::load(
        &dir.join(TABLE_FILE),
        &TableKey::this_machine(LatencySettings::default()),
    )
    .unwrap()
    .unwrap();
    let config = nas_search::nets::nb201::Nb201Config::default();
    for t in &r.trials {
        let cell: nas_space::nb201::Nb201Cell = t.arch.parse().unwrap();
        let sum: f64 = nb201_ops(&cell, &config, 32, 32)
            .iter()
            .map(|o| table.entries[&o.key()])
            .sum();
        assert!((sum - t.latency_ms.unwrap()).abs() < 1e-9, "{}", t.arch);
    }
}
