//! CPU kernels of the recurrent ops (lengths already checked by the descriptions).

use super::{Lstm, LstmCell, Rows, lstm_cell_backward, lstm_cell_forward};
use crate::gemm::sgemm;
use crate::simd::avx512_dispatch;
use crate::threads::{num_threads, parallel_split_mut, split_range};
use std::sync::Mutex;

/// `out[i] = table[indices[i]]`, row by row.
pub(crate) fn gather_rows(p: &Rows, table: &[f32], indices: &[usize], out: &mut [f32]) {
    let c = p.cols;
    for (dst, &i) in out.chunks_exact_mut(c.max(1)).zip(indices) {
        dst.copy_from_slice(&table[i * c..(i + 1) * c]);
    }
}

/// `table[indices[i]] += src[i]`, in index order.
pub(crate) fn scatter_add_rows(p: &Rows, src: &[f32], indices: &[usize], table: &mut [f32]) {
    let c = p.cols;
    for (row, &i) in src.chunks_exact(c.max(1)).zip(indices) {
        for (t, s) in table[i * c..(i + 1) * c].iter_mut().zip(row) {
            *t += s;
        }
    }
}

/// Batch rows are spread over threads when a step has at least this many states (a step of
/// the LSTM benchmark, batch 64 x hidden 256, has 16,384): below it the wake-up costs more than
/// the rows.
const PARALLEL_STATES: usize = 8192;

/// How many row runs a pointwise step of `n` rows of `h` states is split into.
fn row_parts(n: usize, h: usize) -> usize {
    if n * h < PARALLEL_STATES {
        1
    } else {
        num_threads().min(n)
    }
}

/// `data` (rows of `h`) cut into the row runs of [`split_range`]`(n, parts, i)`, each behind
/// its own lock so that the task of run `i` (the same runs as [`parallel_split_mut`]'s) can
/// take it.
fn row_runs(data: &mut [f32], h: usize, n: usize, parts: usize) -> Vec<Mutex<&mut [f32]>> {
    let mut rest = data;
    (0..parts)
        .map(|i| {
            let (run, tail) =
                std::mem::take(&mut rest).split_at_mut(split_range(n, parts, i).len() * h);
            rest = tail;
            Mutex::new(run)
        })
        .collect()
}

/// Turns the pre-activations in `act` (`[n, 4h]`) into activated gates in place and writes
/// the new cell and output states.
fn pointwise_forward(
    hidden: usize,
    act: &mut [f32],
    c_prev: &[f32],
    h_out: &mut [f32],
    c_out: &mut [f32],
) {
    let h = hidden;
    if h == 0 {
        return;
    }
    forward_in_parts(h, row_parts(c_prev.len() / h, h), act, c_prev, h_out, c_out);
}

/// [`pointwise_forward`] with its rows in `parts` runs, one task each.
fn forward_in_parts(
    h: usize,
    parts: usize,
    act: &mut [f32],
    c_prev: &[f32],
    h_out: &mut [f32],
    c_out: &mut [f32],
) {
    let n = c_prev.len() / h;
    if parts <= 1 {
        forward_rows(h, act, c_prev, h_out, c_out);
        return;
    }
    let (hs, cs) = (row_runs(h_out, h, n, parts), row_runs(c_out, h, n, parts));
    parallel_split_mut(act, 4 * h, parts, |i, rows, a| {
        let (mut ho, mut co) = (hs[i].lock().unwrap(), cs[i].lock().unwrap());
        forward_rows(
            h,
            a,
            &c_prev[rows.start * h..rows.end * h],
            &mut ho,
            &mut co,
        );
    });
}

/// [`pointwise_forward`] on one thread.
fn forward_rows(h: usize, act: &mut [f32], c_prev: &[f32], h_out: &mut [f32], c_out: &mut [f32]) {
    for (((row, cp), ho), co) in act
        .chunks_exact_mut(4 * h)
        .zip(c_prev.chunks_exact(h))
        .zip(h_out.chunks_exact_mut(h))
        .zip(c_out.chunks_exact_mut(h))
    {
        forward_row(row, cp, ho, co);
    }
}

avx512_dispatch! {
    /// One batch row of [`pointwise_forward`], compiled for 16-float vectors where the CPU
    /// has them (the activations are plain arithmetic, see [`crate::math`]).
    fn forward_row(row: &mut [f32], c_prev: &[f32], h_out: &mut [f32], c_out: &mut [f32])
        = forward_row_body;
}

