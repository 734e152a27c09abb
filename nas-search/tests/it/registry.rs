//! The registries: every built-in space, strategy and evaluator is listed once and found by
//! name, and a space added in a few lines (here, in this test) is searchable from the builder
//! with a strategy and an evaluator, without touching the library.

use nas_search::builder::Search;
use nas_search::data::DataSpec;
use nas_search::nets::chain::ChainFamily;
use nas_search::nets::{NetworkCost, NetworkFamily};
use nas_search::spaces::{NetShape, Purpose, Registry, SpaceDef};
use nas_search::synthetic::{ToyArch, ToySpace};
use nas_search::train::TrainRecipe;
use nas_search::{SearchError, StrategyKind};
use nas_space::chain::{ChainArch, ChainLayer, ChainOp};
use nas_tensor::TensorError;
use nas_tensor::nn::Module;

/// The toy space: two decisions of three options, each a hidden layer of 8, 16 or 32 units of
/// an MLP (trained by the chain network).
mod toy {
    use super::*;

    pub struct Toy;

    /// The MLP of a toy architecture: the chain network of its dense layers.
    pub struct ToyMlp;

    fn chain(arch: &ToyArch) -> ChainArch {
        let layer = |c: &u8| ChainLayer {
            op: ChainOp::Dense,
            width: 8 << c,
        };
        ChainArch {
            layers: arch.0.iter().map(layer).collect(),
        }
    }

    impl NetworkFamily<ToyArch> for ToyMlp {
        fn name(&self) -> String {
            "toy-mlp".into()
        }
        fn build(
            &self,
            arch: &ToyArch,
            input: (usize, usize, usize),
            classes: usize,
            seed: u64,
        ) -> Result<Box<dyn Module>, TensorError> {
            ChainFamily.build(&chain(arch), input, classes, seed)
        }
        fn cost(
            &self,
            arch: &ToyArch,
            input: (usize, usize, usize),
            classes: usize,
        ) -> NetworkCost {
            ChainFamily.cost(&chain(arch), input, classes)
        }
    }

    impl SpaceDef for Toy {
        type Space = ToySpace;
        const NAME: &'static str = "toy";
        const ABOUT: &'static str = "two hidden layers of 8, 16 or 32 units";
        fn space(&self) -> ToySpace {
            ToySpace {
                dims: 2,
                choices: 3,
            }
        }
        fn dot(&self, arch: &ToyArch) -> String {
            format!("digraph toy {{ \"{arch}\" }}\n")
        }
        fn shape(&self, _: Purpose) -> Option<NetShape> {
            Some(NetShape {
                channels: 0,
                cells: 0,
            })
        }
        fn network(&self, _: NetShape) -> Option<Box<dyn NetworkFamily<ToyArch>>> {
            Some(Box::new(ToyMlp))
        }
    }
}

#[test]
fn the_builtin_registry_lists_each_space_and_evaluator_once() {
    let r = Registry::builtin();
    assert_eq!(
        r.names(),
        ["nb201", "darts", "nb101", "chain", "chain-mlp", "rnn"]
    );
    let evaluators: Vec<&str> = r.evaluators().map(|e| e.name()).collect();
    assert_eq!(evaluators, ["train", "nb201-table"]);
    for s in r.spaces() {
        assert!(r.describe_spaces().contains(s.about()), "{}", s.name());
        // Every built-in space samples, prints, parses back and draws its architectures.
        let a = s.sample(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7));
        let text = s.to_text(&a).unwrap();
        assert_eq!(s.to_text(&s.parse(&text).unwrap()).unwrap(), text);
        assert!(s.dot(&a).unwrap().contains("digraph"), "{}", s.name());
    }
    let supernets: Vec<&str> = r
        .spaces()
        .filter(|s| s.supernet().is_some())
        .map(|s| s.name())
        .collect();
    assert_eq!(supernets, ["nb201", "darts", "rnn"]);
    // An unknown name is a usage error listing the known ones.
    match r.space("imagenet") {
        Err(SearchError::Setting(m)) => assert!(m.contains("nb201, darts"), "{m}"),
        other => panic!("{:?}", other.map(|s| s.name())),
    }
}

#[test]
fn the_strategy_registry_names_parses_and_labels_every_strategy() {
    let names: Vec<&str> = StrategyKind::all().iter().map(|k| k.name()).collect();
    assert_eq!(
        names,
        [
            "random",
            "rea",
            "reinforce",
            "local",
            "hyperband",
            "tpe",
            "lstm-controller",
            "bananas",
            "bohb",
            "nsga2",
            "pareto"
        ]
    );
    for k in StrategyKind::all() {
        assert_eq!(StrategyKind::parse(k.name()).unwrap(), k);
        for alias in k.aliases() {
            assert_eq!(StrategyKind::parse(alias).unwrap().name(), k.name());
        }
        assert_eq!(k.label(), k.name(), "defaults are not shown");
    }
    let rea = StrategyKind::parse("evolution:population_size=20").unwrap();
    assert_eq!(rea.label(), "rea:population_size=20");
    assert_eq!(StrategyKind::parse(&rea.label()).unwrap(), rea);
    assert!(StrategyKind::parse("annealing").is_err());
    assert!(StrategyKind::parse("rea:colour=3").is_err());
    // Hyperband climbs from 1 epoch to the training fidelity; its table ladder stays.
    let mut hb = StrategyKind::parse("hyperband").unwrap();
    hb.set_fidelity(4, true).unwrap();
    assert_eq!(hb.fidelities(4), [1, 4]);
    assert!(
        StrategyKind::parse("hb")
            .unwrap()
            .set_fidelity(1, true)
            .is_err()
    );
    let hb = StrategyKind::parse("hb").unwrap().with_fidelity(12);
    assert_eq!(hb.fidelities(12), [12, 200]);
}

