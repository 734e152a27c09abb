//! The search loop on synthetic objectives and on the table: determinism under parallel
//! evaluation, failures, budgets, skipping equivalent cells, Hyperband's promotions.

use nas_search::evaluator::{EvalError, EvalRequest, Evaluator, Metrics};
use nas_search::search::{Budget, SearchConfig, StopReason, run_search, run_search_observed};
use nas_search::stats::{mean, welch};
use nas_search::strategy::{Reinforce, ReinforceConfig, StrategyKind};
use nas_search::synthetic::{ToyObjective, ToySpace};
use nas_search::tabular::{Dataset, Nb201Evaluator, Nb201Table};
use nas_search::{Outcome, SearchError};
use nas_space::SearchSpace;
use nas_space::nb201::Nb201Space;
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wraps an evaluator and sleeps a truly random (clock-derived) 0-2 ms, so that workers finish
/// in an order that changes from run to run.
struct Jittery<E>(E);

impl<A, E: Evaluator<A>> Evaluator<A> for Jittery<E> {
    fn name(&self) -> String {
        self.0.name()
    }
    fn evaluate(&self, req: &EvalRequest<'_, A>) -> Result<Metrics, EvalError> {
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        std::thread::sleep(Duration::from_micros((ns % 2000) as u64));
        self.0.evaluate(req)
    }
}

fn all_kinds() -> Vec<StrategyKind> {
    ["random", "rea", "reinforce", "local", "hyperband"]
        .iter()
        .map(|s| StrategyKind::parse(s).unwrap())
        .collect()
}

