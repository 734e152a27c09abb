//! Memory estimates of a training run, from closed forms, before anything is built.
//!
//! A network too large for the machine used to abort on a failed allocation (`--channels
//! 100000`: "memory allocation of 360000000000 bytes failed") or grow until the kernel's OOM
//! killer ended it (`--cells 1000`). [`estimate`] bounds the memory of training one network of
//! a family from its size alone (channels, cells, input, batch), for the most expensive
//! architecture of the space (every edge the largest convolution), and [`check`] refuses a run
//! whose estimate exceeds a limit: `--max-memory`, or the machine's available memory
//! ([`available_memory`], `MemAvailable` of `/proc/meminfo`).
//!
//! What is counted, in 4-byte floats:
//!
//! * parameters x 4: the weights, their gradients, SGD momentum, and one copy for slack;
//! * activations kept for the backward pass, per image x batch: each ReLU-conv-BN edge keeps
//!   about 3 tensors of its output's size, each node sum one (NB201: 21 tensors of `C x H x W`
//!   per cell; DARTS: 56 of `C x H x W` per cell; NB101: 20 per cell), stems and reduction
//!   blocks about 10, at the resolution and width of their stage.
//!
//! It is an estimate meant to catch sizes off by orders of magnitude, not a precise peak.

use crate::error::{Result, SearchError};

/// Which network family, with its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetSize {
    /// NAS-Bench-201 macro network: `channels` C, `cells` per stage (3 stages: C, 2C, 4C).
    Nb201 {
        /// C.
        channels: usize,
        /// Cells per stage.
        cells: usize,
    },
    /// DARTS evaluation network: `channels` C, `cells` in all (reductions at 1/3 and 2/3).
    Darts {
        /// C.
        channels: usize,
        /// Cells in all.
        cells: usize,
    },
    /// NAS-Bench-101 network: `channels` stem channels, 3 stacks of `cells` cells.
    Nb101 {
        /// Stem channels.
        channels: usize,
        /// Cells per stack.
        cells: usize,
    },
    /// A one-shot supernet (every op on every edge): DARTS (`cells` in all, reductions at 1/3
    /// and 2/3) or NB201 (`cells` per stage), width `channels`.
    Supernet {
        /// DARTS (true) or NB201 (false).
        darts: bool,
        /// C.
        channels: usize,
        /// DARTS: cells in all; NB201: cells per stage.
        cells: usize,
    },
    /// The chain preset (small and fixed): not estimated.
    Chain,
}

/// An estimate of a training run's memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryEstimate {
    /// Parameters of the largest network of the space (all edges the largest convolution).
    pub params: f64,
    /// Bytes of parameters, gradients and optimizer state.
    pub param_bytes: f64,
    /// Bytes of activations kept for the backward pass, for the whole batch.
    pub activation_bytes: f64,
}

impl MemoryEstimate {
    /// Total bytes.
    pub fn total(&self) -> f64 {
        self.param_bytes + self.activation_bytes
    }
}

/// Bytes as `1.5 GiB`.
pub fn human(bytes: f64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Parses a size: `512M`, `8G`, `1.5GiB`, `2000000000` (bytes); K/M/G/T are powers of 1024.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let x: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 512M, 8G, 1.5GiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    let v = x * mult;
    if !(v.is_finite() && v >= 1.0) {
        return Err(format!("{s:?} must be a positive size"));
    }
    Ok(v as u64)
}

