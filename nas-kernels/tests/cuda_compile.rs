//! Every `.cu` module compiles to PTX with NVRTC (feature `cuda`), for compute capability
//! 9.0 (the project's GPU machines) and 8.0. Needs `libnvrtc` on the library path, which a
//! machine without CUDA gets from PyPI's `nvidia-cuda-nvrtc` wheel (`.ci/run` installs it and
//! sets `NAS_REQUIRE_NVRTC=1`; without that variable a missing NVRTC skips the check with a
//! message, with it the check fails). With `NAS_PTX_OUT=dir` the PTX is written there (for
//! `ptxas` in `.ci/run`). The TF32 kernels must hold tensor-core instructions for 8.0 and
//! 9.0 (`cvt.rna.tf32.f32`, `mma.sync.aligned.m16n8k8...tf32`) and none for 7.5, the oldest
//! capability CUDA 13 compiles for (there they trap; the host never launches them).
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
            check_tf32(m, arch, &ptx);
            if let (Some(dir), "compute_90") = (&out, arch) {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(format!("{dir}/{}.ptx", m.name()), ptx).unwrap();
            }
        }
    }
}

const MMA: &str = "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32";
const CVT: &str = "cvt.rna.tf32.f32";

/// The PTX text of kernel `name` (from its `.entry` to the next one).
fn entry<'a>(ptx: &'a str, name: &str) -> &'a str {
    let start = ptx
        .find(&format!(".entry {name}("))
        .unwrap_or_else(|| panic!("kernel {name} missing from the PTX"));
    let rest = &ptx[start + 1..];
    &ptx[start..start + 1 + rest.find(".entry ").unwrap_or(rest.len())]
}

fn check_tf32(m: Module, arch: &str, ptx: &str) {
    for k in m.kernels() {
        let body = entry(ptx, k);
        let tf32 = k.ends_with("_tf32");
        let tensor_cores = arch != "compute_75";
        assert_eq!(
            body.contains(MMA),
            tf32 && tensor_cores,
            "{k} for {arch}: {MMA} expected only in the TF32 kernels, from 8.0 on"
        );
        assert_eq!(
            body.contains(CVT),
            tf32 && tensor_cores,
            "{k} for {arch}: {CVT} expected only in the TF32 kernels, from 8.0 on"
        );
    }
}

#[test]
fn tf32_kernels_have_no_tensor_core_code_below_compute_capability_8() {
    if !nvrtc_present() {
        eprintln!("SKIPPED: libnvrtc cannot be loaded");
        return;
    }
    for m in [Module::Matmul, Module::Conv2d] {
        let ptx = compile_to_ptx(m, "compute_75")
            .unwrap_or_else(|log| panic!("{} for compute_75:\n{log}", m.name()));
        check_tf32(m, "compute_75", &ptx);
        assert!(
            m.kernels().iter().any(|k| k.ends_with("_tf32")),
            "{} has a TF32 kernel",
            m.name()
        );
    }
}
