//! The NAS-Bench-201 benchmark runner: many independent seeded runs of each strategy on the
//! table, in parallel, with summary statistics, anytime curves and plots.

use crate::error::{Result, SearchError};
use crate::plot::{Plot, Style};
use crate::search::{Budget, SearchConfig, run_search};
use crate::stats::{mean, std_dev};
use crate::strategy::StrategyKind;
use crate::tabular::{Dataset, Nb201Evaluator, Nb201Table};
use nas_space::nb201::Nb201Space;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Settings of [`run_nb201_benchmark`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkConfig {
    /// Independent runs per strategy (run `i` uses seed `base_seed + i` for every strategy).
    pub runs: usize,
    /// Evaluations per run.
    pub budget: u64,
    /// The data set searched (its 12-epoch validation accuracy is what strategies see) and
    /// reported.
    pub dataset: Dataset,
    /// Data sets whose 200-epoch test accuracy of each run's final choice is also reported
    /// ([`StrategyReport::reported`]): the NAS-Bench-201 paper's protocol searches on CIFAR-10
    /// and reports all three. Empty: the searched one only.
    #[serde(default)]
    pub report: Vec<Dataset>,
    /// The strategies compared.
    pub strategies: Vec<StrategyKind>,
    /// Threads running independent runs (each run evaluates on its own thread).
    pub threads: usize,
    /// Seed of run 0.
    pub base_seed: u64,
    /// Skip cells equivalent to evaluated ones (off in the literature's protocol).
    pub skip_equivalent: bool,
    /// Optional simulated-cost budget (epochs) on top of `budget` evaluations, for
    /// multi-fidelity strategies; a run that stops early keeps its final incumbent in the
    /// anytime curve.
    #[serde(default)]
    pub cost_budget: Option<f64>,
    /// Multi-objective benchmark: the objectives whose front each run is scored by (the
    /// hypervolume of [`StrategyReport::hypervolume`]); also set in every strategy that takes
    /// objectives.
    #[serde(default)]
    pub objectives: Option<crate::pareto::Objectives>,
}

impl BenchmarkConfig {
    /// `runs` x `budget` on `dataset` with random, REA, REINFORCE and local search, all threads.
    pub fn new(runs: usize, budget: u64, dataset: Dataset) -> Self {
        BenchmarkConfig {
            runs,
            budget,
            dataset,
            strategies: ["random", "rea", "reinforce", "local"]
                .iter()
                .map(|s| StrategyKind::parse(s).expect("known names"))
                .collect(),
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            base_seed: 0,
            skip_equivalent: false,
            cost_budget: None,
            objectives: None,
            report: Vec::new(),
        }
    }
}

/// Results of one strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyReport {
    /// Strategy label ([`StrategyKind::label`]: name and non-default settings).
    pub name: String,
    /// Reported (200-epoch test) accuracy of each run's final choice.
    pub final_test: Vec<f64>,
    /// Mean of `final_test`.
    pub mean: f64,
    /// Sample standard deviation of `final_test`.
    pub std: f64,
    /// Table optimum minus `mean`.
    pub gap: f64,
    /// Mean over runs of the incumbent's reported accuracy after `e + 1` evaluations.
    pub anytime_mean: Vec<f64>,
    /// Standard deviation over runs of the same.
    pub anytime_std: Vec<f64>,
    /// With objectives: each run's hypervolume after the last evaluation, of the front of
    /// the evaluated cells by (12-epoch validation accuracy, cost), reference point accuracy
    /// 0 % and the largest cost in the table, as a fraction of that box.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypervolume: Vec<f64>,
    /// The same front scored with its members' 200-epoch test accuracies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypervolume_test: Vec<f64>,
    /// Mean over runs of the (validation) hypervolume after `e + 1` evaluations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypervolume_anytime: Vec<f64>,
    /// One entry per [`BenchmarkConfig::report`] data set: the 200-epoch test accuracy there of
    /// each run's final choice (chosen on [`BenchmarkConfig::dataset`]'s validation accuracy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reported: Vec<ReportedAccuracy>,
}

