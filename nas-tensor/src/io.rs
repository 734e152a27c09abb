//! Saving and loading named tensors as safetensors (float32, little-endian, PyTorch-style
//! dotted names), readable by `safetensors.torch.load_file`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Result, TensorError};
use crate::nn::Module;
use crate::tensor::Tensor;

fn st_err(path: &Path, e: impl std::fmt::Display) -> TensorError {
    TensorError::Load(format!("{}: {e}", path.display()))
}

/// Writes `tensors` (name, tensor) to `path` as safetensors. Names must be unique.
pub fn save_safetensors(path: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let mut bytes: BTreeMap<&str, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, t) in tensors {
        // an explicit copy to the host
        let b: Vec<u8> = t.to_vec()?.iter().flat_map(|x| x.to_le_bytes()).collect();
        if bytes
            .insert(name.as_str(), (t.shape().to_vec(), b))
            .is_some()
        {
            return Err(TensorError::InvalidArgument {
                op: "save",
                detail: format!("duplicate tensor name `{name}`"),
            });
        }
    }
    let mut views = Vec::with_capacity(bytes.len());
    for (name, (shape, b)) in &bytes {
        let v = TensorView::new(Dtype::F32, shape.clone(), b).map_err(|e| st_err(path, e))?;
        views.push((name.to_string(), v));
    }
    safetensors::tensor::serialize_to_file(views, None, path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(io) => TensorError::Io(io),
        e => st_err(path, e),
    })
}

/// Reads every tensor of a safetensors file (float32 only), sorted by name.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| st_err(path, e))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(st_err(
                path,
                format!(
                    "tensor `{name}` has dtype {:?}, only F32 is supported",
                    view.dtype()
                ),
            ));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.push((name, Tensor::from_vec(data, view.shape())?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Saves a module's parameters and buffers (its [`Module::state_dict`]).
pub fn save_module(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    save_safetensors(path, &module.state_dict())
}

/// Loads parameters and buffers into `module` in place. Every name of the module must be in
/// the file with the same shape, and the file must hold no other tensor (PyTorch's
/// `num_batches_tracked` counters, which this crate does not keep, are ignored). On any
/// mismatch nothing is modified and the error lists the problems.
pub fn load_module(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let loaded = load_safetensors(path)?;
    load_state_dict(module, &loaded).map_err(|e| match e {
        TensorError::Load(m) => TensorError::Load(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// Copies named tensors into `module`'s parameters and buffers (strict, see [`load_module`]).
pub fn load_state_dict(module: &dyn Module, tensors: &[(String, Tensor)]) -> Result<()> {
    let own = module.state_dict();
    let given: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let own_names: HashMap<&str, &Tensor> = own.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut problems = Vec::new();
    for (name, t) in &own {
        match given.get(name.as_str()) {
            None => problems.push(format!("missing `{name}`")),
            Some(g) if g.shape() != t.shape() => problems.push(format!(
                "`{name}` has shape {:?} in the file, {:?} in the module",
                g.shape(),
                t.shape()
            )),
            Some(_) => {}
        }
    }
    for (name, _) in tensors {
        if !own_names.contains_key(name.as_str()) && !name.ends_with("num_batches_tracked") {
            problems.push(format!("unexpected `{name}`"));
        }
    }
    if !problems.is_empty() {
        return Err(TensorError::Load(problems.join("; ")));
    }
    for (name, t) in &own {
        let src = given[name.as_str()];
        if src.same(t) {
            continue;
        }
        // the loaded values (on the host) are copied onto the module's device
        t.set_data(&src.to_vec()?)?;
    }
    Ok(())
}