#[test]
fn a_space_added_in_a_test_is_searched_from_the_builder_and_listed() {
    let registry = Registry::builtin().with_space(toy::Toy);
    assert!(registry.describe_spaces().contains("toy  "));
    let toy = registry.space("toy").unwrap();
    assert_eq!(toy.size(), Some(9));
    // Its architectures parse and draw through the registry, like any built-in one.
    let (space, arch) = registry.resolve(Some("toy"), "2,0").unwrap();
    assert_eq!(space.name(), "toy");
    assert!(space.dot(&arch).unwrap().contains("2,0"));

    let recipe = TrainRecipe {
        lr: 0.05,
        ..TrainRecipe::default()
    };
    let report = Search::new()
        .registry(registry.clone())
        .space("toy")
        .strategy(StrategyKind::parse("random").unwrap())
        .data(DataSpec::DigitsEmbedded)
        .train(recipe, 5, 1, 1)
        .evaluations(4)
        .seed(5)
        .run()
        .unwrap();
    assert_eq!(report.space, "toy");
    assert_eq!(report.trials.len(), 4);
    assert!(
        report.evaluator.starts_with("train/toy-mlp/"),
        "{}",
        report.evaluator
    );
    // Each trial trained its own MLP: 64 inputs (8x8 digits), two hidden layers, 10 classes.
    for t in &report.trials {
        let w: Vec<u64> = t
            .arch
            .split(',')
            .map(|c| 8 << c.parse::<u64>().unwrap())
            .collect();
        let params = 64 * w[0] + w[0] + w[0] * w[1] + w[1] + w[1] * 10 + 10;
        assert_eq!(t.params, Some(params), "{}", t.arch);
        assert!(t.valid_accuracy.unwrap() > 50.0, "{t:?}");
    }
    // The same builder with the table evaluator is refused: the table holds NB201 cells only.
    let e = Search::new()
        .registry(registry)
        .space("toy")
        .table("cifar10", 12)
        .run()
        .unwrap_err();
    assert!(
        matches!(&e, SearchError::Setting(m) if m.contains("nb201")),
        "{e}"
    );
}

/// The recurrent-cell space searched through the builder with every multi-trial strategy the
/// issue names (and the LSTM controller): each trial is a language model scored by its
/// validation bpc (`loss`, with `valid_accuracy = 100 * 2^-bpc`); the text data is the default
/// of the space's kind when none is given, and data of the other kind is refused.
#[test]
fn the_rnn_space_searches_text_through_the_builder() {
    use nas_search::data::DataKind;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t.txt");
    let line = "to be or not to be, that is the question: whether 'tis nobler in the mind\n";
    std::fs::write(&path, line.repeat(120)).unwrap();
    let data: DataSpec = format!("text:{}", path.display()).parse().unwrap();
    assert_eq!(data.kind(), DataKind::Text);
    // Both text forms print as they parse (settings.json stores them so).
    for d in [data.clone(), "shakespeare".parse().unwrap()] {
        assert_eq!(d.to_string().parse::<DataSpec>().unwrap(), d);
    }
    assert_eq!(DataKind::Text.default_spec().to_string(), "shakespeare");
    let rnn = Registry::builtin();
    let rnn = rnn.space("rnn").unwrap();
    assert_eq!(rnn.data_kind(), DataKind::Text);
    assert_eq!(rnn.native_format(), Some("darts"));
    let search = |strategy: &str| {
        Search::new()
            .space("rnn")
            .strategy_spec(strategy)
            .data(data.clone())
            .epochs(1)
            .train_examples(Some(16))
            .batch_size(Some(8))
            .net(nas_search::spaces::NetSettings {
                channels: Some(8),
                cells: None,
            })
            .evaluations(3)
            .seed(2)
    };
    for strategy in [
        "random",
        "evolution:population_size=2",
        "local",
        "lstm-controller",
    ] {
        let r = search(strategy).run().unwrap();
        assert_eq!(r.space, "rnn");
        assert_eq!(r.trials.len(), 3, "{strategy}");
        assert!(r.evaluator.starts_with("text-lm/"), "{}", r.evaluator);
        for t in &r.trials {
            let bpc = t.loss.unwrap();
            assert!(bpc > 0.5 && bpc < 6.0, "{strategy}: {t:?}");
            let p = 100.0 * (-bpc).exp2();
            assert!((t.valid_accuracy.unwrap() - p).abs() < 1e-9);
            assert!(t.arch.starts_with("Genotype(recurrent=["), "{}", t.arch);
        }
    }
    // Image data for the rnn space, text data for an image space: refused, naming --data.
    for (space, data) in [("rnn", DataSpec::DigitsEmbedded), ("nb201", data.clone())] {
        let e = search("random").space(space).data(data).run().unwrap_err();
        assert!(matches!(e, SearchError::Data(_)), "{e}");
        assert!(e.to_string().contains("--data"), "{e}");
    }
}
