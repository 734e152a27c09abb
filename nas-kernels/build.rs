//! With the `cuda-emu` feature (tests only): compiles the CUDA kernels (`src/ops/*/kernel.cu`)
//! as C++ together with the emulation runtime (`src/cuda/emu/`), one translation unit, into a
//! static library the emulated device launches from. Without it: nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "cuda-emu")]
    emu::build();
}

#[cfg(feature = "cuda-emu")]
mod emu {
    use std::fmt::Write as _;
    use std::path::PathBuf;

    pub fn build() {
        let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
        let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
        let emu = root.join("src/cuda/emu");
        let prelude = root.join("src/cuda/prelude.cuh");
        let mut modules: Vec<PathBuf> = std::fs::read_dir(root.join("src/ops"))
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path().join("kernel.cu");
                p.exists().then_some(p)
            })
            .collect();
        modules.sort();
        // a new module folder (with its kernel.cu) changes the folder listing
        println!("cargo:rerun-if-changed={}", root.join("src/ops").display());
        let mut tu = String::new();
        writeln!(tu, "#include \"{}\"", emu.join("emu_runtime.cpp").display()).unwrap();
        writeln!(tu, "#include \"{}\"", prelude.display()).unwrap();
        for m in &modules {
            // one namespace per module: helpers may share names across modules, as they
            // can under NVRTC, where each module is its own program
            let ns = m.parent().unwrap().file_name().unwrap().to_str().unwrap();
            writeln!(
                tu,
                "namespace nas_{ns} {{\n#include \"{}\"\n}}",
                m.display()
            )
            .unwrap();
            println!("cargo:rerun-if-changed={}", m.display());
        }
        for f in ["emu.h", "emu_runtime.cpp"] {
            println!("cargo:rerun-if-changed={}", emu.join(f).display());
        }
        println!("cargo:rerun-if-changed={}", prelude.display());
        let tu_path = out.join("nas_emu_all.cpp");
        std::fs::write(&tu_path, tu).unwrap();
        cc::Build::new()
            .cpp(true)
            .file(&tu_path)
            .flag("-std=c++17")
            .flag("-fno-strict-aliasing")
            .flag("-fno-fast-math")
            .flag("-ffp-contract=off")
            .flag_if_supported("-Wno-unknown-pragmas")
            .flag_if_supported("-Wno-unused-parameter")
            .flag_if_supported("-Wno-unused-function")
            .flag_if_supported("-Wno-unused-variable")
            .opt_level(2)
            .compile("nas_cuda_emu");
    }
}
