//! The NAS-Bench-201 table: look-ups for all 15,625 cells, their closed-form costs, and the
//! tabular [`Evaluator`] with its registry entry ([`TableDef`]).
//!
//! The table (`data/nb201/nb201_combined.csv.gz`, see `data/README.md`) is embedded in the
//! crate with `include_bytes!`, so [`Nb201Table::embedded`] works on any machine with no path;
//! [`Nb201Table::load`] reads another copy (gzip or plain CSV). Each cell has its own row:
//! equivalent cells were trained separately and their accuracies differ.
//!
//! Search protocol (NAS-Bench-201's): a search sees the 12-epoch **validation** accuracy; the
//! accuracy reported for the final choice is the 200-epoch **test** accuracy. The table has no
//! 200-epoch validation column, so at fidelity 200 (Hyperband's top rung) the evaluator shows
//! the 12-epoch validation accuracy again, at the cost of 200 epochs: the search never sees a
//! test column at any fidelity (`tests/no_test_leak.rs` checks every strategy). On this table a
//! multi-fidelity strategy therefore gains nothing from its top rung but pays for it.

use crate::error::{Result, SearchError};
use crate::evaluator::{EvalError, EvalRequest, EvalSetup, Evaluator, EvaluatorDef, Metrics};
use crate::nets::NetworkCost;
use crate::nets::nb201::network_cost_with;
use crate::spaces::{AnyEvaluator, Space};
use crate::strategy::StrategyKind;
use flate2::read::GzDecoder;
use nas_space::nb201::Nb201Cell;
use serde::{Deserialize, Serialize};
use std::any::TypeId;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The table shipped with the project (gzip CSV).
pub static EMBEDDED_TABLE_GZ: &[u8] = include_bytes!("../../data/nb201/nb201_combined.csv.gz");

/// Number of cells of NAS-Bench-201.
pub const NUM_CELLS: usize = 15_625;

/// The header the table must have.
pub const HEADER: &str = "index,arch_str,cifar10_test_200ep,cifar100_test_200ep,imagenet16_120_test_200ep,cifar10_test_12ep,cifar10_valid_12ep,cifar100_test_12ep,cifar100_valid_12ep,imagenet16_120_test_12ep,imagenet16_120_valid_12ep,isomorph_class";

/// The three data sets of NAS-Bench-201.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dataset {
    /// CIFAR-10 (10 classes, 32x32).
    Cifar10,
    /// CIFAR-100 (100 classes, 32x32).
    Cifar100,
    /// ImageNet16-120 (120 classes, 16x16).
    ImageNet16_120,
}

impl Dataset {
    /// All three.
    pub const ALL: [Dataset; 3] = [Dataset::Cifar10, Dataset::Cifar100, Dataset::ImageNet16_120];

