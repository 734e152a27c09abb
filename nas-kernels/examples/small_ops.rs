//! Per-kernel timings on the shapes of the small DARTS step (`darts_step 12 8 4 8`: batch 8,
//! C = 4, so cells of 4 channels at 32x32, 8 at 16x16 and 16 at 8x8, and the reduction cells'
//! stride-2 edges): the depthwise convolutions of `sep_conv`/`dil_conv` (input ReLU fused,
//! forward and both gradients) and
//! batch norm, one thread, the minimum over repetitions (robust on a loaded machine), with the
//! sum over all shapes. For A/B comparisons of kernel changes where the whole step is too noisy.
//!
//! `cargo run --release -p nas-kernels --example small_ops [-- REPS]`

use nas_kernels::workloads::best_seconds;
use nas_kernels::{Backend, BatchNormParams, Conv2dParams, Cpu, threads};

fn main() -> nas_kernels::Result<()> {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    threads::set_num_threads(1);
    let n = 8;
    let mut totals = [0.0f64; 5];
    // (channels, plane side, stride): the cells' planes, and the reduction cells' stride-2 edges
    let shapes = [
        (4usize, 32usize, 1usize),
        (8, 16, 1),
        (16, 8, 1),
        (4, 32, 2),
        (8, 16, 2),
    ];
    for (c, hw, stride) in shapes {
        // (kernel, dilation, padding) of sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5
        for (k, d, pad) in [(3, 1, 1), (5, 1, 2), (3, 2, 2), (5, 2, 4)] {
            let p = Conv2dParams::new(n, c, hw, hw, c, k)
                .stride(stride)
                .padding(pad)
                .dilation(d)
                .groups(c)
                .check()?;
            let x: Vec<f32> = (0..p.x_len())
                .map(|i| (i % 17) as f32 * 0.1 - 0.8)
                .collect();
            let w: Vec<f32> = (0..p.w_len()).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
            let dy: Vec<f32> = (0..p.y_len())
                .map(|i| (i % 13) as f32 * 0.1 - 0.6)
                .collect();
            let (mut y, mut dx, mut dw) = (
                vec![0.0; p.y_len()],
                vec![0.0; p.x_len()],
                vec![0.0; p.w_len()],
            );
            let f = best_seconds(reps, || Cpu.conv2d_relu_input(&p, &x, &w, &mut y).unwrap());
            let bi = best_seconds(reps, || {
                Cpu.conv2d_backward_input_relu_mask(&p, &w, &dy, &x, &mut dx)
                    .unwrap()
            });
            let bw = best_seconds(reps, || {
                Cpu.conv2d_backward_weight_relu_input(&p, &x, &dy, &mut dw)
                    .unwrap()
            });
            println!(
                "dw {c:2}x{hw:2} s{stride} k{k} d{d}: fwd {:7.1} us  bwd_in {:7.1} us  bwd_w {:7.1} us",
                f * 1e6,
                bi * 1e6,
                bw * 1e6
            );
            totals[0] += f;
            totals[1] += bi;
            totals[2] += bw;
        }
        if stride == 2 {
            continue;
        }
        let bn = BatchNormParams::new(n, c, hw * hw).check()?;
        let x: Vec<f32> = (0..bn.x_len()).map(|i| (i % 17) as f32 * 0.1).collect();
        let dy = x.clone();
        let (mut y, mut dx) = (vec![0.0; bn.x_len()], vec![0.0; bn.x_len()]);
        let (mut rm, mut rv, mut m, mut v) =
            (vec![0.0; c], vec![1.0; c], vec![0.0; c], vec![0.0; c]);
        let bf = best_seconds(reps, || {
            Cpu.batch_norm(
                &bn,
                &x,
                None,
                None,
                Some(&mut rm),
                Some(&mut rv),
                &mut y,
                &mut m,
                &mut v,
            )
            .unwrap()
        });
        let bb = best_seconds(reps, || {
            Cpu.batch_norm_backward(&bn, &x, None, &m, &v, &dy, &mut dx, None, None)
                .unwrap()
        });
        println!(
            "bn {c:2}x{hw:2}: fwd {:7.1} us  bwd {:7.1} us",
            bf * 1e6,
            bb * 1e6
        );
        totals[3] += bf;
        totals[4] += bb;
    }
    println!(
        "total: dw fwd {:.1} us, dw bwd_in {:.1} us, dw bwd_w {:.1} us, bn fwd {:.1} us, bn bwd {:.1} us; all {:.1} us",
        totals[0] * 1e6,
        totals[1] * 1e6,
        totals[2] * 1e6,
        totals[3] * 1e6,
        totals[4] * 1e6,
        totals.iter().sum::<f64>() * 1e6
    );
    Ok(())
}
