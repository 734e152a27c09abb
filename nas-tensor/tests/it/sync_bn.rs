//! Synchronised batch norm: shards on two threads (an in-test allreduce) compute what one
//! batch norm over the whole batch computes, forward, running statistics and gradients.

use std::sync::{Arc, Barrier, Mutex};

use nas_tensor::Tensor;
use nas_tensor::nn::{BatchNorm2d, Module};
use nas_tensor::sync_bn::{Reduce, SyncBn, with_sync_bn};

/// An allreduce over `n` threads: everyone adds its buffer, waits, reads the sum.
fn thread_allreduce(n: usize) -> Reduce {
    let acc: Arc<Mutex<(Vec<f64>, usize)>> = Arc::new(Mutex::new((Vec::new(), 0)));
    let bar = Arc::new(Barrier::new(n));
    Arc::new(move |buf: &mut [f64]| {
        {
            let mut a = acc.lock().unwrap();
            if a.1 == 0 {
                a.0 = vec![0.0; buf.len()];
            }
            for (s, v) in a.0.iter_mut().zip(buf.iter()) {
                *s += v;
            }
            a.1 += 1;
        }
        bar.wait();
        buf.copy_from_slice(&acc.lock().unwrap().0);
        bar.wait();
        let mut a = acc.lock().unwrap();
        a.1 -= 1;
        drop(a);
        bar.wait();
        Ok(())
    })
}

struct Out {
    y: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
    rm: Vec<f32>,
    rv: Vec<f32>,
}

/// `BatchNorm2d` over rows `lo..hi` of `x` (`[n, c, h, w]`), loss = mean over the shard's
/// examples of sum(y * r); `sync` as given.
fn run(x: &[f32], r: &[f32], shape: [usize; 4], lo: usize, hi: usize, sync: Option<SyncBn>) -> Out {
    let per = shape[1] * shape[2] * shape[3];
    let n = hi - lo;
    let xs = Tensor::from_vec(
        x[lo * per..hi * per].to_vec(),
        &[n, shape[1], shape[2], shape[3]],
    )
    .unwrap()
    .param();
    let rs = Tensor::from_vec(
        r[lo * per..hi * per].to_vec(),
        &[n, shape[1], shape[2], shape[3]],
    )
    .unwrap();
    let bn = BatchNorm2d::new(shape[1], true);
    // non-trivial affine parameters and running statistics
    let c = shape[1];
    bn.weight
        .as_ref()
        .unwrap()
        .set_data(&(0..c).map(|i| 0.5 + 0.25 * i as f32).collect::<Vec<_>>())
        .unwrap();
    bn.bias
        .as_ref()
        .unwrap()
        .set_data(&(0..c).map(|i| 0.1 * i as f32).collect::<Vec<_>>())
        .unwrap();
    bn.running_var.set_data(&vec![2.0; c]).unwrap();
    let y = with_sync_bn(sync, || bn.forward(&xs)).unwrap();
    let loss = y.mul(&rs).unwrap().sum().scale(1.0 / n as f32);
    loss.backward().unwrap();
    Out {
        y: y.to_vec().unwrap(),
        dx: xs.grad_vec().unwrap().unwrap(),
        dw: bn.weight.as_ref().unwrap().grad_vec().unwrap().unwrap(),
        db: bn.bias.as_ref().unwrap().grad_vec().unwrap().unwrap(),
        rm: bn.running_mean.to_vec().unwrap(),
        rv: bn.running_var.to_vec().unwrap(),
    }
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (p, q)) in a.iter().zip(b).enumerate() {
        assert!(
            (p - q).abs() <= tol * (1.0 + q.abs()),
            "{what}[{i}]: {p} vs {q}"
        );
    }
}