#[inline(always)]
fn forward_row_body(row: &mut [f32], c_prev: &[f32], h_out: &mut [f32], c_out: &mut [f32]) {
    let h = c_prev.len();
    let (ai, rest) = row.split_at_mut(h);
    let (af, rest) = rest.split_at_mut(h);
    let (ag, ao) = rest.split_at_mut(h);
    let (ao, h_out, c_out) = (&mut ao[..h], &mut h_out[..h], &mut c_out[..h]);
    for j in 0..h {
        let (g, c, y) = lstm_cell_forward([ai[j], af[j], ag[j], ao[j]], c_prev[j]);
        ai[j] = g[0];
        af[j] = g[1];
        ag[j] = g[2];
        ao[j] = g[3];
        c_out[j] = c;
        h_out[j] = y;
    }
}

/// The backward of [`pointwise_forward`], with `dc` the gradient reaching the new cell states.
#[allow(clippy::too_many_arguments)]
fn pointwise_backward(
    hidden: usize,
    act: &[f32],
    c_prev: &[f32],
    c: &[f32],
    dh: &[f32],
    dc: &[f32],
    dgates: &mut [f32],
    dc_prev: &mut [f32],
) {
    let h = hidden;
    if h == 0 {
        return;
    }
    let parts = row_parts(c_prev.len() / h, h);
    backward_in_parts(h, parts, act, c_prev, c, dh, dc, dgates, dc_prev);
}

/// [`pointwise_backward`] with its rows in `parts` runs, one task each.
#[allow(clippy::too_many_arguments)]
fn backward_in_parts(
    h: usize,
    parts: usize,
    act: &[f32],
    c_prev: &[f32],
    c: &[f32],
    dh: &[f32],
    dc: &[f32],
    dgates: &mut [f32],
    dc_prev: &mut [f32],
) {
    let n = c_prev.len() / h;
    let run = |rows: std::ops::Range<usize>, dg: &mut [f32], dcp: &mut [f32]| {
        let (a, s) = (rows.start * h, rows.end * h);
        for (r, (row, drow)) in act[4 * a..4 * s]
            .chunks_exact(4 * h)
            .zip(dg.chunks_exact_mut(4 * h))
            .enumerate()
        {
            let e = a + r * h..a + (r + 1) * h;
            backward_row(
                row,
                &c_prev[e.clone()],
                &c[e.clone()],
                &dh[e.clone()],
                &dc[e],
                drow,
                &mut dcp[r * h..(r + 1) * h],
            );
        }
    };
    if parts <= 1 {
        run(0..n, dgates, dc_prev);
        return;
    }
    let dcs = row_runs(dc_prev, h, n, parts);
    parallel_split_mut(dgates, 4 * h, parts, |i, rows, dg| {
        run(rows, dg, &mut dcs[i].lock().unwrap());
    });
}

avx512_dispatch! {
    /// One batch row of [`pointwise_backward`], compiled for 16-float vectors where the CPU
    /// has them.
    fn backward_row(
        row: &[f32],
        c_prev: &[f32],
        c: &[f32],
        dh: &[f32],
        dc: &[f32],
        drow: &mut [f32],
        dc_prev: &mut [f32],
    ) = backward_row_body;
}

#[inline(always)]
fn backward_row_body(
    row: &[f32],
    c_prev: &[f32],
    c: &[f32],
    dh: &[f32],
    dc: &[f32],
    drow: &mut [f32],
    dc_prev: &mut [f32],
) {
    let h = c_prev.len();
    let (ai, af, ag, ao) = (
        &row[..h],
        &row[h..2 * h],
        &row[2 * h..3 * h],
        &row[3 * h..4 * h],
    );
    let (di, rest) = drow.split_at_mut(h);
    let (df, rest) = rest.split_at_mut(h);
    let (dg, d_o) = rest.split_at_mut(h);
    let (d_o, c, dh, dc, dc_prev) = (
        &mut d_o[..h],
        &c[..h],
        &dh[..h],
        &dc[..h],
        &mut dc_prev[..h],
    );
    for j in 0..h {
        let (da, dcp) =
            lstm_cell_backward([ai[j], af[j], ag[j], ao[j]], c_prev[j], c[j], dh[j], dc[j]);
        di[j] = da[0];
        df[j] = da[1];
        dg[j] = da[2];
        d_o[j] = da[3];
        dc_prev[j] = dcp;
    }
}

pub(crate) fn cell_forward(
    p: &LstmCell,
    gates: &[f32],
    c_prev: &[f32],
    act: &mut [f32],
    hc: &mut [f32],
) {
    act.copy_from_slice(gates);
    let (h_out, c_out) = hc.split_at_mut(p.state_len());
    pointwise_forward(p.hidden, act, c_prev, h_out, c_out);
}