/// The final choices' test accuracy on one reported data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedAccuracy {
    /// The data set.
    pub dataset: Dataset,
    /// 200-epoch test accuracy of each run's final choice, run order.
    pub final_test: Vec<f64>,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation.
    pub std: f64,
}

/// Hypervolumes of one run: after each evaluation (validation), and at the end with test
/// accuracies.
fn run_hypervolumes(
    trials: &[crate::history::Trial<nas_space::nb201::Nb201Cell>],
    objectives: crate::pareto::Objectives,
    ref_cost: f64,
) -> (Vec<f64>, f64) {
    use crate::pareto::accuracy_cost_hypervolume;
    let scale = 100.0 * ref_cost;
    let mut valid = Vec::new();
    let mut test = Vec::new();
    let mut curve = Vec::new();
    for t in trials {
        if let (Some(m), Some([_, c])) = (t.metrics(), objectives.of_trial(t)) {
            valid.push((m.valid_accuracy, c));
            test.push((m.test_accuracy.unwrap_or(f64::NAN), c));
        }
        if t.cached_from.is_none() {
            curve.push(accuracy_cost_hypervolume(&valid, 0.0, ref_cost) / scale);
        }
    }
    // The front is chosen by validation accuracy; its members are then scored by test.
    let vecs: Vec<Vec<f64>> = valid.iter().map(|&(a, c)| vec![-a, c]).collect();
    let front = crate::pareto::non_dominated_sort(&vecs)
        .into_iter()
        .next()
        .unwrap_or_default();
    let chosen: Vec<(f64, f64)> = front.iter().map(|&i| test[i]).collect();
    (
        curve,
        accuracy_cost_hypervolume(&chosen, 0.0, ref_cost) / scale,
    )
}

/// Results of a benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkReport {
    /// The settings.
    pub config: BenchmarkConfig,
    /// Best 200-epoch test accuracy in the table for the data set.
    pub optimum: f64,
    /// One report per strategy, in the order of the settings.
    pub strategies: Vec<StrategyReport>,
    /// Wall time of the whole benchmark, seconds.
    pub wall_time_s: f64,
    /// With objectives: the reference cost of the hypervolumes (the table's largest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervolume_reference: Option<f64>,
}