fn check_split(split: usize) {
    let shape = [5usize, 3, 2, 3];
    let len: usize = shape.iter().product();
    let x: Vec<f32> = (0..len)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 4.0 + (i % 3) as f32)
        .collect();
    let r: Vec<f32> = (0..len)
        .map(|i| ((i * 13 % 17) as f32 - 8.0) / 8.0)
        .collect();
    let whole = run(&x, &r, shape, 0, 5, None);
    let reduce = thread_allreduce(2);
    let per = len / shape[0];
    let parts: Vec<(usize, usize)> = vec![(0, split), (split, 5)];
    let outs: Vec<Out> = std::thread::scope(|s| {
        let hs: Vec<_> = parts
            .iter()
            .map(|&(lo, hi)| {
                let sync = SyncBn {
                    reduce: reduce.clone(),
                    weight: (hi - lo) as f64 / 5.0,
                };
                let (x, r) = (&x, &r);
                s.spawn(move || run(x, r, shape, lo, hi, Some(sync)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut y = Vec::new();
    let mut dx = Vec::new();
    let (mut dw, mut db) = (vec![0.0f32; 3], vec![0.0f32; 3]);
    for (o, &(lo, hi)) in outs.iter().zip(&parts) {
        let w = (hi - lo) as f32 / 5.0;
        y.extend_from_slice(&o.y);
        // each rank's gradient is of its own shard's mean loss: weighted, it is the batch's
        dx.extend(o.dx.iter().map(|v| v * w));
        for i in 0..3 {
            dw[i] += o.dw[i] * w;
            db[i] += o.db[i] * w;
        }
        close(&o.rm, &whole.rm, 1e-5, "running mean");
        close(&o.rv, &whole.rv, 1e-5, "running var");
        assert_eq!(o.y.len(), (hi - lo) * per);
    }
    close(&y, &whole.y, 1e-4, "output");
    close(&dx, &whole.dx, 1e-4, "input gradient");
    close(&dw, &whole.dw, 1e-4, "weight gradient");
    close(&db, &whole.db, 1e-4, "bias gradient");
}

#[test]
fn two_shards_equal_the_whole_batch() {
    check_split(2); // 2 + 3 examples: unequal shards, weighted by their sizes
    check_split(1); // 1 + 4
}

#[test]
fn without_sync_shards_use_their_own_statistics() {
    // the contrast the synchronised version removes: a shard normalised alone differs
    let shape = [4usize, 2, 2, 2];
    let len: usize = shape.iter().product();
    let x: Vec<f32> = (0..len)
        .map(|i| (i as f32 * 0.7).sin() * 3.0 + (i / 8) as f32)
        .collect();
    let r = vec![1.0f32; len];
    let whole = run(&x, &r, shape, 0, 4, None);
    let half = run(&x, &r, shape, 0, 2, None);
    let d = half
        .y
        .iter()
        .zip(&whole.y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(d > 1e-2, "{d}");
}

#[test]
fn one_rank_equals_plain_batch_norm() {
    let shape = [3usize, 4, 3, 2];
    let len: usize = shape.iter().product();
    let x: Vec<f32> = (0..len)
        .map(|i| ((i * 29 % 31) as f32 - 15.0) / 5.0)
        .collect();
    let r: Vec<f32> = (0..len)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
        .collect();
    let plain = run(&x, &r, shape, 0, 3, None);
    let id: Reduce = Arc::new(|_: &mut [f64]| Ok(()));
    let one = run(
        &x,
        &r,
        shape,
        0,
        3,
        Some(SyncBn {
            reduce: id,
            weight: 1.0,
        }),
    );
    close(&one.y, &plain.y, 1e-5, "output");
    close(&one.dx, &plain.dx, 1e-4, "input gradient");
    close(&one.dw, &plain.dw, 1e-5, "weight gradient");
    close(&one.db, &plain.db, 1e-5, "bias gradient");
    close(&one.rm, &plain.rm, 1e-6, "running mean");
    close(&one.rv, &plain.rv, 1e-6, "running var");
}

#[test]
fn a_failing_reduction_is_an_error() {
    let x = Tensor::randn(&[2, 2, 2, 2], 1);
    let bad: Reduce =
        Arc::new(|_: &mut [f64]| Err(nas_tensor::TensorError::Collective("rank 1 left".into())));
    let bn = BatchNorm2d::new(2, false);
    let e = with_sync_bn(
        Some(SyncBn {
            reduce: bad,
            weight: 1.0,
        }),
        || bn.forward(&x),
    )
    .unwrap_err();
    assert!(e.to_string().contains("rank 1 left"), "{e}");
}
