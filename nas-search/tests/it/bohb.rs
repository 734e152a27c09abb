//! BOHB: Hyperband's brackets with TPE proposals. Better than Hyperband where the fidelities
//! carry information, the train evaluator's epochs as its ladder, refused settings.

use nas_search::stats::{mean, welch};
use nas_search::strategy::StrategyKind;
use nas_search::synthetic::{ToyObjective, ToySpace};
use nas_search::{Budget, SearchConfig, run_search};
use nas_space::nb201::Nb201Space;

/// TPE's proposals at work: on a synthetic objective (ladder 3, 9, 27), the architectures
/// BOHB starts its brackets with (the lowest rung's) are better on average than Hyperband's
/// random ones, per seed over 10 seeds (Welch's one-sided p < 0.01); with `random_fraction=1`
/// BOHB is Hyperband again.
#[test]
fn bohb_proposes_better_architectures_than_hyperband() {
    let space = ToySpace {
        dims: 10,
        choices: 4,
    };
    let obj = ToyObjective::new(&space, 31);
    let run = |spec: &str, seed| {
        let mut s = StrategyKind::parse(spec).unwrap().build(&space).unwrap();
        let cfg = SearchConfig::new(seed, Budget::evaluations(300));
        let out = run_search(&space, s.as_mut(), &obj, &cfg).unwrap();
        let started: Vec<f64> = out
            .history
            .trials
            .iter()
            .filter(|t| t.fidelity == 3)
            .map(|t| t.metrics().unwrap().test_accuracy.unwrap())
            .collect();
        (mean(&started), out.history.trials)
    };
    let mut means: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for seed in 0..10 {
        let (b, _) = run("bohb:fidelities=[3,9,27]", seed);
        let (h, h_trials) = run("hyperband:fidelities=[3,9,27]", seed);
        means[0].push(b);
        means[1].push(h);
        if seed == 0 {
            let (_, r_trials) = run("bohb:fidelities=[3,9,27]:random_fraction=1", seed);
            let arch = |t: &[nas_search::Trial<nas_search::synthetic::ToyArch>]| {
                t.iter()
                    .map(|x| (x.arch.clone(), x.fidelity))
                    .collect::<Vec<_>>()
            };
            // Same candidates until the model would be used (rng draws differ after).
            assert_eq!(arch(&r_trials)[..27], arch(&h_trials)[..27]);
        }
    }
    let w = welch(&means[0], &means[1]);
    eprintln!(
        "toy: bohb's new architectures {:.2}, hyperband's {:.2}, t = {:.2}, p = {:.2e}",
        mean(&means[0]),
        mean(&means[1]),
        w.t,
        w.p_greater
    );
    assert!(w.p_greater < 0.01, "{w:?}");
}

#[test]
fn bohb_climbs_epochs_with_the_train_evaluator_and_refuses_bad_settings() {
    let mut k = StrategyKind::parse("bohb").unwrap();
    assert_eq!(k.fidelities(12), vec![12, 200]);
    k.set_fidelity(4, true).unwrap();
    assert_eq!(k.fidelities(4), vec![1, 4]);
    let e = StrategyKind::parse("bohb")
        .unwrap()
        .set_fidelity(1, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bohb") && e.contains("--epochs 2"), "{e}");
    for bad in [
        "bohb:random_fraction=1.5",
        "bohb:gamma=0",
        "bohb:eta=1",
        "bohb:fidelities=[200,12]",
    ] {
        let e = StrategyKind::parse(bad)
            .and_then(|k| k.build(&Nb201Space).map(|_| ()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bohb") || e.contains("hyperband"), "{bad}: {e}");
    }
}
