//! Times first-order DARTS search steps (one architecture step + one weight step) of the DARTS
//! supernet and reports the peak resident set (VmHWM).
//!
//! ```text
//! cargo run --release -p nas-search --example darts_step -- [steps] [batch] [C] [layers] [method] [plain|recompute|CELLS]
//! ```
//! Defaults: 3 steps, batch 64, C = 16, 8 cells, `darts` (first order); input 3x32x32, 10
//! classes, synthetic normalised data (the step's cost does not depend on the pixel values).
//! Threads: `NAS_THREADS` (default: all cores). Device: `NAS_DEVICE` (`cpu` by default;
//! `cuda:0` needs the `cuda` feature; every step reads its losses back to the host, so a step's
//! time includes the device's work). The first step is reported separately (it includes
//! buffer-pool warm-up and, on a GPU, compiling the kernels). `NAS_POOL=0` turns the CPU
//! buffer pool off (the peak resident set is then what the step holds at once; each step
//! also prints the pool's peak of live buffers, what the pool held when that peak was reached,
//! and how many misses it served by resizing a pooled buffer), `NAS_SHARE=0` makes every mixed edge compute
//! its own pools (`Supernet::set_share_outputs`: the layout before issue 20's memory round).

use std::time::Instant;

use nas_search::data::Dataset;
use nas_search::oneshot::{Method, OneShotConfig, OneShotSearch, SpaceKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn vm_hwm_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Process CPU time (user + system) in seconds, from /proc/self/stat (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (tick(11) + tick(12)) / 100.0
}

/// An on/off environment variable: unset or `1` is on, `0` off, anything else an error.
fn env_switch(name: &str) -> Result<bool, String> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(true),
        Ok(v) if v == "1" => Ok(true),
        Ok(v) if v == "0" => Ok(false),
        Ok(v) => Err(format!("{name}={v:?}: expected 0 or 1")),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let steps = arg(0, 3);
    let batch = arg(1, 64);
    let c = arg(2, 16);
    let layers = arg(3, 8);
    let method = Method::parse(args.get(4).map(String::as_str).unwrap_or("darts"))?;
    // Enough examples for `steps` steps in each half.
    let n = 2 * batch * (steps + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let images: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let data = Dataset::new("synthetic", (3, 32, 32), 10, images, labels)?;
    // "plain" (no recomputation), "recompute" (every cell) or a number of cells; default: the
    // library's default
    let recompute = match args.get(5).map(String::as_str) {
        None => nas_search::oneshot::RECOMPUTE_CELLS,
        Some("plain") => 0,
        Some("recompute") => usize::MAX,
        Some(k) => k
            .parse()
            .map_err(|e| format!("recompute cells {k:?}: {e}"))?,
    };
    let mut cfg = OneShotConfig::new(method, SpaceKind::Darts);
    cfg.recompute_cells = recompute;
    cfg.c = c;
    cfg.layers = layers;
    cfg.batch_size = batch;
    cfg.epochs = 50;
    if let Ok(d) = std::env::var("NAS_DEVICE") {
        cfg.device = d.parse().map_err(|e| format!("NAS_DEVICE={d:?}: {e}"))?;
        cfg.device.open()?;
    }
    // NAS_POOL=0: no buffer pool, so the peak resident set is what the step holds at once
    // (for accounting; slower: freed buffers go back to the allocator)
    if !env_switch("NAS_POOL")? {
        nas_tensor::buf::set_pooling(false);
    }
    // NAS_SHARE=0: every mixed edge computes its own pools (for before/after measurements)
    let share = env_switch("NAS_SHARE")?;
    let mut s = OneShotSearch::new(cfg, &data)?;
    s.supernet().set_share_outputs(share);
    println!(
        "DARTS supernet C={c} layers={layers} batch={batch} method={} device={} recomputed cells={} threads={} params={}",
        method.name(),
        s.config().device,
        recompute.min(layers),
        std::env::var("NAS_THREADS").unwrap_or_else(|_| "all cores".into()),
        nas_tensor::nn::Module::num_parameters(s.supernet())
    );
    let mut times = Vec::new();
    for i in 0..steps {
        let t = Instant::now();
        let c0 = cpu_seconds();
        s.step()?;
        let dt = t.elapsed().as_secs_f64();
        let dc = cpu_seconds() - c0;
        let (hits, misses, pooled) = nas_tensor::buf::pool_stats();
        println!(
            "step {i}: {dt:.3} s wall, {dc:.2} s CPU  (VmHWM {:.0} MiB; buffer pool: {hits} reused, {misses} fresh, {:.0} MiB held; peak live {:.0} MiB, pooled then {:.0} MiB; resized {})",
            vm_hwm_mib().unwrap_or(f64::NAN),
            pooled as f64 * 4.0 / (1 << 20) as f64,
            nas_tensor::buf::pool_peak_live() as f64 * 4.0 / (1 << 20) as f64,
            nas_tensor::buf::pool_floats_at_peak() as f64 * 4.0 / (1 << 20) as f64,
            nas_tensor::buf::pool_resized()
        );
        times.push(dt);
    }
    let mut rest: Vec<f64> = times.iter().skip(1).copied().collect();
    rest.sort_by(f64::total_cmp);
    if !rest.is_empty() {
        println!(
            "median of steps 1..{}: {:.3} s; peak RSS {:.0} MiB",
            steps - 1,
            rest[rest.len() / 2],
            vm_hwm_mib().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