    /// Parses `cifar10`, `cifar100` or `imagenet16-120` (also `imagenet16_120`, `imagenet`).
    pub fn parse(s: &str) -> Result<Dataset> {
        match s.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
            "cifar10" => Ok(Dataset::Cifar10),
            "cifar100" => Ok(Dataset::Cifar100),
            "imagenet16120" | "imagenet" | "imagenet16" => Ok(Dataset::ImageNet16_120),
            _ => Err(SearchError::Config(Dataset::unknown(s))),
        }
    }

    /// Parses a data set named by the option `flag`: an unknown name is a usage error
    /// ([`SearchError::Setting`]) naming the option.
    pub fn parse_option(flag: &str, s: &str) -> Result<Dataset> {
        Dataset::parse(s)
            .map_err(|_| SearchError::Setting(format!("{flag}: {}", Dataset::unknown(s))))
    }

    fn unknown(s: &str) -> String {
        format!(
            "unknown NAS-Bench-201 data set {s:?} (expected cifar10, cifar100 or imagenet16-120)"
        )
    }

    /// Short name (`cifar10`, `cifar100`, `imagenet16-120`).
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Cifar10 => "cifar10",
            Dataset::Cifar100 => "cifar100",
            Dataset::ImageNet16_120 => "imagenet16-120",
        }
    }

    /// Column position in the accuracy arrays of [`Nb201Record`].
    pub fn column(self) -> usize {
        self as usize
    }

    /// Number of classes.
    pub fn classes(self) -> u64 {
        match self {
            Dataset::Cifar10 => 10,
            Dataset::Cifar100 => 100,
            Dataset::ImageNet16_120 => 120,
        }
    }

    /// Input side in pixels.
    pub fn input_size(self) -> u64 {
        match self {
            Dataset::ImageNet16_120 => 16,
            _ => 32,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Nb201Record {
    /// The benchmark's row index.
    pub index: usize,
    /// The cell.
    pub cell: Nb201Cell,
    /// 200-epoch test accuracy (%) on CIFAR-10, CIFAR-100, ImageNet16-120.
    pub test_200: [f64; 3],
    /// 12-epoch test accuracy (%), same order.
    pub test_12: [f64; 3],
    /// 12-epoch validation accuracy (%), same order.
    pub valid_12: [f64; 3],
    /// The benchmark's isomorphism-class string.
    pub isomorph_class: String,
    /// Parameters and FLOPs of the network on each data set ([`network_cost`]).
    pub cost: [NetworkCost; 3],
}

/// The whole table, indexed by [`Nb201Cell::index`] (a look-up is an array access).
#[derive(Debug, Clone)]
pub struct Nb201Table {
    rows: Vec<Nb201Record>,
    source: String,
}

static EMBEDDED: OnceLock<std::result::Result<Arc<Nb201Table>, String>> = OnceLock::new();

fn err(source: &str, line: usize, problem: impl Into<String>) -> SearchError {
    SearchError::DataFile {
        path: source.to_string(),
        line,
        problem: problem.into(),
    }
}

impl Nb201Table {
    /// The embedded table, decoded once per process.
    pub fn embedded() -> Result<Arc<Nb201Table>> {
        EMBEDDED
            .get_or_init(|| {
                Nb201Table::from_bytes(EMBEDDED_TABLE_GZ, "<embedded nb201_combined.csv.gz>")
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| err("<embedded nb201_combined.csv.gz>", 0, e))
    }

    /// Loads a table from a file: gzip-compressed (detected by its magic bytes) or plain CSV.
    pub fn load(path: impl AsRef<Path>) -> Result<Nb201Table> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| SearchError::io(path, e))?;
        Nb201Table::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses a table from gzip or plain CSV bytes; `source` names it in errors.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Nb201Table> {
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            GzDecoder::new(bytes).read_to_string(&mut s).map_err(|e| {
                err(
                    source,
                    0,
                    format!("not a valid gzip file of UTF-8 text: {e}"),
                )
            })?;
            s
        } else {
            String::from_utf8(bytes.to_vec())
                .map_err(|e| err(source, 0, format!("not UTF-8 text: {e}")))?
        };
        Nb201Table::from_csv(&text, source)
    }

    /// Parses the CSV text; `source` names it in errors (file, line and problem).
    pub fn from_csv(text: &str, source: &str) -> Result<Nb201Table> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, h)) if h.trim_end() == HEADER => {}
            Some((_, h)) => {
                return Err(err(
                    source,
                    1,
                    format!("unexpected header {h:?}; expected {HEADER:?}"),
                ));
            }
            None => return Err(err(source, 0, "the file is empty")),
        }
        let mut slots: Vec<Option<Nb201Record>> = vec![None; NUM_CELLS];
        let mut count = 0;
        for (i, line) in lines {
            let ln = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.trim_end().split(',').collect();
            if f.len() != 12 {
                return Err(err(
                    source,
                    ln,
                    format!("expected 12 comma-separated fields, found {}", f.len()),
                ));
            }
            let index: usize = f[0].parse().map_err(|_| {
                err(
                    source,
                    ln,
                    format!("index {:?} is not a non-negative integer", f[0]),
                )
            })?;
            let cell = Nb201Cell::parse(f[1])
                .map_err(|e| err(source, ln, format!("bad arch_str: {e}")))?;
            let mut acc = [0.0f64; 9];
            for (k, a) in acc.iter_mut().enumerate() {
                let name = HEADER.split(',').nth(k + 2).unwrap_or("?");
                let v: f64 = f[k + 2].parse().map_err(|_| {
                    err(source, ln, format!("{name} {:?} is not a number", f[k + 2]))
                })?;
                if !(0.0..=100.0).contains(&v) {
                    return Err(err(
                        source,
                        ln,
                        format!("{name} = {v} is not an accuracy in 0..=100"),
                    ));
                }
                *a = v;
            }
            let slot = &mut slots[cell.index()];
            if let Some(prev) = slot {
                return Err(err(
                    source,
                    ln,
                    format!(
                        "cell {} appears twice (rows {} and {index})",
                        f[1], prev.index
                    ),
                ));
            }
            let cost = Dataset::ALL.map(|d| network_cost(&cell, d));
            *slot = Some(Nb201Record {
                index,
                cell,
                test_200: [acc[0], acc[1], acc[2]],
                test_12: [acc[3], acc[5], acc[7]],
                valid_12: [acc[4], acc[6], acc[8]],
                isomorph_class: f[11].to_string(),
                cost,
            });
            count += 1;
        }
        if count != NUM_CELLS {
            let missing = slots
                .iter()
                .position(|s| s.is_none())
                .and_then(Nb201Cell::from_index);
            return Err(err(
                source,
                0,
                format!(
                    "the table has {count} of the {NUM_CELLS} cells (missing, e.g., {})",
                    missing.map(|c| c.to_string()).unwrap_or_default()
                ),
            ));
        }
        let rows = slots.into_iter().map(|s| s.expect("all present")).collect();
        Ok(Nb201Table {
            rows,
            source: source.to_string(),
        })
    }

    /// Where the table came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The row of `cell`.
    pub fn get(&self, cell: &Nb201Cell) -> &Nb201Record {
        &self.rows[cell.index()]
    }

    /// All rows in [`Nb201Cell::index`] order.
    pub fn rows(&self) -> &[Nb201Record] {
        &self.rows
    }

    /// The row with the best 200-epoch test accuracy on `dataset`.
    pub fn optimum(&self, dataset: Dataset) -> &Nb201Record {
        let c = dataset.column();
        self.rows.iter().fold(&self.rows[0], |b, r| {
            if r.test_200[c] > b.test_200[c] { r } else { b }
        })
    }
}

