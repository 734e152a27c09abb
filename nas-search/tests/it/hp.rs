//! `--hp`: hyperparameters searched jointly with the architecture (`nas_search::hp`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use nas_search::builder::Search;
use nas_search::data::fashion_mnist_embedded;
use nas_search::evaluator::{EvalRequest, Evaluator, trial_seed};
use nas_search::executor::{SPEC_FORMAT, SetupSpec, SpecTemplate, TrialOutcome, TrialSpec};
use nas_search::hp::{HpArch, HpName, HpSpace, HpSpec, HpTrainEvaluator, HpValues, split_text};
use nas_search::nets::NetworkFamily;
use nas_search::nets::nb201::Nb201Family;
use nas_search::spaces::{NetShape, Registry};
use nas_search::strategy::StrategyKind;
use nas_search::train::{EpochStats, TrainRecipe};
use nas_space::SearchSpace;
use nas_space::nb201::{Nb201Cell, Nb201Space};
use proptest::prelude::*;
use rand::SeedableRng;

const SPEC: &str = "lr=log:0.01..0.2,batch=32|64|128";

#[test]
fn specs_parse_into_grids() {
    let s = HpSpec::parse("batch=32|64|128, lr=log:0.01..0.2").unwrap();
    // canonical order lr, batch, ...
    assert_eq!(s.text(), SPEC);
    let lr = &s.dim(HpName::Lr).unwrap().grid;
    assert_eq!(lr.len(), 8);
    assert_eq!((lr[0], lr[7]), (0.01, 0.2));
    for w in lr.windows(2) {
        // log-spaced: each 20^(1/7) = 1.534x the last, up to the 4-digit rounding
        assert!((w[1] / w[0] - 20f64.powf(1.0 / 7.0)).abs() < 1e-3, "{lr:?}");
    }
    assert_eq!(s.dim(HpName::Batch).unwrap().grid, [32.0, 64.0, 128.0]);
    assert_eq!(s.combinations(), 24);
    let s = HpSpec::parse("lr=0.1..0.8,width=2..5,depth=1..20").unwrap();
    let lr = &s.dim(HpName::Lr).unwrap().grid;
    assert_eq!(*lr, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    assert_eq!(s.dim(HpName::Width).unwrap().grid, [2.0, 3.0, 4.0, 5.0]);
    let depth = &s.dim(HpName::Depth).unwrap().grid;
    assert_eq!(depth.len(), 8);
    assert_eq!((depth[0], depth[7]), (1.0, 20.0));
    assert!(depth.iter().all(|d| d.fract() == 0.0));
    assert_eq!(
        HpSpec::parse("batch=log:16..128")
            .unwrap()
            .dim(HpName::Batch)
            .unwrap()
            .grid,
        [16.0, 22.0, 29.0, 39.0, 53.0, 71.0, 95.0, 128.0]
    );
}

#[test]
fn bad_specs_are_refused_naming_hp_and_the_part() {
    for (spec, want) in [
        ("foo=1..2", "unknown hyperparameter \"foo\""),
        ("epochs=1..3", "epochs is the fidelity"),
        (
            "lr=0.2..0.01",
            "lower bound 0.2 is not below the upper bound 0.01",
        ),
        ("lr=0.1..0.1", "not below"),
        ("lr=-0.1..0.2", "-0.1 is not a learning rate"),
        ("lr=0|0.1", "0 is not a learning rate"),
        ("lr=log:0..1", "0 is not a learning rate"),
        ("lr=abc", "\"abc\" is not a number"),
        ("batch=32.5|64", "\"32.5\" is not a positive integer"),
        ("width=0..4", "\"0\" is not a positive integer"),
        ("depth=-1|2", "\"-1\" is not a positive integer"),
        ("lr=0.1,lr=0.2", "lr is given twice"),
        ("batch=32|32", "32 is listed twice"),
        ("depth=log:3", "log: needs a range"),
        ("lr", "not NAME=DOMAIN"),
        ("lr=", "no domain"),
        ("", "empty"),
    ] {
        let e = HpSpec::parse(spec).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("--hp") && text.contains(want),
            "{spec:?}: {text}"
        );
        // a usage error (exit code 2 in the CLI)
        assert!(
            matches!(e, nas_search::SearchError::Setting(_)),
            "{spec:?}: {e:?}"
        );
    }
}

fn space(spec: &str) -> HpSpace<Nb201Space> {
    HpSpace {
        inner: Nb201Space,
        spec: HpSpec::parse(spec).unwrap(),
    }
}