#[test]
fn parallel_results_do_not_depend_on_timing() {
    let table = Nb201Table::embedded().unwrap();
    let ev = Jittery(Nb201Evaluator::new(table, Dataset::Cifar10));
    for kind in all_kinds() {
        let mut cfg = SearchConfig::new(7, Budget::evaluations(60));
        cfg.workers = 4;
        let run = || {
            let mut s = kind.build(&Nb201Space).unwrap();
            run_search(&Nb201Space, s.as_mut(), &ev, &cfg).unwrap()
        };
        let (a, b) = (run(), run());
        assert_eq!(a.history.len(), 60, "{}", kind.name());
        assert!(
            a.history.same_except_timing(&b.history),
            "{}: histories differ",
            kind.name()
        );
        assert!(
            a.history
                .trials
                .iter()
                .enumerate()
                .all(|(i, t)| t.id == i as u64)
        );
        // A different seed gives a different search.
        let mut s = kind.build(&Nb201Space).unwrap();
        let c = run_search(
            &Nb201Space,
            s.as_mut(),
            &ev,
            &SearchConfig {
                seed: 8,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert!(!a.history.same_except_timing(&c.history));
    }
}

#[test]
fn failed_trials_are_recorded_and_the_search_goes_on() {
    let space = ToySpace {
        dims: 6,
        choices: 4,
    };
    let mut obj = ToyObjective::new(&space, 1);
    obj.fail_every = 5;
    for kind in all_kinds().into_iter().take(4) {
        let mut s = kind.build(&space).unwrap();
        let mut seen = Vec::new();
        let out = run_search_observed(
            &space,
            s.as_mut(),
            &obj,
            &SearchConfig::new(3, Budget::evaluations(50)),
            &mut |t| seen.push(t.id),
        )
        .unwrap();
        assert_eq!(out.history.len(), 50);
        assert_eq!(
            seen,
            (0..50).collect::<Vec<u64>>(),
            "observer sees trials in order"
        );
        for t in &out.history.trials {
            match &t.outcome {
                Outcome::Failed { reason } => {
                    assert_eq!(t.id % 5, 0);
                    assert_eq!(reason, "loss became NaN");
                }
                Outcome::Ok(_) => assert_ne!(t.id % 5, 0),
            }
        }
        assert!(out.best().unwrap().score().is_some());
        assert_eq!(out.spent.evaluations, 50);
    }
}

/// NaN accuracies, panics and fatal errors.
#[test]
fn nan_and_panics_fail_the_trial_and_fatal_errors_stop_the_search() {
    struct Bad;
    impl Evaluator<nas_search::synthetic::ToyArch> for Bad {
        fn name(&self) -> String {
            "bad".into()
        }
        fn evaluate(
            &self,
            r: &EvalRequest<'_, nas_search::synthetic::ToyArch>,
        ) -> Result<Metrics, EvalError> {
            match r.trial_id {
                1 => panic!("boom"),
                2 => Ok(Metrics {
                    valid_accuracy: f64::NAN,
                    test_accuracy: None,
                    loss: None,
                    params: None,
                    flops: None,
                    latency_ms: None,
                    cost: 1.0,
                }),
                9 => Err(EvalError::Fatal("device lost".into())),
                _ => Ok(Metrics {
                    valid_accuracy: r.trial_id as f64,
                    test_accuracy: None,
                    loss: None,
                    params: None,
                    flops: None,
                    latency_ms: None,
                    cost: 1.0,
                }),
            }
        }
    }
    let space = ToySpace {
        dims: 3,
        choices: 3,
    };
    let mut s = StrategyKind::parse("rea").unwrap().build(&space).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SearchConfig::new(0, Budget::evaluations(30));
    cfg.workers = 2;
    cfg.checkpoint = Some(dir.path().join("ck"));
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let err = run_search(&space, s.as_mut(), &Bad, &cfg).unwrap_err();
    std::panic::set_hook(prev);
    assert!(
        matches!(err, SearchError::EvaluatorFatal { trial: 9, .. }),
        "{err}"
    );
    // The checkpoint holds the trials told before the fatal error, with their failure reasons.
    let st = nas_search::search::load_checkpoint::<nas_search::synthetic::ToyArch>(
        cfg.checkpoint.as_ref().unwrap(),
        &nas_search::search::SearchMeta {
            space: "toy".into(),
            strategy: "rea".into(),
            strategy_config: s.config(),
            evaluator: "bad".into(),
            seed: 0,
            workers: 2,
            skip_equivalent: false,
        },
    )
    .unwrap();
    let h = &st.history.trials;
    assert!(h.len() >= 3 && h.len() <= 9);
    assert!(
        matches!(&h[1].outcome, Outcome::Failed { reason } if reason.contains("panicked: boom"))
    );
    assert!(matches!(&h[2].outcome, Outcome::Failed { reason } if reason.contains("non-finite")));
}

#[test]
fn budgets_by_evaluations_cost_and_wall_time() {
    let table = Nb201Table::embedded().unwrap();
    let ev = Nb201Evaluator::new(table, Dataset::Cifar10);
    let mut s = StrategyKind::parse("random")
        .unwrap()
        .build(&Nb201Space)
        .unwrap();
    let out = run_search(
        &Nb201Space,
        s.as_mut(),
        &ev,
        &SearchConfig::new(1, Budget::evaluations(37)),
    )
    .unwrap();
    assert_eq!((out.history.len(), out.stop), (37, StopReason::Evaluations));
    // Cost: 12 epochs each; stops at the first told total >= 1000 epochs.
    let mut s = StrategyKind::parse("random")
        .unwrap()
        .build(&Nb201Space)
        .unwrap();
    let out = run_search(
        &Nb201Space,
        s.as_mut(),
        &ev,
        &SearchConfig::new(1, Budget::cost(1000.0)),
    )
    .unwrap();
    assert_eq!(
        (out.history.len(), out.stop, out.spent.cost),
        (84, StopReason::Cost, 1008.0)
    );
    // Wall time: 5 ms per evaluation, 0.1 s budget.
    let space = ToySpace {
        dims: 4,
        choices: 3,
    };
    let mut obj = ToyObjective::new(&space, 2);
    obj.delay = Duration::from_millis(5);
    let mut s = StrategyKind::parse("random")
        .unwrap()
        .build(&space)
        .unwrap();
    let budget = Budget {
        max_wall_time_s: Some(0.1),
        ..Budget::default()
    };
    let out = run_search(&space, s.as_mut(), &obj, &SearchConfig::new(1, budget)).unwrap();
    assert_eq!(out.stop, StopReason::WallTime);
    assert!(
        out.history.len() >= 2 && out.history.len() <= 21,
        "{}",
        out.history.len()
    );
    assert!(out.spent.wall_time_s >= 0.1);
    // No budget and a strategy that never ends is refused only by bad settings:
    let mut s = StrategyKind::parse("random")
        .unwrap()
        .build(&space)
        .unwrap();
    let bad = SearchConfig {
        workers: 0,
        ..SearchConfig::new(1, Budget::evaluations(3))
    };
    assert!(
        run_search(&space, s.as_mut(), &obj, &bad)
            .unwrap_err()
            .to_string()
            .contains("workers")
    );
}

#[test]
fn skipping_equivalent_cells_reuses_results_without_charging() {
    let table = Nb201Table::embedded().unwrap();
    let ev = Nb201Evaluator::new(table, Dataset::Cifar10);
    let mut s = StrategyKind::parse("random")
        .unwrap()
        .build(&Nb201Space)
        .unwrap();
    let mut cfg = SearchConfig::new(5, Budget::evaluations(2000));
    cfg.skip_equivalent = true;
    cfg.workers = 3;
    let out = run_search(&Nb201Space, s.as_mut(), &ev, &cfg).unwrap();
    assert_eq!(out.history.evaluations(), 2000);
    let cached: Vec<_> = out
        .history
        .trials
        .iter()
        .filter(|t| t.cached_from.is_some())
        .collect();
    assert!(
        cached.len() > 100,
        "random sampling of 2000 cells repeats classes: {}",
        cached.len()
    );
    let mut keys = HashSet::new();
    for t in &out.history.trials {
        let key = Nb201Space.canonical(&t.arch);
        match t.cached_from {
            None => assert!(keys.insert(key), "an evaluated class was evaluated twice"),
            Some(o) => {
                let orig = &out.history.trials[o as usize];
                assert!(orig.cached_from.is_none() && o < t.id);
                assert_eq!(Nb201Space.canonical(&orig.arch), key);
                assert_eq!(orig.outcome, t.outcome);
                assert_eq!(t.cost, 0.0);
            }
        }
    }
    assert_eq!(out.spent.cost, 2000.0 * 12.0);
}

#[test]
fn hyperband_promotes_the_best_of_each_rung() {
    let table = Nb201Table::embedded().unwrap();
    let ev = Nb201Evaluator::new(table, Dataset::Cifar10);
    let mut s = StrategyKind::parse("hyperband")
        .unwrap()
        .build(&Nb201Space)
        .unwrap();
    let mut cfg = SearchConfig::new(11, Budget::cost(5000.0));
    cfg.workers = 2;
    let out = run_search(&Nb201Space, s.as_mut(), &ev, &cfg).unwrap();
    // Default ladder [12, 200], eta 3: bracket s=1 = 3 cells at 12 epochs then the best at 200;
    // bracket s=0 = 2 cells at 200 epochs. Pattern of fidelities: 12 12 12 200 200 200, repeated.
    let fids: Vec<u32> = out.history.trials.iter().map(|t| t.fidelity).collect();
    let pattern = [12, 12, 12, 200, 200, 200];
    for (i, f) in fids.iter().enumerate() {
        assert_eq!(*f, pattern[i % 6], "trial {i}: {fids:?}");
    }
    for chunk in out.history.trials.chunks(6).filter(|c| c.len() >= 4) {
        let best = chunk[..3]
            .iter()
            .max_by(|a, b| a.score().unwrap().total_cmp(&b.score().unwrap()))
            .unwrap();
        // Ties keep the earliest member.
        let first_best = chunk[..3]
            .iter()
            .find(|t| t.score() == best.score())
            .unwrap();
        assert_eq!(chunk[3].arch, first_best.arch);
    }
    assert_eq!(out.best().unwrap().fidelity, 200);
    // Successive halving: brackets = 1, ladder [12, 200] with eta 4 -> 4 at 12, best 1 at 200.
    let kind = StrategyKind::parse("hyperband:brackets=1:eta=4").unwrap();
    let mut s = kind.build(&Nb201Space).unwrap();
    let out = run_search(
        &Nb201Space,
        s.as_mut(),
        &ev,
        &SearchConfig::new(2, Budget::evaluations(50)),
    )
    .unwrap();
    let fids: Vec<u32> = out.history.trials.iter().map(|t| t.fidelity).collect();
    assert!(
        fids.chunks(5)
            .all(|c| c.iter().take(4).all(|&f| f == 12) && c.get(4).is_none_or(|&f| f == 200)),
        "{fids:?}"
    );
    assert!(
        StrategyKind::parse("hyperband:fidelities=[200,12]")
            .unwrap()
            .build(&Nb201Space)
            .is_err()
    );
    assert!(
        StrategyKind::parse("rea:size=3")
            .unwrap_err()
            .to_string()
            .contains("unknown setting")
    );
    assert!(StrategyKind::parse("bogus").is_err());
    assert_eq!(kind.label(), "hyperband:brackets=1:eta=4");
    assert_eq!(StrategyKind::parse("rea").unwrap().label(), "rea");
}

/// On a synthetic objective with 4^8 architectures, REA and local search beat random search.
#[test]
fn strategies_beat_random_search_on_a_synthetic_objective() {
    let space = ToySpace {
        dims: 8,
        choices: 4,
    };
    let obj = ToyObjective::new(&space, 42);
    let opt = obj.optimum(&space);
    let finals = |kind: &str| -> Vec<f64> {
        (0..60u64)
            .map(|seed| {
                let mut s = StrategyKind::parse(kind).unwrap().build(&space).unwrap();
                let out = run_search(
                    &space,
                    s.as_mut(),
                    &obj,
                    &SearchConfig::new(seed, Budget::evaluations(150)),
                )
                .unwrap();
                out.best()
                    .unwrap()
                    .metrics()
                    .unwrap()
                    .test_accuracy
                    .unwrap()
            })
            .collect()
    };
    let rs = finals("random");
    let rea = finals("rea");
    let ls = finals("local");
    let rl = finals("reinforce");
    eprintln!(
        "optimum {opt:.2}: random {:.2}, rea {:.2}, local {:.2}, reinforce {:.2}",
        mean(&rs),
        mean(&rea),
        mean(&ls),
        mean(&rl)
    );
    assert!(welch(&rea, &rs).p_greater < 0.01);
    assert!(welch(&ls, &rs).p_greater < 0.01);
    assert!(rs.iter().chain(&rea).chain(&ls).all(|&v| v <= opt + 1e-9));
    // Local search with a larger budget reaches the exact optimum (found by dynamic programming).
    let mut s = StrategyKind::parse("local").unwrap().build(&space).unwrap();
    let out = run_search(
        &space,
        s.as_mut(),
        &obj,
        &SearchConfig::new(0, Budget::evaluations(3000)),
    )
    .unwrap();
    assert!(
        (out.best()
            .unwrap()
            .metrics()
            .unwrap()
            .test_accuracy
            .unwrap()
            - opt)
            .abs()
            < 1e-9
    );
}

/// REINFORCE concentrates its policy on good choices of a separable objective.
#[test]
fn reinforce_policy_concentrates_on_the_best_choices() {
    let space = ToySpace {
        dims: 5,
        choices: 4,
    };
    let obj = ToyObjective::new(&space, 3);
    let mut rl = Reinforce::new(ReinforceConfig::default(), &space.decisions()).unwrap();
    let out = run_search(
        &space,
        &mut rl,
        &obj,
        &SearchConfig::new(0, Budget::evaluations(400)),
    )
    .unwrap();
    let probs = rl.probabilities();
    let mode: Vec<usize> = probs
        .iter()
        .map(|p| (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap())
        .collect();
    let mode_score = obj.score(&space.decode_decisions(&mode).unwrap());
    let avg: f64 = out.history.trials[..50]
        .iter()
        .map(|t| t.metrics().unwrap().test_accuracy.unwrap())
        .sum::<f64>()
        / 50.0;
    assert!(
        probs
            .iter()
            .all(|p| p.iter().cloned().fold(0.0, f64::max) > 0.5),
        "{probs:?}"
    );
    assert!(
        mode_score > avg + 5.0 && mode_score > 0.9 * obj.optimum(&space),
        "{mode_score} vs first-50 mean {avg}"
    );
    let visible_avg: f64 = out.history.trials[..50]
        .iter()
        .map(|t| t.score().unwrap())
        .sum::<f64>()
        / 50.0;
    assert!(
        rl.baseline().unwrap() > visible_avg,
        "the baseline tracks the rising reward"
    );
}

/// A strategy that always waits ends the search at once; one that says Done stops it.
#[test]
fn waiting_with_nothing_in_flight_and_done_stop_the_search() {
    use nas_search::strategy::{Ask, Candidate, Strategy};
    use nas_search::synthetic::ToyArch;
    struct Fixed(u32, bool);
    impl Strategy<ToySpace> for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn config(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
        fn ask(
            &mut self,
            space: &ToySpace,
            rng: &mut dyn rand::RngCore,
        ) -> nas_search::Result<Ask<ToyArch>> {
            if self.1 {
                return Ok(Ask::Wait);
            }
            if self.0 == 0 {
                return Ok(Ask::Done);
            }
            self.0 -= 1;
            Ok(Ask::Evaluate(Candidate {
                arch: space.sample(rng),
                fidelity: 12,
            }))
        }
        fn tell(&mut self, _: &ToySpace, _: &nas_search::Trial<ToyArch>) -> nas_search::Result<()> {
            Ok(())
        }
        fn save_state(&self) -> nas_search::Result<serde_json::Value> {
            Ok(serde_json::json!(self.0))
        }
        fn load_state(&mut self, v: serde_json::Value) -> nas_search::Result<()> {
            self.0 = v.as_u64().unwrap_or(0) as u32;
            Ok(())
        }
    }
    let space = ToySpace {
        dims: 3,
        choices: 2,
    };
    let obj = ToyObjective::new(&space, 0);
    let out = run_search(
        &space,
        &mut Fixed(5, true),
        &obj,
        &SearchConfig::new(0, Budget::evaluations(10)),
    )
    .unwrap();
    assert_eq!(
        (out.history.len(), out.stop),
        (0, StopReason::StrategyStuck)
    );
    let mut cfg = SearchConfig::new(0, Budget::evaluations(10));
    cfg.workers = 2;
    let out = run_search(&space, &mut Fixed(5, false), &obj, &cfg).unwrap();
    assert_eq!((out.history.len(), out.stop), (5, StopReason::StrategyDone));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any strategy, seed, worker count and budget: exactly `budget` valid trials numbered
        /// 0.., the same history twice, and the final choice is the best visible score.
        #[test]
        fn searches_are_complete_valid_and_repeatable(seed in 0u64..1000, workers in 1usize..5, kind in 0usize..5, budget in 1u64..40) {
            let space = ToySpace { dims: 4, choices: 3 };
            let obj = ToyObjective::new(&space, seed ^ 77);
            let kind = &all_kinds()[kind];
            let mut cfg = SearchConfig::new(seed, Budget::evaluations(budget));
            cfg.workers = workers;
            let run = || {
                let mut s = kind.build(&space).unwrap();
                run_search(&space, s.as_mut(), &obj, &cfg).unwrap()
            };
            let (a, b) = (run(), run());
            prop_assert_eq!(a.history.len() as u64, budget);
            prop_assert!(a.history.same_except_timing(&b.history));
            for (i, t) in a.history.trials.iter().enumerate() {
                prop_assert_eq!(t.id, i as u64);
                prop_assert!(space.validate(&t.arch).is_ok());
            }
            let top = a.history.trials.iter().filter(|t| t.fidelity == a.best().unwrap().fidelity)
                .map(|t| t.score().unwrap()).fold(f64::MIN, f64::max);
            prop_assert_eq!(a.best().unwrap().score().unwrap(), top);
        }
    }
}

/// One thread budget: with N workers each evaluation sees at most total / N kernel threads
/// (at least one), so workers times kernel threads never exceed the configured total; on the
/// 2-core CI machine, `--workers 2` gives each worker one kernel thread.
#[test]
fn workers_split_the_thread_budget() {
    use std::sync::Mutex;
    struct SeenThreads(Mutex<Vec<usize>>);
    impl Evaluator<nas_search::synthetic::ToyArch> for SeenThreads {
        fn name(&self) -> String {
            "budget".into()
        }
        fn evaluate(
            &self,
            r: &EvalRequest<'_, nas_search::synthetic::ToyArch>,
        ) -> Result<Metrics, EvalError> {
            self.0
                .lock()
                .unwrap()
                .push(nas_tensor::threads::num_threads());
            Ok(Metrics {
                valid_accuracy: r.trial_id as f64,
                test_accuracy: None,
                loss: None,
                params: None,
                flops: None,
                latency_ms: None,
                cost: 1.0,
            })
        }
    }
    let space = ToySpace {
        dims: 3,
        choices: 3,
    };
    let total = nas_tensor::threads::total_threads();
    for workers in [1, 2, 3] {
        let ev = SeenThreads(Mutex::new(Vec::new()));
        let mut s = StrategyKind::parse("random")
            .unwrap()
            .build(&space)
            .unwrap();
        let mut cfg = SearchConfig::new(0, Budget::evaluations(12));
        cfg.workers = workers;
        run_search(&space, s.as_mut(), &ev, &cfg).unwrap();
        let seen = ev.0.into_inner().unwrap();
        assert_eq!(seen.len(), 12);
        let share = if workers == 1 {
            total
        } else {
            (total / workers).max(1)
        };
        assert!(
            seen.iter().all(|&t| t == share),
            "{workers} workers: {seen:?}"
        );
        if workers <= total {
            assert!(share * workers <= total, "{workers} x {share} > {total}");
        }
    }
    // the test thread itself keeps the whole budget
    assert_eq!(nas_tensor::threads::num_threads(), total);
}