/// The tabular evaluator: look-ups in [`Nb201Table`] for one data set.
///
/// Fidelity 12 and fidelity 200 both show the 12-epoch validation accuracy (the table's only
/// validation column stands in for the 200-epoch one it lacks; the 200-epoch column is test
/// accuracy, which a search must never see); other fidelities are a fatal error. `test_accuracy` is always the
/// 200-epoch test accuracy, `cost` the fidelity in epochs, `params`/`flops` from
/// [`network_cost`].
#[derive(Debug, Clone)]
pub struct Nb201Evaluator {
    table: Arc<Nb201Table>,
    dataset: Dataset,
    report: Vec<Dataset>,
}

impl Nb201Evaluator {
    /// An evaluator on `dataset`.
    pub fn new(table: Arc<Nb201Table>, dataset: Dataset) -> Self {
        Nb201Evaluator {
            table,
            dataset,
            report: Vec::new(),
        }
    }

    /// The same evaluator, also reporting the final choice's 200-epoch test accuracy on
    /// `datasets` ([`Evaluator::reported_tests`]; the paper's protocol searches on CIFAR-10 and
    /// reports all three). What a strategy sees does not change.
    pub fn with_report(mut self, datasets: Vec<Dataset>) -> Self {
        self.report = datasets;
        self
    }

    /// The table.
    pub fn table(&self) -> &Nb201Table {
        &self.table
    }

    /// The data set.
    pub fn dataset(&self) -> Dataset {
        self.dataset
    }
}

impl Evaluator<Nb201Cell> for Nb201Evaluator {
    fn name(&self) -> String {
        format!("nb201-table/{}", self.dataset.name())
    }
    fn evaluate(
        &self,
        req: &EvalRequest<'_, Nb201Cell>,
    ) -> std::result::Result<Metrics, EvalError> {
        let r = self.table.get(req.arch);
        let c = self.dataset.column();
        let valid = match req.fidelity {
            // No 200-epoch validation column exists: the 12-epoch one stands in.
            12 | 200 => r.valid_12[c],
            f => {
                return Err(EvalError::Fatal(format!(
                    "the NAS-Bench-201 table has results at 12 and 200 epochs, not {f}"
                )));
            }
        };
        Ok(Metrics {
            valid_accuracy: valid,
            test_accuracy: Some(r.test_200[c]),
            loss: None,
            params: Some(r.cost[c].params),
            flops: Some(r.cost[c].flops),
            latency_ms: None,
            cost: req.fidelity as f64,
        })
    }