fn in_domain(s: &HpSpace<Nb201Space>, a: &HpArch<Nb201Cell>) {
    s.validate(a).unwrap();
    for d in s.spec.dims() {
        let v = a.hp.get(d.name).unwrap();
        assert!(d.grid.contains(&v), "{v} not in {:?}", d.grid);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn the_product_space_stays_in_its_domains(seed in any::<u64>()) {
        let s = space("lr=log:0.01..0.2,batch=32|64|128,width=2..5,depth=1|2");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let a = s.sample(&mut rng);
        let b = s.sample(&mut rng);
        in_domain(&s, &a);
        let m = s.mutate(&a, &mut rng);
        in_domain(&s, &m);
        prop_assert_eq!(s.distance(&a, &m), 1);
        let c = s.crossover(&a, &b, &mut rng);
        in_domain(&s, &c);
        for n in s.neighbours(&a) {
            in_domain(&s, &n);
            prop_assert_eq!(s.distance(&a, &n), 1);
        }
        let code = s.encode_decisions(&a);
        prop_assert_eq!(code.len(), s.decisions().len());
        for (c, n) in code.iter().zip(s.decisions()) {
            prop_assert!(*c < n);
        }
        prop_assert_eq!(s.decode_decisions(&code).unwrap(), a.clone());
        prop_assert_eq!(s.features(&a).len(), s.features(&b).len());
        prop_assert_eq!(s.parse(&s.to_text(&a)).unwrap(), a.clone());
        let json = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(serde_json::from_str::<HpArch<Nb201Cell>>(&json).unwrap(), a);
    }
}

#[test]
fn the_product_space_has_every_value_and_refuses_others() {
    let s = space("lr=log:0.01..0.2,batch=32|64|128");
    assert_eq!(s.size(), Some(15_625 * 24));
    assert_eq!(s.decisions(), [5, 5, 5, 5, 5, 5, 8, 3]);
    // the neighbours: 24 cells and 7 + 2 other values
    let a = s.sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    assert_eq!(s.neighbours(&a).len(), 24 + 9);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let seen: HashSet<(u64, usize)> = (0..400)
        .map(|_| {
            let x = s.sample(&mut rng);
            (x.hp.lr.unwrap().to_bits(), x.hp.batch.unwrap())
        })
        .collect();
    assert_eq!(seen.len(), 24, "sampling reaches every combination");
    let mut bad = a.clone();
    bad.hp.batch = Some(48);
    assert!(
        s.validate(&bad)
            .unwrap_err()
            .to_string()
            .contains("batch=48")
    );
    let mut bad = a.clone();
    bad.hp.width = Some(8);
    assert!(s.validate(&bad).is_err(), "width is not searched");
    assert!(s.decode_decisions(&[0, 0, 0, 0, 0, 0, 8, 0]).is_err());
    assert!(
        s.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
            .is_err()
    );
}

fn evaluator(spec: &str, examples: usize) -> HpTrainEvaluator<Nb201Cell> {
    let splits = Arc::new(fashion_mnist_embedded().unwrap().prepare(0.1, 0).unwrap());
    let recipe = TrainRecipe {
        train_examples: Some(examples),
        ..TrainRecipe::default()
    };
    let network = |s: NetShape| -> Option<Box<dyn NetworkFamily<Nb201Cell>>> {
        Some(Box::new(Nb201Family {
            channels: s.channels,
            cells_per_stage: s.cells,
        }))
    };
    HpTrainEvaluator::new(
        &network,
        NetShape {
            channels: 4,
            cells: 1,
        },
        splits,
        recipe,
        &HpSpec::parse(spec).unwrap(),
        None,
    )
    .unwrap()
}

const CELL: &str =
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|";

#[test]
fn a_trial_trains_with_its_own_values() {
    let ev = evaluator("lr=0.02|0.08,batch=16|32,width=2|4,depth=1|2", 96);
    let cell: Nb201Cell = CELL.parse().unwrap();
    let hp = HpValues::parse("lr=0.02,batch=32,width=2,depth=2").unwrap();
    // the trainer's configuration
    let trainer = ev.trainer(&hp).unwrap();
    assert_eq!(trainer.recipe().batch_size, 32);
    assert_eq!(trainer.recipe().lr, 0.02);
    assert_eq!(trainer.recipe().train_examples, Some(96));
    assert_eq!(
        ev.shape_of(&hp),
        NetShape {
            channels: 2,
            cells: 2
        }
    );
    let run = |hp: HpValues| {
        let epochs = Mutex::new(Vec::<EpochStats>::new());
        let t = ev.trainer(&hp).unwrap();
        let req = EvalRequest {
            arch: &cell,
            fidelity: 2,
            trial_id: 0,
            seed: 7,
            deadline: None,
        };
        let m = t
            .evaluate_observed(&req, &mut |s| epochs.lock().unwrap().push(*s))
            .unwrap();
        let full = ev
            .evaluate(&EvalRequest {
                arch: &HpArch { arch: cell, hp },
                fidelity: req.fidelity,
                trial_id: req.trial_id,
                seed: req.seed,
                deadline: None,
            })
            .unwrap();
        assert_eq!(m, full, "the evaluator trains as its trainer does");
        (m, epochs.into_inner().unwrap())
    };
    let (m, epochs) = run(hp);
    // cosine from the trial's lr: half of it after the first of two epochs
    assert!((epochs[0].lr - 0.01).abs() < 1e-6, "{:?}", epochs[0]);
    // the network of its width and depth
    let cost = ev.network_cost(&HpArch { arch: cell, hp }).unwrap();
    assert_eq!(m.params, Some(cost.params));
    let wide = HpValues {
        width: Some(4),
        ..hp
    };
    assert!(
        ev.network_cost(&HpArch {
            arch: cell,
            hp: wide
        })
        .unwrap()
        .params
            > cost.params
    );
    // another batch size trains differently (same seed, same everything else)
    let (other, _) = run(HpValues {
        batch: Some(16),
        ..hp
    });
    assert_ne!(other.loss, m.loss);
    // values off the grid are refused, not trained at a default
    let off = HpArch {
        arch: cell,
        hp: HpValues {
            width: Some(8),
            ..hp
        },
    };
    assert!(ev.network_cost(&off).is_none());
}

fn tiny(strategy: StrategyKind, n: u64) -> Search {
    Search::new()
        .space("nb201")
        .evaluator("train")
        .strategy(strategy)
        .hp(Some("lr=log:0.01..0.2,batch=16|32,width=2|3"))
        .epochs(2)
        .train_examples(Some(48))
        .evaluations(n)
        .seed(3)
}

fn hp_of(arch: &str) -> HpValues {
    let (_, hp) = split_text(arch).unwrap_or_else(|| panic!("no values in {arch:?}"));
    hp.unwrap()
}

#[test]
fn every_multi_trial_strategy_searches_hyperparameters() {
    let spec = HpSpec::parse("lr=log:0.01..0.2,batch=16|32,width=2|3").unwrap();
    let all = StrategyKind::all();
    assert!(all.len() >= 11, "{all:?}");
    for kind in all {
        let name = kind.name();
        let r = tiny(kind, 6)
            .run()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.trials.len(), 6, "{name}");
        let mut seen = HashSet::new();
        for t in &r.trials {
            let hp = hp_of(&t.arch);
            for d in spec.dims() {
                let v = hp.get(d.name).unwrap();
                assert!(d.index(v).is_some(), "{name}: {v} off {:?}", d.grid);
            }
            seen.insert(hp);
        }
        assert!(seen.len() >= 2, "{name}: one combination in all: {seen:?}");
        let flags = r.train_flags.clone().unwrap();
        assert_eq!(flags, hp_of(&r.best.arch).train_flags(), "{name}");
        assert!(
            flags.contains("--lr ") && flags.contains("--batch-size "),
            "{flags}"
        );
    }
}