/// Estimates training one network of `size` on `[c, h, w]` inputs in batches of `batch`.
pub fn estimate(
    size: NetSize,
    input: (usize, usize, usize),
    classes: usize,
    batch: usize,
) -> MemoryEstimate {
    let (cin, h, w) = (input.0 as f64, input.1 as f64, input.2 as f64);
    let hw = h * w;
    let k = classes as f64;
    let (params, floats_per_image) = match size {
        NetSize::Nb201 { channels, cells } => {
            let c = channels as f64;
            let n = cells as f64;
            // Cells: 6 edges of a 3x3 conv (+BN) at C, 2C, 4C.
            let cell = |ch: f64| 6.0 * (9.0 * ch * ch + 2.0 * ch);
            let mut p = 9.0 * cin * c + 2.0 * c; // stem
            p += n * (cell(c) + cell(2.0 * c) + cell(4.0 * c));
            // Residual reduction blocks C -> 2C -> 4C: two 3x3 convs and a 1x1 shortcut.
            for ch in [c, 2.0 * c] {
                p += 9.0 * ch * 2.0 * ch + 9.0 * 4.0 * ch * ch + 2.0 * ch * ch + 8.0 * ch;
            }
            p += 4.0 * c * k + k + 8.0 * c; // final BN and classifier
            let a = 2.0 * c * hw
                + n * 21.0 * (c * hw + 2.0 * c * hw / 4.0 + 4.0 * c * hw / 16.0)
                + 10.0 * (2.0 * c * hw / 4.0 + 4.0 * c * hw / 16.0);
            (p, a)
        }
        NetSize::Darts { channels, cells } => {
            let c = channels as f64;
            let mut p = 9.0 * cin * 3.0 * c + 6.0 * c;
            let mut a = 3.0 * c * hw * 2.0;
            let (mut ch, mut res) = (c, hw);
            for i in 0..cells {
                let reduction = darts_reduction(cells, i);
                if reduction {
                    ch *= 2.0;
                    res /= 4.0;
                }
                // Two 1x1 preprocessing convs from up to 4C inputs; 8 edges of a 5x5 separable
                // conv applied twice (depthwise 25C + pointwise C^2, with BN).
                p +=
                    2.0 * (4.0 * ch * ch + 2.0 * ch) + 8.0 * 2.0 * (25.0 * ch + ch * ch + 2.0 * ch);
                a += 56.0 * ch * res;
            }
            p += 4.0 * ch * k + k;
            (p, a)
        }
        NetSize::Nb101 { channels, cells } => {
            let c = channels as f64;
            let n = cells as f64;
            let mut p = 9.0 * cin * c + 2.0 * c;
            let mut a = 2.0 * c * hw;
            for (s, ch) in [c, 2.0 * c, 4.0 * c].into_iter().enumerate() {
                let res = hw / 4f64.powi(s as i32);
                // Up to 5 3x3 convs (+BN) and 1x1 projections per cell.
                p += n * (5.0 * (9.0 * ch * ch + 2.0 * ch) + 6.0 * ch * ch);
                a += n * 20.0 * ch * res;
            }
            p += 4.0 * c * k + k;
            (p, a)
        }
        NetSize::Supernet {
            darts,
            channels,
            cells,
        } => {
            // Every edge holds all ops. Activations: 200 tensors of a cell's C x H x W per cell
            // (DARTS, 14 edges of 8 ops; the measured first-order step at C = 16, 8 cells,
            // batch 64 peaks at 2,284 MiB, about 133 such tensors per cell, since the edges
            // on one state share their pools (2,657 MiB and 156 before)), 60 for NB201's 6
            // edges of 5 ops. Parameters: per edge 2 separable (5x5) and 2 dilated
            // convolutions (DARTS) or a 3x3 and a 1x1 convolution (NB201), with BN.
            let c = channels as f64;
            let (mut ch, mut res) = (c, hw);
            let mut p = 9.0 * cin * 3.0 * c + 6.0 * c;
            let mut a = 3.0 * c * hw * 2.0;
            let (per_cell_a, edges) = if darts { (200.0, 14.0) } else { (60.0, 6.0) };
            let total_cells = if darts { cells } else { 3 * cells };
            for i in 0..total_cells {
                let reduction = if darts {
                    darts_reduction(cells, i)
                } else {
                    i > 0 && i % cells == 0
                };
                if reduction {
                    ch *= 2.0;
                    res /= 4.0;
                }
                let edge = if darts {
                    2.0 * 2.0 * (25.0 * ch + ch * ch + 2.0 * ch) + 2.0 * (25.0 * ch + ch * ch)
                } else {
                    9.0 * ch * ch + ch * ch + 4.0 * ch
                };
                p += edges * edge + 2.0 * (4.0 * ch * ch + 2.0 * ch);
                a += per_cell_a * ch * res;
            }
            p += 4.0 * ch * k + k;
            (p, a)
        }
        NetSize::Chain => (0.0, 0.0),
    };
    MemoryEstimate {
        params,
        param_bytes: 4.0 * 4.0 * params,
        activation_bytes: 4.0 * floats_per_image * batch as f64,
    }
}