    fn network_cost(&self, arch: &Nb201Cell) -> Option<NetworkCost> {
        Some(self.table.get(arch).cost[self.dataset.column()])
    }

    /// The benchmark's own network (C = 16, N = 5) at the data set's input size (32x32, or
    /// 16x16 for ImageNet16-120), 3 channels, its classes: the network whose accuracy the
    /// table holds.
    fn network_ops(&self, arch: &Nb201Cell) -> Option<Vec<crate::latency::LatOp>> {
        let side = self.dataset.input_size() as usize;
        Some(crate::latency::nb201_ops(
            arch,
            &crate::nets::nb201::Nb201Config {
                channels: CHANNELS as usize,
                cells_per_stage: CELLS_PER_STAGE as usize,
                in_channels: 3,
                classes: self.dataset.classes() as usize,
            },
            side,
            side,
        ))
    }

    fn reported_tests(&self, arch: &Nb201Cell) -> Vec<(String, f64)> {
        let r = self.table.get(arch);
        self.report
            .iter()
            .map(|d| (d.name().to_string(), r.test_200[d.column()]))
            .collect()
    }
}

/// Parses `--report`: `all`, or one or more comma-separated data set names (in the order
/// given, without repeats).
pub fn parse_report(spec: &str) -> Result<Vec<Dataset>> {
    if spec.trim().eq_ignore_ascii_case("all") {
        return Ok(Dataset::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in spec.split(',') {
        let d = Dataset::parse(name.trim()).map_err(|_| {
            SearchError::Setting(format!(
                "--report {spec:?}: {}, or all",
                Dataset::unknown(name.trim())
            ))
        })?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// The search protocol on the table, applied to `setup` for the evaluator named `evaluator`:
/// `--search-dataset` (`search_dataset`) replaces the table's data set (the one whose
/// validation accuracy the strategy sees), and `--report` is checked. Both are refused, naming
/// them, with an evaluator other than the table's, and an unknown data set is a usage error
/// naming the option.
pub fn apply_protocol(
    setup: &mut EvalSetup,
    search_dataset: Option<&str>,
    evaluator: &str,
) -> Result<()> {
    let table = TableDef.name();
    if evaluator != table {
        for (given, flag) in [
            (search_dataset.is_some(), "--search-dataset"),
            (setup.table_report.is_some(), "--report"),
        ] {
            if given {
                return Err(SearchError::Setting(format!(
                    "{flag} applies to --evaluator {table} (the NAS-Bench-201 table's data sets), not {evaluator}"
                )));
            }
        }
        return Ok(());
    }
    if let Some(d) = search_dataset {
        setup.table_dataset = Dataset::parse_option("--search-dataset", d)?.name().into();
    } else {
        Dataset::parse_option("--table-dataset", &setup.table_dataset)?;
    }
    if let Some(r) = &setup.table_report {
        parse_report(r)?;
    }
    Ok(())
}

/// Channels of the first stage in NAS-Bench-201.
pub const CHANNELS: u64 = 16;
/// Cells per stage in NAS-Bench-201.
pub const CELLS_PER_STAGE: u64 = 5;

/// Parameters and FLOPs of the NAS-Bench-201 network (C = 16, N = 5) of `cell` on `dataset`.
pub fn network_cost(cell: &Nb201Cell, dataset: Dataset) -> NetworkCost {
    network_cost_with(
        cell,
        CHANNELS,
        CELLS_PER_STAGE,
        dataset.input_size(),
        dataset.classes(),
    )
}

/// `nb201-table`: looks NAS-Bench-201 cells up in the embedded table
/// ([`Nb201Evaluator`]) on `table_dataset` at `table_epochs` (12 or 200); evaluates any space
/// whose architectures are [`Nb201Cell`]s.
pub struct TableDef;

impl EvaluatorDef for TableDef {
    fn name(&self) -> &'static str {
        "nb201-table"
    }
    fn about(&self) -> &'static str {
        "look candidates up in the embedded NAS-Bench-201 table (nb201 space only; no training)"
    }
    fn trains(&self) -> bool {
        false
    }
    fn fidelity(&self, setup: &EvalSetup) -> Result<u32> {
        match setup.table_epochs {
            12 | 200 => Ok(setup.table_epochs),
            e => Err(SearchError::Setting(format!(
                "--table-epochs must be 12 or 200, got {e}"
            ))),
        }
    }
    fn build(&self, space: &dyn Space, setup: &EvalSetup) -> Result<AnyEvaluator> {
        if space.arch_type() != TypeId::of::<Nb201Cell>() {
            return Err(SearchError::Setting(format!(
                "--evaluator nb201-table evaluates only --space nb201, not {}",
                space.name()
            )));
        }
        let ds = Dataset::parse_option("--table-dataset", &setup.table_dataset)?;
        let report = match &setup.table_report {
            Some(r) => parse_report(r)?,
            None => Vec::new(),
        };
        Ok(AnyEvaluator::new::<Nb201Cell>(Arc::new(
            Nb201Evaluator::new(Nb201Table::embedded()?, ds).with_report(report),
        )))
    }
    fn describe(
        &self,
        _space: &dyn Space,
        setup: &EvalSetup,
        strategy: &StrategyKind,
        evaluations: u64,
    ) -> String {
        let report = match setup.table_report.as_deref().map(parse_report) {
            Some(Ok(r)) => {
                let names: Vec<&str> = r.iter().map(|d| d.name()).collect();
                format!(", reports test accuracy on {}", names.join(", "))
            }
            _ => String::new(),
        };
        format!(
            "searching NAS-Bench-201 cells with {} on the table ({}, sees {}-epoch validation accuracy{report}), {evaluations} evaluations",
            strategy.name(),
            Dataset::parse(&setup.table_dataset).map_or("?", |d| d.name()),
            setup.table_epochs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_is_complete_and_has_the_known_optima() {
        let t = Nb201Table::embedded().unwrap();
        assert_eq!(t.rows().len(), NUM_CELLS);
        for (d, best) in [
            (Dataset::Cifar10, 94.37),
            (Dataset::Cifar100, 73.51),
            (Dataset::ImageNet16_120, 47.31),
        ] {
            let o = t.optimum(d);
            assert!(
                (o.test_200[d.column()] - best).abs() < 0.006,
                "{d:?}: {}",
                o.test_200[d.column()]
            );
        }
        // Row 0 of the file, looked up by its cell.
        let c = Nb201Cell::parse("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|").unwrap();
        let r = t.get(&c);
        assert_eq!(r.index, 0);
        assert_eq!(r.test_200, [85.863333, 52.913333, 26.633333]);
        assert_eq!(r.valid_12, [63.364, 31.84, 18.466667]);
        assert_eq!(r.test_12, [69.55, 31.26, 17.0]);
        assert!(
            t.rows()
                .iter()
                .all(|r| r.cell.index() < NUM_CELLS && t.get(&r.cell).index == r.index)
        );
    }

    #[test]
    fn bad_tables_name_the_line_and_problem() {
        let good = format!(
            "{HEADER}\n0,|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|,85.8,52.9,26.6,69.5,63.3,31.2,31.8,17.0,18.4,x\n"
        );
        let e = Nb201Table::from_csv(&good, "t.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv") && e.contains("1 of the 15625"), "{e}");
        let e = Nb201Table::from_csv("a,b\n", "t.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv: line 1") && e.contains("header"), "{e}");
        let bad = good.replace("85.8", "abc");
        let e = Nb201Table::from_csv(&bad, "t.csv").unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("cifar10_test_200ep \"abc\""),
            "{e}"
        );
        let bad = good.replace("85.8", "185.8");
        assert!(
            Nb201Table::from_csv(&bad, "t.csv")
                .unwrap_err()
                .to_string()
                .contains("not an accuracy")
        );
        let bad = good.replace("nor_conv_1x1~0|skip", "conv_9x9~0|skip");
        let e = Nb201Table::from_csv(&bad, "t.csv").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("bad arch_str"), "{e}");
        let bad = good.replace(",x\n", "\n");
        assert!(
            Nb201Table::from_csv(&bad, "t.csv")
                .unwrap_err()
                .to_string()
                .contains("12 comma-separated")
        );
        let dup = format!("{good}{}", good.lines().nth(1).unwrap());
        let e = Nb201Table::from_csv(&dup, "t.csv").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("twice"), "{e}");
        let e = Nb201Table::from_bytes(&[0x1f, 0x8b, 1, 2, 3], "z.gz")
            .unwrap_err()
            .to_string();
        assert!(e.contains("z.gz") && e.contains("gzip"), "{e}");
        let e = Nb201Table::load("/nonexistent/nb201.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/nb201.csv"), "{e}");
    }

    #[test]
    fn loading_the_shipped_file_by_path_equals_the_embedded_table() {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/nb201/nb201_combined.csv.gz"
        );
        let a = Nb201Table::load(p).unwrap();
        let b = Nb201Table::embedded().unwrap();
        assert_eq!(a.rows(), b.rows());
    }

    #[test]
    fn evaluator_shows_validation_and_reports_test() {
        let t = Nb201Table::embedded().unwrap();
        let ev = Nb201Evaluator::new(t.clone(), Dataset::Cifar100);
        let c = t.rows()[1234].cell;
        let r = t.get(&c);
        let m = ev
            .evaluate(&EvalRequest {
                arch: &c,
                fidelity: 12,
                trial_id: 0,
                seed: 0,
                deadline: None,
            })
            .unwrap();
        assert_eq!(m.valid_accuracy, r.valid_12[1]);
        assert_eq!(m.test_accuracy, Some(r.test_200[1]));
        assert_eq!(m.cost, 12.0);
        assert_eq!(m.params, Some(r.cost[1].params));
        let m = ev
            .evaluate(&EvalRequest {
                arch: &c,
                fidelity: 200,
                trial_id: 0,
                seed: 0,
                deadline: None,
            })
            .unwrap();
        // Fidelity 200 shows validation accuracy too (never the 200-epoch test column).
        assert_eq!(m.valid_accuracy, r.valid_12[1]);
        assert_eq!(m.cost, 200.0);
        assert_eq!(m.test_accuracy, Some(r.test_200[1]));
        assert!(matches!(
            ev.evaluate(&EvalRequest {
                arch: &c,
                fidelity: 50,
                trial_id: 0,
                seed: 0,
                deadline: None,
            }),
            Err(EvalError::Fatal(_))
        ));
    }
}

