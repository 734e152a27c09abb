//! One call: the default search of `nas search` (NAS-Bench-201 cells trained on the embedded
//! Fashion-MNIST subset), writing its summary, events and plots to a directory.
//!
//! ```text
//! cargo run --release -p nas-search --example one_call -- [OUTPUT_DIR] [EVALUATIONS] [WORKERS]
//! ```

use nas_search::builder::Search;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "runs/one_call".into());
    let mut search = Search::new().output_dir(&dir).verbose(true);
    if let Some(n) = args.next() {
        search = search.evaluations(n.parse()?);
    }
    if let Some(w) = args.next() {
        search = search.workers(w.parse()?);
    }
    let report = search.run()?;
    println!("evaluator:   {}", report.evaluator);
    println!(
        "best:        {} (trial {})",
        report.best.arch, report.best.trial
    );
    println!(
        "             valid {:.2}%  test {:.2}%  {} params  {:.2} MFLOPs",
        report.best.valid_accuracy,
        report.best.test_accuracy.unwrap_or(f64::NAN),
        report.best.params.unwrap_or(0),
        report.best.flops.unwrap_or(0) as f64 / 1e6
    );
    println!(
        "median test accuracy of the {} trials: {:.2}%",
        report.trials.len(),
        report.median_test_accuracy.unwrap_or(f64::NAN)
    );
    println!("wall time:   {:.1} s; outputs in {dir}", report.wall_time_s);
    Ok(())
}