#[test]
fn resume_keeps_the_hyperparameters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let first = tiny(StrategyKind::parse("rea").unwrap(), 3)
        .output_dir(&out)
        .run()
        .unwrap();
    let resumed = tiny(StrategyKind::parse("rea").unwrap(), 5)
        .output_dir(&out)
        .resume(Some(true))
        .run()
        .unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.trials.len(), 5);
    for (a, b) in first.trials.iter().zip(&resumed.trials) {
        assert_eq!(a.arch, b.arch);
    }
    let whole = tiny(StrategyKind::parse("rea").unwrap(), 5).run().unwrap();
    let archs = |r: &nas_search::builder::SearchReport| -> Vec<String> {
        r.trials.iter().map(|t| t.arch.clone()).collect()
    };
    assert_eq!(archs(&resumed), archs(&whole), "as if never interrupted");
    // best.txt is the architecture alone (nas train reads it), summary.json has the flags
    let best = std::fs::read_to_string(out.join("best.txt")).unwrap();
    assert!(
        best.parse::<Nb201Cell>().is_ok() || best.trim().parse::<Nb201Cell>().is_ok(),
        "{best}"
    );
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(summary.contains("\"train_flags\": \"--lr "), "{summary}");
    // another --hp cannot continue it
    let e = tiny(StrategyKind::parse("rea").unwrap(), 6)
        .hp(Some("lr=log:0.01..0.1"))
        .output_dir(&out)
        .resume(Some(true))
        .run()
        .unwrap_err();
    assert!(e.to_string().contains("hp["), "{e}");
}