/// Runs the benchmark: `runs` searches of `budget` evaluations per strategy, distributed over
/// `threads` threads; deterministic for a given configuration (thread count aside).
pub fn run_nb201_benchmark(
    table: Arc<Nb201Table>,
    cfg: &BenchmarkConfig,
) -> Result<BenchmarkReport> {
    if cfg.runs == 0 || cfg.budget == 0 || cfg.threads == 0 || cfg.strategies.is_empty() {
        return Err(SearchError::Config(format!(
            "benchmark needs runs, budget, threads and strategies > 0 (got {}, {}, {}, {})",
            cfg.runs,
            cfg.budget,
            cfg.threads,
            cfg.strategies.len()
        )));
    }
    let t0 = std::time::Instant::now();
    let optimum = table.optimum(cfg.dataset).test_200[cfg.dataset.column()];
    if let Some(o) = cfg.objectives
        && o.cost == crate::pareto::CostKind::Latency
    {
        return Err(SearchError::Config(
            "the table benchmark has no latency objective (it would measure every network); \
             use acc,params or acc,flops"
                .into(),
        ));
    }
    let ref_cost = cfg.objectives.map(|o| {
        table
            .rows()
            .iter()
            .filter_map(|r| o.cost.of_cost(&r.cost[cfg.dataset.column()]))
            .fold(0.0, f64::max)
    });
    let evaluator = Nb201Evaluator::new(table.clone(), cfg.dataset);
    let n_jobs = cfg.runs * cfg.strategies.len();
    let next = AtomicUsize::new(0);
    type RunResult = (f64, Vec<f64>, Option<(Vec<f64>, f64)>, Vec<f64>);
    let results: Mutex<Vec<Option<Result<RunResult>>>> =
        Mutex::new((0..n_jobs).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..cfg.threads.min(n_jobs) {
            scope.spawn(|| {
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    if j >= n_jobs {
                        return;
                    }
                    let (si, run) = (j / cfg.runs, j % cfg.runs);
                    let r = (|| -> Result<RunResult> {
                        let mut kind = cfg.strategies[si].clone();
                        if let Some(o) = cfg.objectives {
                            kind.set_objectives(o);
                        }
                        let mut strategy = kind.build(&Nb201Space)?;
                        let budget = Budget {
                            max_cost: cfg.cost_budget,
                            ..Budget::evaluations(cfg.budget)
                        };
                        let mut sc = SearchConfig::new(cfg.base_seed + run as u64, budget);
                        sc.skip_equivalent = cfg.skip_equivalent;
                        let out = run_search(&Nb201Space, strategy.as_mut(), &evaluator, &sc)?;
                        let best = out
                            .best()
                            .and_then(|t| t.metrics().and_then(|m| m.test_accuracy))
                            .unwrap_or(f64::NAN);
                        // the final choice (by validation on cfg.dataset) on the reported sets
                        let reported: Vec<f64> = cfg
                            .report
                            .iter()
                            .map(|d| {
                                out.best()
                                    .map_or(f64::NAN, |t| table.get(&t.arch).test_200[d.column()])
                            })
                            .collect();
                        let mut curve: Vec<f64> = out
                            .history
                            .anytime_reported()
                            .into_iter()
                            .map(|v| v.unwrap_or(f64::NAN))
                            .collect();
                        let last = curve.last().copied().unwrap_or(f64::NAN);
                        curve.resize(cfg.budget as usize, last);
                        let hv = cfg.objectives.zip(ref_cost).map(|(o, r)| {
                            let (mut c, test) = run_hypervolumes(&out.history.trials, o, r);
                            let last = c.last().copied().unwrap_or(0.0);
                            c.resize(cfg.budget as usize, last);
                            (c, test)
                        });
                        Ok((best, curve, hv, reported))
                    })();
                    if let Ok(mut res) = results.lock() {
                        res[j] = Some(r);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| SearchError::Config("a benchmark thread panicked".into()))?;
    let mut reports = Vec::new();
    let mut it = results.into_iter();
    for kind in &cfg.strategies {
        let mut finals = Vec::with_capacity(cfg.runs);
        let mut curves = Vec::with_capacity(cfg.runs);
        let (mut hv, mut hv_test, mut hv_curves) = (Vec::new(), Vec::new(), Vec::new());
        let mut reported: Vec<Vec<f64>> = vec![Vec::with_capacity(cfg.runs); cfg.report.len()];
        for _ in 0..cfg.runs {
            let (b, c, h, rep) = it
                .next()
                .flatten()
                .ok_or_else(|| SearchError::Config("a benchmark run did not finish".into()))??;
            finals.push(b);
            curves.push(c);
            for (all, v) in reported.iter_mut().zip(rep) {
                all.push(v);
            }
            if let Some((curve, test)) = h {
                hv.push(curve.last().copied().unwrap_or(0.0));
                hv_test.push(test);
                hv_curves.push(curve);
            }
        }
        let hypervolume_anytime: Vec<f64> = if hv_curves.is_empty() {
            Vec::new()
        } else {
            (0..cfg.budget as usize)
                .map(|e| mean(&hv_curves.iter().map(|c| c[e]).collect::<Vec<f64>>()))
                .collect()
        };
        let len = cfg.budget as usize;
        let mut anytime_mean = Vec::with_capacity(len);
        let mut anytime_std = Vec::with_capacity(len);
        for e in 0..len {
            let col: Vec<f64> = curves
                .iter()
                .filter_map(|c| c.get(e).copied())
                .filter(|v| v.is_finite())
                .collect();
            anytime_mean.push(if col.is_empty() { f64::NAN } else { mean(&col) });
            anytime_std.push(std_dev(&col));
        }
        let m = mean(&finals);
        reports.push(StrategyReport {
            name: kind.label(),
            std: std_dev(&finals),
            gap: optimum - m,
            mean: m,
            final_test: finals,
            anytime_mean,
            anytime_std,
            hypervolume: hv,
            hypervolume_test: hv_test,
            hypervolume_anytime,
            reported: cfg
                .report
                .iter()
                .zip(reported)
                .map(|(&dataset, final_test)| ReportedAccuracy {
                    dataset,
                    mean: mean(&final_test),
                    std: std_dev(&final_test),
                    final_test,
                })
                .collect(),
        });
    }
    Ok(BenchmarkReport {
        config: cfg.clone(),
        optimum,
        strategies: reports,
        wall_time_s: t0.elapsed().as_secs_f64(),
        hypervolume_reference: ref_cost,
    })
}

impl BenchmarkReport {
    /// The markdown table, the wall time and, with `dir`, the files written there: what
    /// `nas bench search` prints.
    pub fn summary(&self, dir: Option<&Path>) -> String {
        let c = &self.config;
        let mut text = self.markdown();
        let _ = writeln!(
            text,
            "\n{} runs x {} strategies x {} evaluations in {:.2} s wall time ({} thread(s))",
            c.runs,
            c.strategies.len(),
            c.budget,
            self.wall_time_s,
            c.threads
        );
        if let Some(d) = dir {
            let _ = writeln!(
                text,
                "written: {}/{{summary.md, report.json, anytime.csv, anytime.svg}}",
                d.display()
            );
        }
        text
    }

    /// The report as JSON without the anytime curves (they are long: they stay in
    /// `report.json`).
    pub fn brief_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        for s in value["strategies"].as_array_mut().into_iter().flatten() {
            if let Some(o) = s.as_object_mut() {
                o.remove("anytime_mean");
                o.remove("anytime_std");
            }
        }
        value
    }

    /// Welch's one-sided t-test of every other strategy's final reported accuracy against the
    /// strategy labelled `baseline` (alternative: the other's mean is larger), in report order;
    /// empty when no strategy has that label.
    pub fn welch_against(&self, baseline: &str) -> Vec<(String, crate::stats::Welch)> {
        let Some(base) = self.strategies.iter().find(|s| s.name == baseline) else {
            return Vec::new();
        };
        self.strategies
            .iter()
            .filter(|s| s.name != baseline)
            .map(|s| {
                (
                    s.name.clone(),
                    crate::stats::welch(&s.final_test, &base.final_test),
                )
            })
            .collect()
    }

    /// Welch's one-sided t-test of every other strategy's final (validation) hypervolume
    /// against the strategy labelled `baseline` (alternative: the other's mean is larger).
    pub fn hypervolume_welch_against(&self, baseline: &str) -> Vec<(String, crate::stats::Welch)> {
        let Some(base) = self.strategies.iter().find(|s| s.name == baseline) else {
            return Vec::new();
        };
        self.strategies
            .iter()
            .filter(|s| s.name != baseline && !s.hypervolume.is_empty())
            .map(|s| {
                (
                    s.name.clone(),
                    crate::stats::welch(&s.hypervolume, &base.hypervolume),
                )
            })
            .collect()
    }

    /// With objectives: a Markdown table of the hypervolumes (validation and test), mean ±
    /// std over the runs.
    pub fn hypervolume_markdown(&self) -> Option<String> {
        let o = self.config.objectives?;
        let mut s = format!(
            "hypervolume of each run's front (chosen by 12-epoch validation accuracy) as a fraction of the box from (0 %, {} {}) to (100 %, 0)\n\n| strategy | hypervolume ({}, 12-ep. validation), mean ± std over {} runs | same front, 200-ep. test accuracy |\n| --- | --- | --- |\n",
            o.cost.name(),
            self.hypervolume_reference.unwrap_or(f64::NAN),
            o.label(),
            self.config.runs
        );
        for r in &self.strategies {
            let _ = writeln!(
                s,
                "| {} | {:.4} ± {:.4} | {:.4} ± {:.4} |",
                r.name,
                mean(&r.hypervolume),
                std_dev(&r.hypervolume),
                mean(&r.hypervolume_test),
                std_dev(&r.hypervolume_test)
            );
        }
        Some(s)
    }

    /// A Markdown table: strategy, mean ± std of the reported accuracy, gap to the optimum.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "| strategy | {} test acc. (200 ep), mean ± std over {} runs | gap to optimum {:.2} |\n| --- | --- | --- |\n",
            self.config.dataset.name(),
            self.config.runs,
            self.optimum
        );
        for r in &self.strategies {
            let _ = writeln!(
                s,
                "| {} | {:.2} ± {:.2} | {:.2} |",
                r.name, r.mean, r.std, r.gap
            );
        }
        s
    }

    /// With [`BenchmarkConfig::report`]: the NAS-Bench-201 paper's table (its Table 5's
    /// layout): one row per strategy, one column per reported data set, test accuracy of the
    /// final choices mean ± std; the search data set is named in the header.
    pub fn report_markdown(&self) -> Option<String> {
        let c = &self.config;
        if c.report.is_empty() {
            return None;
        }
        let names: Vec<&str> = c.report.iter().map(|d| d.name()).collect();
        let mut s = format!(
            "searched on {} (12-epoch validation), reported: 200-epoch test accuracy, mean ± std over {} runs\n| strategy | {} |\n|{}\n",
            c.dataset.name(),
            c.runs,
            names.join(" | "),
            " --- |".repeat(names.len() + 1)
        );
        for r in &self.strategies {
            let cells: Vec<String> = r
                .reported
                .iter()
                .map(|a| format!("{:.2} ± {:.2}", a.mean, a.std))
                .collect();
            let _ = writeln!(s, "| {} | {} |", r.name, cells.join(" | "));
        }
        Some(s)
    }

    /// The anytime curves as CSV: `evaluations,<name>_mean,<name>_std,...`.
    pub fn anytime_csv(&self) -> String {
        let mut s = String::from("evaluations");
        for r in &self.strategies {
            let _ = write!(s, ",{0}_mean,{0}_std", r.name);
        }
        s.push('\n');
        for e in 0..self.config.budget as usize {
            let _ = write!(s, "{}", e + 1);
            for r in &self.strategies {
                let _ = write!(s, ",{:.4},{:.4}", r.anytime_mean[e], r.anytime_std[e]);
            }
            s.push('\n');
        }
        s
    }

    /// The anytime plot (log-scaled evaluations, optimum as a dashed line).
    pub fn anytime_plot(&self) -> Plot {
        let mut p = Plot::new(
            &format!(
                "NAS-Bench-201 {}: best-so-far reported accuracy ({} runs)",
                self.config.dataset.name(),
                self.config.runs
            ),
            "evaluations",
            "test accuracy of incumbent (%)",
        );
        p.x_log = true;
        p.reference = Some((self.optimum, format!("optimum {:.2}", self.optimum)));
        for r in &self.strategies {
            let pts = r
                .anytime_mean
                .iter()
                .enumerate()
                .map(|(e, &v)| ((e + 1) as f64, v))
                .collect();
            p.add(&r.name, pts, Style::Line);
        }
        p
    }

    /// Writes `summary.md`, `report.json`, `anytime.csv` and `anytime.svg` into `dir` (created
    /// if missing).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| SearchError::io(dir, e))?;
        let w = |name: &str, text: String| -> Result<()> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| SearchError::io(&p, e))
        };
        let mut md = self.markdown();
        if let Some(hv) = self.hypervolume_markdown() {
            md = md + "\n" + &hv;
        }
        if let Some(rep) = self.report_markdown() {
            md = md + "\n" + &rep;
        }
        w("summary.md", md)?;
        w(
            "report.json",
            serde_json::to_string_pretty(self).map_err(|e| SearchError::Serde(e.to_string()))?,
        )?;
        w("anytime.csv", self.anytime_csv())?;
        self.anytime_plot().save(dir.join("anytime.svg"))
    }
}

/// A scatter plot of every cell of the table: parameters (millions) against the 200-epoch test
/// accuracy on `dataset`, with the optimum as a reference line.
pub fn params_accuracy_plot(table: &Nb201Table, dataset: Dataset) -> Plot {
    let c = dataset.column();
    let mut p = Plot::new(
        &format!(
            "NAS-Bench-201 {}: parameters vs test accuracy (15,625 cells)",
            dataset.name()
        ),
        "parameters (millions)",
        "test accuracy after 200 epochs (%)",
    );
    let pts = table
        .rows()
        .iter()
        .map(|r| (r.cost[c].params_m(), r.test_200[c]))
        .collect();
    p.add("cells", pts, Style::Points);
    let best = table.optimum(dataset).test_200[c];
    p.reference = Some((best, format!("optimum {best:.2}")));
    p
}
