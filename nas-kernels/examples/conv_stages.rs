//! Per-pass timings (forward, input gradient, weight gradient) of the 3x3, 1x1 and depthwise
//! 3x3 stride-1 convolutions and of the 3x3 stride-2 convolution that enters each stage at the three stages of the NAS-Bench-201 and DARTS networks at
//! batch 64 (16x32x32, 32x16x16, 64x8x8), in GFLOP/s: shows how the kernels cope with small
//! planes. With the argument `main`, the stages of the main job's network instead (8x28x28,
//! 16x14x14, 32x7x7).
//! Minimum over repetitions; threads from `NAS_THREADS`.
//!
//! `cargo run --release -p nas-kernels --example conv_stages [-- main]`

use nas_kernels::workloads::{best_seconds, data};
use nas_kernels::{Backend, Conv2dParams, Cpu};

/// Builds the convolution of one kind for `(channels, plane size)`.
type MakeConv = fn(usize, usize) -> Conv2dParams;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kinds: [(&str, MakeConv); 4] = [
        ("3x3", |c, hw| {
            Conv2dParams::new(64, c, hw, hw, c, 3).padding(1)
        }),
        // the reduction block's strided convolution into the stage (`c` -> `2c`, half size)
        ("3x3s2", |c, hw| {
            Conv2dParams::new(64, c, hw, hw, 2 * c, 3)
                .padding(1)
                .stride(2)
        }),
        ("1x1", |c, hw| Conv2dParams::new(64, c, hw, hw, c, 1)),
        ("dw3x3", |c, hw| {
            Conv2dParams::new(64, c, hw, hw, c, 3).padding(1).groups(c)
        }),
    ];
    // `main`: the stages of the main job's network (C = 8 on 28x28 Fashion-MNIST images)
    let stages = match std::env::args().nth(1).as_deref() {
        Some("main") => [(8usize, 28usize), (16, 14), (32, 7)],
        _ => [(16, 32), (32, 16), (64, 8)],
    };
    for ((name, make), (c, hw)) in kinds.iter().flat_map(|k| stages.map(|s| (k, s))) {
        let p = make(c, hw);
        let x = data(p.x_len(), 1);
        let w = data(p.w_len(), 2);
        let dy = data(p.y_len(), 3);
        let (mut y, mut dx, mut dw) = (
            vec![0.0; p.y_len()],
            vec![0.0; p.x_len()],
            vec![0.0; p.w_len()],
        );
        let gflop = 2.0 * (p.y_len() * (c / p.groups) * p.kh * p.kw) as f64 / 1e9;

        let tf = best_seconds(20, || {
            Cpu.conv2d(&p.check().expect("valid parameters"), &x, &w, None, &mut y)
                .expect("fwd")
        });
        let ti = best_seconds(20, || {
            Cpu.conv2d_backward_input(&p.check().expect("valid parameters"), &w, &dy, &mut dx)
                .expect("dx")
        });
        let tw = best_seconds(20, || {
            Cpu.conv2d_backward_weight(
                &p.check().expect("valid parameters"),
                &x,
                &dy,
                &mut dw,
                None,
            )
            .expect("dw")
        });
        println!(
            "{name:<6}{c:>3}x{hw:>2}x{hw:<2}  fwd {:6.2} ms {:5.1} GF/s   dX {:6.2} ms {:5.1} GF/s   dW {:6.2} ms {:5.1} GF/s",
            tf * 1e3,
            gflop / tf,
            ti * 1e3,
            gflop / ti,
            tw * 1e3,
            gflop / tw
        );
    }
    Ok(())
}