#[test]
fn hp_is_refused_where_it_cannot_apply() {
    let e = Search::new()
        .evaluator("nb201-table")
        .hp(Some(SPEC))
        .evaluations(2)
        .run()
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("--hp") && text.contains("nb201-table"),
        "{text}"
    );
    assert!(matches!(e, nas_search::SearchError::Setting(_)));
    let e = Search::new()
        .hp(Some("lr=0.1|0.2"))
        .lr(Some(0.1))
        .evaluations(2)
        .run()
        .unwrap_err();
    assert!(e.to_string().contains("--lr"), "{e}");
    let e = Search::new()
        .hp(Some("width=2|3"))
        .strategy_spec("darts")
        .run_any()
        .err()
        .unwrap();
    assert!(e.to_string().contains("--hp"), "{e}");
    // latency is costed at one width and depth: refused rather than silently left out
    for (objectives, limit) in [(Some("acc,latency"), None), (None, Some("5"))] {
        let e = Search::new()
            .hp(Some(SPEC))
            .objectives(objectives)
            .max_latency_ms(limit)
            .evaluations(2)
            .run()
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("--hp") && text.contains("latency"), "{text}");
        assert!(matches!(e, nas_search::SearchError::Setting(_)));
    }
}

#[test]
fn a_trial_spec_carries_the_hyperparameters() {
    // what `nas eval --spec` runs for a Slurm or Ray trial
    let search = tiny(StrategyKind::parse("random").unwrap(), 1);
    let mut setup = search.setup().clone();
    setup.hp = Some(HpSpec::parse("lr=log:0.01..0.2,batch=16|32,width=2|3").unwrap());
    let spec_setup = SetupSpec::of(&setup);
    assert_eq!(
        spec_setup.hp.as_deref(),
        Some("lr=log:0.01..0.2,batch=16|32,width=2|3")
    );
    let json = serde_json::to_string(&spec_setup).unwrap();
    let back: SetupSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back.to_setup().unwrap().hp, setup.hp);
    let ev = nas_search::hp::evaluator_for(&nas_search::spaces::nb201::Nb201, &setup).unwrap();
    let cell: Nb201Cell = CELL.parse().unwrap();
    let hp = HpValues::parse("lr=0.01,batch=16,width=3").unwrap();
    let arch = HpArch { arch: cell, hp };
    let spec = |arch: serde_json::Value| TrialSpec {
        format: SPEC_FORMAT.into(),
        template: SpecTemplate {
            space: "nb201".into(),
            evaluator: "train".into(),
            setup: back.clone(),
        },
        evaluator_id: Evaluator::<HpArch<Nb201Cell>>::name(&ev),
        trial: 4,
        arch,
        fidelity: 1,
        seed: trial_seed(3, 4),
    };
    let registry = Registry::builtin();
    let out =
        nas_search::executor::run_trial(&registry, &spec(serde_json::to_value(&arch).unwrap()))
            .unwrap();
    let TrialOutcome::Finished(f) = out else {
        panic!("{out:?}")
    };
    let nas_search::Outcome::Ok(m) = f.outcome else {
        panic!("{:?}", f.outcome)
    };
    // trained at width 3: its cost
    assert_eq!(m.params, Some(ev.network_cost(&arch).unwrap().params));
    let local = ev
        .evaluate(&EvalRequest {
            arch: &arch,
            fidelity: 1,
            trial_id: 4,
            seed: trial_seed(3, 4),
            deadline: None,
        })
        .unwrap();
    assert_eq!(m, local);
    // an architecture without its values is refused
    let e = nas_search::executor::run_trial(&registry, &spec(serde_json::to_value(cell).unwrap()))
        .unwrap_err();
    assert!(e.to_string().contains("hyperparameters"), "{e}");
}
