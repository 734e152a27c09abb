//! Every `.cu` module compiles to PTX with NVRTC (feature `cuda`), for compute capability
//! 9.0 (the project's GPU machines) and 8.0. Needs `libnvrtc` on the library path, which a
//! machine without CUDA gets from PyPI's `nvidia-cuda-nvrtc` wheel (`.ci/run` installs it and
//! sets `NAS_REQUIRE_NVRTC=1`; without that variable a missing NVRTC skips the check with a
//! message, with it the check fails). With `NAS_PTX_OUT=dir` the PTX is written there (for
//! `ptxas` in `.ci/run`).
#![cfg(feature = "cuda")]

use nas_kernels::cuda::{Module, compile_to_ptx, nvrtc_present};

#[test]
fn every_module_compiles_with_nvrtc() {
    if !nvrtc_present() {
        assert!(
            std::env::var("NAS_REQUIRE_NVRTC").is_err(),
            "NAS_REQUIRE_NVRTC is set but libnvrtc cannot be loaded (LD_LIBRARY_PATH={:?})",
            std::env::var("LD_LIBRARY_PATH")
        );
        eprintln!("SKIPPED: libnvrtc cannot be loaded; the CUDA kernels were not compiled");
        return;
    }
    let out = std::env::var("NAS_PTX_OUT").ok();
    for arch in ["compute_90", "compute_80"] {
        for m in Module::ALL {
            let ptx = compile_to_ptx(m, arch)
                .unwrap_or_else(|log| panic!("{} for {arch}:\n{log}", m.name()));
            let kernels = m.kernels();
            assert!(!kernels.is_empty(), "{} defines no kernel", m.name());
            for k in kernels {
                assert!(
                    ptx.contains(&format!(".entry {k}(")),
                    "{}: kernel {k} missing from the PTX",
                    m.name()
                );
            }
            if let (Some(dir), "compute_90") = (&out, arch) {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(format!("{dir}/{}.ptx", m.name()), ptx).unwrap();
            }
        }
    }
}
