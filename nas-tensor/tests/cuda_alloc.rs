//! The CUDA backend's caching allocator: after the first steps of a training loop have
//! filled its free lists, further steps allocate nothing from the driver (no `cuMemAlloc`
//! per op). On the emulated device (feature `cuda-emu`), or on `NAS_TEST_DEVICE=cuda:N`.
//! One test in this binary: the counters are per device and other tests would move them.
#![cfg(feature = "cuda")]

use nas_kernels::Cuda;
use nas_tensor::nn::{BatchNorm2d, Conv2d, GlobalAvgPool, Linear, Module, ReLU, Sequential};
use nas_tensor::optim::{Optimizer, Sgd, SgdConfig, clip_grad_norm};
use nas_tensor::{ConvOptions, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn training_steps_after_the_first_allocate_nothing_from_the_driver() {
    let device: Device = match std::env::var("NAS_TEST_DEVICE") {
        Ok(d) => d.parse().unwrap(),
        Err(_) if cfg!(feature = "cuda-emu") => Device::CudaEmu,
        Err(_) => {
            eprintln!("SKIPPED: no NAS_TEST_DEVICE and no cuda-emu feature");
            return;
        }
    };
    let cuda = Cuda::new(device).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let net = Sequential::new()
        .push(Conv2d::new(3, 8, 3, ConvOptions::default().padding(1), false, &mut rng).unwrap())
        .push(BatchNorm2d::new(8, true))
        .push(ReLU::new())
        .push(GlobalAvgPool::new())
        .push(Linear::new(8, 4, true, &mut rng).unwrap());
    net.to_device(device).unwrap();
    let mut sgd = Sgd::new(net.parameters(), SgdConfig::new(0.05).momentum(0.9)).unwrap();
    let x = Tensor::randn(&[8, 3, 6, 6], 2).to_vec().unwrap();
    let labels = [0, 1, 2, 3, 0, 1, 2, 3];
    let mut step = || {
        let xb = Tensor::from_slice_on(&x, &[8, 3, 6, 6], device).unwrap();
        let loss = net.forward(&xb).unwrap().cross_entropy(&labels).unwrap();
        net.zero_grad();
        loss.backward().unwrap();
        clip_grad_norm(&net.parameters(), 1.0).unwrap();
        sgd.step().unwrap();
        loss.item().unwrap()
    };
    let first = step();
    step();
    let warm = cuda.alloc_stats();
    let mut last = 0.0;
    for _ in 0..5 {
        last = step();
    }
    let after = cuda.alloc_stats();
    assert!(last < first, "it learns: {first} -> {last}");
    assert_eq!(
        after.device_allocs, warm.device_allocs,
        "driver allocations in steady state: {warm:?} -> {after:?}"
    );
    assert!(
        after.reuses > warm.reuses + 5 * 20,
        "the steps reused cached blocks: {warm:?} -> {after:?}"
    );
}
