//! Multi-trial search on the NAS-Bench-201 table: the benchmark runner's throughput.
//!
//! `cargo bench -p benches --bench search`

use criterion::{Criterion, criterion_group, criterion_main};
use nas_search::benchmark::{BenchmarkConfig, run_nb201_benchmark};
use nas_search::search::{Budget, SearchConfig, run_search};
use nas_search::strategy::StrategyKind;
use nas_search::tabular::{Dataset, Nb201Evaluator, Nb201Table};
use nas_space::nb201::Nb201Space;
use std::hint::black_box;

fn search(c: &mut Criterion) {
    let table = Nb201Table::embedded().expect("embedded table");
    let mut g = c.benchmark_group("nb201_search");
    g.sample_size(10);
    // The acceptance workload: 500 runs x 4 strategies x 100 evaluations on 2 threads.
    let mut cfg = BenchmarkConfig::new(500, 100, Dataset::Cifar10);
    cfg.threads = 2;
    g.bench_function("benchmark_500runs_4strategies_100evals_2threads", |b| {
        b.iter(|| black_box(run_nb201_benchmark(table.clone(), &cfg).expect("benchmark")))
    });
    // One run of each strategy, 100 evaluations, one thread.
    let ev = Nb201Evaluator::new(table.clone(), Dataset::Cifar10);
    for name in ["random", "rea", "reinforce", "local", "hyperband"] {
        let kind = StrategyKind::parse(name).expect("strategy");
        g.bench_function(format!("one_run_100evals/{name}"), |b| {
            b.iter(|| {
                let mut s = kind.build(&Nb201Space).expect("build");
                let cfg = SearchConfig::new(1, Budget::evaluations(100));
                black_box(run_search(&Nb201Space, s.as_mut(), &ev, &cfg).expect("search"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