pub(crate) fn cell_backward(
    p: &LstmCell,
    act: &[f32],
    c_prev: &[f32],
    hc: &[f32],
    dhc: &[f32],
    dgates: &mut [f32],
    dc_prev: &mut [f32],
) {
    let s = p.state_len();
    let (dh, dc) = dhc.split_at(s);
    pointwise_backward(p.hidden, act, c_prev, &hc[s..], dh, dc, dgates, dc_prev);
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn sequence_forward(
    p: &Lstm,
    xg: &[f32],
    w_hh: &[f32],
    h0: &[f32],
    c0: &[f32],
    act: &mut [f32],
    hs: &mut [f32],
    cs: &mut [f32],
) {
    let (n, h) = (p.batch, p.hidden);
    let (gl, sl) = (n * 4 * h, n * h);
    act.copy_from_slice(xg);
    for t in 0..p.steps {
        let (h_done, h_rest) = hs.split_at_mut(t * sl);
        let (c_done, c_rest) = cs.split_at_mut(t * sl);
        let h_prev: &[f32] = if t == 0 { h0 } else { &h_done[(t - 1) * sl..] };
        let c_prev: &[f32] = if t == 0 { c0 } else { &c_done[(t - 1) * sl..] };
        let a = &mut act[t * gl..(t + 1) * gl];
        if h > 0 && n > 0 {
            // a += h_prev W_hh^T: [n, h] x [h, 4h], all four gates in one GEMM
            sgemm(
                false,
                true,
                n,
                4 * h,
                h,
                1.0,
                h_prev,
                h,
                w_hh,
                h,
                1.0,
                a,
                4 * h,
            );
        }
        pointwise_forward(h, a, c_prev, &mut h_rest[..sl], &mut c_rest[..sl]);
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn sequence_backward(
    p: &Lstm,
    w_hh: &[f32],
    c0: &[f32],
    act: &[f32],
    cs: &[f32],
    dhs: &[f32],
    dxg: &mut [f32],
    dh0: &mut [f32],
    dc0: &mut [f32],
) {
    let (n, h) = (p.batch, p.hidden);
    let (gl, sl) = (n * 4 * h, n * h);
    // dh0 and dc0 carry the gradient flowing into the previous step's h and c.
    dh0.fill(0.0);
    dc0.fill(0.0);
    let mut dh = vec![0.0f32; sl];
    let mut dc_prev = vec![0.0f32; sl];
    for t in (0..p.steps).rev() {
        for ((d, &from_out), &from_next) in dh.iter_mut().zip(&dhs[t * sl..(t + 1) * sl]).zip(&*dh0)
        {
            *d = from_out + from_next;
        }
        let c_prev = if t == 0 {
            c0
        } else {
            &cs[(t - 1) * sl..t * sl]
        };
        let dg = &mut dxg[t * gl..(t + 1) * gl];
        pointwise_backward(
            h,
            &act[t * gl..(t + 1) * gl],
            c_prev,
            &cs[t * sl..(t + 1) * sl],
            &dh,
            dc0,
            dg,
            &mut dc_prev,
        );
        dc0.copy_from_slice(&dc_prev);
        if h > 0 && n > 0 {
            // dh_prev = dgates W_hh: [n, 4h] x [4h, h]
            sgemm(
                false,
                false,
                n,
                h,
                4 * h,
                1.0,
                dg,
                4 * h,
                w_hh,
                h,
                0.0,
                dh0,
                h,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows split into runs over threads give the same bits as one pass over them, forward and
    /// backward, for run counts that do and do not divide the rows.
    #[test]
    fn pointwise_steps_in_parts_equal_one_pass() {
        let (n, h) = (37, 24);
        let val = |i: usize, k: usize| ((i * k) % 97) as f32 / 24.0 - 2.0;
        let act0: Vec<f32> = (0..n * 4 * h).map(|i| val(i, 31)).collect();
        let c_prev: Vec<f32> = (0..n * h).map(|i| val(i, 17)).collect();
        let (dh, dc): (Vec<f32>, Vec<f32>) = (0..n * h).map(|i| (val(i, 13), val(i, 7))).unzip();
        let forward = |parts: usize| {
            let mut act = act0.clone();
            let (mut ho, mut co) = (vec![f32::NAN; n * h], vec![f32::NAN; n * h]);
            forward_in_parts(h, parts, &mut act, &c_prev, &mut ho, &mut co);
            let (mut dg, mut dcp) = (vec![f32::NAN; n * 4 * h], vec![f32::NAN; n * h]);
            backward_in_parts(h, parts, &act, &c_prev, &co, &dh, &dc, &mut dg, &mut dcp);
            [act, ho, co, dg, dcp]
        };
        let one = forward(1);
        assert!(one.iter().flatten().all(|v| v.is_finite()));
        for parts in [2, 3, 5, n] {
            let got = forward(parts);
            for (k, (g, w)) in got.iter().zip(&one).enumerate() {
                assert!(
                    g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{parts} parts, output {k}"
                );
            }
        }
    }
}
