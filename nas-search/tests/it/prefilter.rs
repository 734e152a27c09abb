//! `--prefilter PROXY:SAMPLES[:KEEP]`: the builder's searches start with the proxy's best
//! cells, resume identically, and refuse what they cannot do with errors naming the flag.

use nas_search::builder::Search;
use nas_search::prefilter::{PrefilterSpec, Proxy, WarmStarted, rank};
use nas_search::spaces::SpaceDef;
use nas_search::spaces::nb201::Nb201;
use nas_search::strategy::StrategyKind;
use nas_search::tabular::{Dataset, Nb201Evaluator, Nb201Table};
use nas_search::{Budget, SearchConfig, run_search};
use nas_space::SearchSpace;
use nas_space::nb201::{Nb201Cell, Nb201Space};

#[test]
fn bad_prefilter_specs_name_the_flag_and_the_problem() {
    let ok = PrefilterSpec::parse("synflow:1000").unwrap();
    assert_eq!((ok.proxy, ok.samples, ok.keep), (Proxy::Synflow, 1000, 10));
    assert_eq!(PrefilterSpec::parse("params:5").unwrap().keep, 5);
    assert_eq!(
        PrefilterSpec::parse("flops:50:3").unwrap().to_string(),
        "flops:50:3"
    );
    for (bad, want) in [
        ("synflow", "PROXY:SAMPLES"),
        ("nwot:100", "unknown proxy \"nwot\""),
        ("synflow:0", "1 <= KEEP <= SAMPLES"),
        ("synflow:10:20", "got 10 samples, keep 20"),
        ("synflow:ten", "samples \"ten\""),
        ("synflow:10:2:1", "PROXY:SAMPLES[:KEEP]"),
        ("synflow:99999999999", "1 <= KEEP <= SAMPLES"),
    ] {
        let e = PrefilterSpec::parse(bad).unwrap_err().to_string();
        assert!(e.contains("--prefilter") && e.contains(want), "{bad}: {e}");
    }
}

/// Through the builder (what `nas search --prefilter synflow:20:3` runs): the first three
/// trials are the three best of the twenty cells the ranking draws, by the registry's synflow.
#[test]
fn the_first_proposals_are_the_proxy_best_of_the_samples() {
    let spec = PrefilterSpec::parse("synflow:20:3").unwrap();
    let search = |pre: Option<&str>| {
        Search::new()
            .space("nb201")
            .evaluator("nb201-table")
            .strategy_spec("rea")
            .prefilter(pre)
            .evaluations(6)
            .seed(5)
            .run()
            .unwrap()
    };
    let with = search(Some("synflow:20:3"));
    let without = search(None);
    let mut scored = Vec::new();
    let want = rank(&Nb201Space, &spec, 5, &mut |c: &Nb201Cell| {
        let s = Nb201.proxy(Proxy::Synflow, c)?;
        scored.push(s);
        Ok(s)
    })
    .unwrap();
    assert_eq!(scored.len(), 20);
    let texts: Vec<String> = want.iter().map(|c| Nb201Space.to_text(c)).collect();
    let got: Vec<String> = with.trials[..3].iter().map(|t| t.arch.clone()).collect();
    assert_eq!(got, texts);
    // They are the top three scores, best first.
    let mut sorted = scored.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    for (c, s) in want.iter().zip(&sorted) {
        assert_eq!(Nb201.proxy(Proxy::Synflow, c).unwrap(), *s);
    }
    assert_ne!(without.trials[0].arch, got[0]);
    // After the warm start the strategy proposes on its own (REA's random start-up).
    assert_eq!(with.trials.len(), 6);
    assert_eq!(
        with.strategy["config"]["warm_start"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn unusable_prefilters_are_refused_before_anything_runs() {
    let run = |space: &str, strategy: &str, evaluator: &str, pre: &str| {
        Search::new()
            .space(space)
            .evaluator(evaluator)
            .strategy_spec(strategy)
            .prefilter(Some(pre))
            .evaluations(3)
            .run()
            .unwrap_err()
            .to_string()
    };
    let e = run("nb201", "hyperband", "nb201-table", "params:10");
    assert!(e.contains("--prefilter") && e.contains("hyperband"), "{e}");
    let e = run("chain", "random", "train", "synflow:10");
    assert!(
        e.contains("--prefilter") && e.contains("synflow is implemented for nb201"),
        "{e}"
    );
    let e = run("nb201", "random", "nb201-table", "snip:10");
    assert!(
        e.contains("--prefilter") && e.contains("unknown proxy"),
        "{e}"
    );
}

/// A warm-started search checkpointed after 7 trials (the warm start is 10 long) and resumed
/// to 20 has the history of an uninterrupted one; a checkpoint of another warm start is refused.
#[test]
fn a_warm_started_search_resumes_identically() {
    let ev = Nb201Evaluator::new(Nb201Table::embedded().unwrap(), Dataset::Cifar10);
    let spec = PrefilterSpec::parse("params:200").unwrap();
    let warm = |seed| {
        rank(&Nb201Space, &spec, seed, &mut |c: &Nb201Cell| {
            Nb201.proxy(Proxy::Params, c)
        })
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |n: u64, ck: Option<&std::path::Path>, warm: Vec<Nb201Cell>| {
        let inner = StrategyKind::parse("local")
            .unwrap()
            .build(&Nb201Space)
            .unwrap();
        let mut s = WarmStarted::new(inner, warm);
        let mut cfg = SearchConfig::new(8, Budget::evaluations(n));
        cfg.checkpoint = ck.map(|p| p.to_path_buf());
        run_search(&Nb201Space, &mut s, &ev, &cfg)
    };
    let ck = dir.path().join("c.json");
    run(7, Some(&ck), warm(8)).unwrap();
    let resumed = run(20, Some(&ck), warm(8)).unwrap();
    let fresh = run(20, None, warm(8)).unwrap();
    assert!(resumed.resumed);
    assert!(resumed.history.same_except_timing(&fresh.history));
    let first: Vec<Nb201Cell> = fresh.history.trials[..10].iter().map(|t| t.arch).collect();
    assert_eq!(first, warm(8));
    let e = run(20, Some(&ck), warm(9)).unwrap_err().to_string();
    assert!(e.contains("c.json"), "{e}");
}