/// Is cell `i` of a DARTS network of `cells` cells a reduction cell (at 1/3 and 2/3 of the
/// depth, as `DartsConfig::is_reduction`; none below 3 cells in this estimate)?
fn darts_reduction(cells: usize, i: usize) -> bool {
    cells >= 3 && (i == cells / 3 || i == 2 * cells / 3)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes (`None` where it cannot be read).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Refuses `copies` runs of `est` above `limit` bytes (`what` describes the run, `limit_name`
/// where the limit comes from), naming both sizes and what to change.
pub fn check(
    est: &MemoryEstimate,
    copies: usize,
    limit: u64,
    what: &str,
    limit_name: &str,
) -> Result<()> {
    let need = est.total() * copies.max(1) as f64;
    if need > limit as f64 {
        return Err(SearchError::TooLarge(format!(
            "{what} would need about {} ({:.3e} parameters: {} with gradients and optimizer \
             state, {} of activations{}), more than {} ({limit_name}); use fewer \
             channels, cells, a smaller batch or fewer workers",
            human(need),
            est.params,
            human(est.param_bytes),
            human(est.activation_bytes),
            if copies > 1 {
                format!(", times {copies} workers")
            } else {
                String::new()
            },
            human(limit as f64),
        )));
    }
    Ok(())
}

/// Refuses a training run (of `copies` networks at once, each on batches of `batch` of `train`,
/// at most `train_examples` of it) whose estimated memory exceeds `max_memory`, or the
/// machine's available memory when that is not given (nothing is checked where neither is
/// known).
pub fn check_limit(
    size: NetSize,
    train: &crate::data::Dataset,
    train_examples: Option<usize>,
    batch: usize,
    copies: usize,
    max_memory: Option<u64>,
    what: &str,
) -> Result<()> {
    let n = train_examples.map_or(train.len(), |n| n.min(train.len()));
    let est = estimate(
        size,
        train.shape(),
        train.num_classes(),
        batch.min(n.max(1)),
    );
    let (limit, name) = match (max_memory, available_memory()) {
        (Some(m), _) => (m, "--max-memory"),
        (None, Some(a)) => (
            a,
            "the memory available on this machine, MemAvailable in /proc/meminfo",
        ),
        (None, None) => return Ok(()),
    };
    check(&est, copies, limit, what, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::nb201::{Nb201Config, nb201_cost};

    #[test]
    fn darts_supernet_estimate_bounds_the_measured_peak() {
        // docs/PERF.md: the first-order DARTS step (C = 16, 8 cells, batch 64, 3x32x32)
        // peaks at 2,284 MiB of resident memory.
        let e = estimate(
            NetSize::Supernet {
                darts: true,
                channels: 16,
                cells: 8,
            },
            (3, 32, 32),
            10,
            64,
        );
        let measured = 2284.0 * 1024.0 * 1024.0;
        assert!(
            e.total() > measured && e.total() < 2.0 * measured,
            "{} vs {measured}",
            e.total()
        );
        // the supernet's parameters (about 1.93 M at C = 16, 8 cells) within a factor of 2
        assert!(e.params > 1.0e6 && e.params < 4.0e6, "{}", e.params);
        // absurd sizes are orders of magnitude above any machine
        let huge = estimate(
            NetSize::Supernet {
                darts: true,
                channels: 100_000,
                cells: 5,
            },
            (1, 28, 28),
            10,
            64,
        );
        assert!(huge.total() > 1e13, "{}", huge.total());
    }

    #[test]
    fn nb201_parameter_bound_is_close_to_the_exact_count_of_the_largest_cell() {
        let all_conv: nas_space::nb201::Nb201Cell =
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
                .parse()
                .unwrap();
        for (c, n) in [(8, 1), (16, 5), (32, 2)] {
            let cfg = Nb201Config {
                channels: c,
                cells_per_stage: n,
                in_channels: 3,
                classes: 10,
            };
            let exact = nb201_cost(&all_conv, &cfg, 32, 32).params as f64;
            let est = estimate(
                NetSize::Nb201 {
                    channels: c,
                    cells: n,
                },
                (3, 32, 32),
                10,
                64,
            );
            assert!(
                est.params >= exact && est.params < 1.1 * exact,
                "C={c} N={n}: estimate {} exact {exact}",
                est.params
            );
        }
    }

    #[test]
    fn absurd_sizes_are_refused_and_the_defaults_pass() {
        let input = (1, 28, 28);
        let limit = 8u64 << 30;
        let huge = estimate(
            NetSize::Nb201 {
                channels: 100_000,
                cells: 1,
            },
            input,
            10,
            64,
        );
        // The abort: 360,000,000,000 bytes for one weight; the estimate is above that.
        assert!(huge.param_bytes > 3.6e11, "{huge:?}");
        let e = check(&huge, 1, limit, "training", "--max-memory")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--max-memory") && e.contains("TiB"), "{e}");
        let deep = estimate(
            NetSize::Nb201 {
                channels: 8,
                cells: 1000,
            },
            input,
            10,
            64,
        );
        assert!(check(&deep, 1, limit, "training", "x").is_err(), "{deep:?}");
        for size in [
            NetSize::Nb201 {
                channels: 8,
                cells: 1,
            },
            NetSize::Nb201 {
                channels: 16,
                cells: 5,
            },
            NetSize::Darts {
                channels: 8,
                cells: 3,
            },
            NetSize::Nb101 {
                channels: 8,
                cells: 1,
            },
        ] {
            let e = estimate(size, input, 10, 64);
            assert!(e.total() < 2e9, "{size:?}: {e:?}");
            check(&e, 2, limit, "training", "x").unwrap();
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("0").is_err());
    }
}