#[cfg(test)]
mod cost_tests {
    use super::*;
    use nas_space::nb201::Nb201Op;

    fn cell(s: &str) -> Nb201Cell {
        Nb201Cell::parse(s).unwrap()
    }

    #[test]
    fn extreme_cells_match_nas_bench_201() {
        let all3 = cell(
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        );
        let c10 = network_cost(&all3, Dataset::Cifar10);
        assert_eq!(
            c10,
            NetworkCost {
                params: 1_531_546,
                flops: 220_119_690
            }
        );
        let empty = cell("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|");
        assert_eq!(
            network_cost(&empty, Dataset::Cifar10),
            NetworkCost {
                params: 73_306,
                flops: 7_783_050
            }
        );
        // CIFAR-100 differs only in the classifier: 90 more classes x (64 weights + 1 bias).
        let c100 = network_cost(&all3, Dataset::Cifar100);
        assert_eq!(c100.params - c10.params, 90 * 65);
        assert_eq!(c100.flops - c10.flops, 90 * 65);
        // ImageNet16-120: a quarter of the pixels, 120 classes.
        let im = network_cost(&all3, Dataset::ImageNet16_120);
        assert_eq!(im.params, 1_531_546 - 650 + 120 * 65);
        assert_eq!(im.flops, (220_119_690 - 650) / 4 + 120 * 65);
    }

    #[test]
    fn ops_contribute_their_convolutions_only() {
        let base = cell("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|");
        let b = network_cost(&base, Dataset::Cifar10);
        for (op, params, flops) in [
            (Nb201Op::SkipConnect, 0, 0),
            (Nb201Op::AvgPool3x3, 0, 0),
            // 5 cells at 16, 32, 64 channels on 32^2, 16^2, 8^2 pixels.
            (
                Nb201Op::NorConv1x1,
                5 * (16 * 18 + 32 * 34 + 64 * 66),
                5 * 3 * 256 * 1024,
            ),
            (
                Nb201Op::NorConv3x3,
                5 * (16 * 146 + 32 * 290 + 64 * 578),
                5 * 3 * 9 * 256 * 1024,
            ),
        ] {
            for e in 0..6 {
                let mut c = base;
                c.ops[e] = op;
                let n = network_cost(&c, Dataset::Cifar10);
                assert_eq!(n.params - b.params, params, "{op} on edge {e}");
                assert_eq!(n.flops - b.flops, flops, "{op} on edge {e}");
            }
        }
    }
}
