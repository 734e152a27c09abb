//! Per-kernel timings of 3x3 pooling (padding 1) on the DARTS supernet's shapes at batch 64:
//! forward and backward, average (`count_include_pad = false`) and max, stride 1 and 2. The
//! minimum over repetitions, for quick comparisons while tuning; threads from `NAS_THREADS`.
//!
//! `cargo run --release -p nas-kernels --example pool_speed`

use nas_kernels::workloads::{best_seconds, data};
use nas_kernels::{Backend, Cpu, Pool2dParams, PoolKind};

fn main() {
    let reps = 30;
    let mut total = (0.0, 0.0);
    for (c, side, stride) in [
        (16, 32, 1),
        (32, 16, 1),
        (64, 8, 1),
        (32, 32, 2),
        (64, 16, 2),
    ] {
        for (name, kind) in [
            (
                "avg",
                PoolKind::Avg {
                    count_include_pad: false,
                },
            ),
            ("max", PoolKind::Max),
        ] {
            let p = Pool2dParams::new(kind, 64, c, side, side, 3, stride, 1);
            let x = data(p.x_len(), 1);
            let dy = data(p.y_len(), 2);
            let mut y = vec![0.0; p.y_len()];
            let mut dx = vec![0.0; p.x_len()];
            let f = best_seconds(reps, || {
                Cpu.pool2d(&p.check().expect("valid parameters"), &x, &mut y)
                    .expect("pool2d")
            });
            let b = best_seconds(reps, || {
                Cpu.pool2d_backward(
                    &p.check().expect("valid parameters"),
                    &x,
                    None,
                    &dy,
                    &mut dx,
                )
                .expect("pool2d_backward")
            });
            total = (total.0 + f, total.1 + b);
            println!(
                "{name} c{c:<3} {side:>2}x{side:<2} /{stride}: forward {:7.3} ms, backward {:7.3} ms",
                f * 1e3,
                b * 1e3
            );
        }
    }
    println!(
        "total: forward {:.3} ms, backward {:.3} ms",
        total.0 * 1e3,
        total.1 * 1e3
    );
}
