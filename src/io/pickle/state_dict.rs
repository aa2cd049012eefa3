//! PyTorch state dicts from the pickle machine's tree (the `data.pkl` of a `torch.save` zip):
//! only the globals a state dict needs are accepted (`collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`, the typed storage
//! classes), and each tensor's bytes are copied out of its storage after checking that its
//! offset, shape and strides stay inside it. Reading the zip is the caller's (`hf::checkpoint`);
//! this file depends on the pickle machine only, so that the fuzz target can include it.

use super::vm::{self, Value};

/// Element types of a checkpoint's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    pub fn from_storage(name: &str) -> Option<DType> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }
}

/// One tensor of a state dict: contiguous little-endian bytes in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<i64>,
    pub data: Vec<u8>,
}

/// Every tensor of the state dict `root`, in file order. `read_storage` gives a storage's bytes
/// by key (each key is read once); `budget` bounds the tensors' bytes together.
pub fn tensors(
    root: &Value,
    read_storage: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    mut budget: u64,
) -> Result<Vec<RawTensor>, String> {
    let entries: Vec<(Value, Value)> = match root {
        Value::Dict(entries) => entries.borrow().clone(),
        Value::Object(object) => {
            let object = object.borrow();
            check_global(&object.callable, &[("collections", "OrderedDict")])?;
            object.entries.clone()
        }
        other => return Err(format!("data.pkl holds a {}, not a state dict", other.type_name())),
    };
    let mut tensors = Vec::with_capacity(entries.len());
    // Each storage is read once, however many tensors view it.
    let mut storages: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    for (key, value) in entries {
        let Value::Str(name) = key else { return Err("a state-dict key that is not a string".into()) };
        let spec = tensor_spec(&value).map_err(|message| format!("`{name}`: {message}"))?;
        if !storages.contains_key(&spec.key) {
            storages.insert(spec.key.clone(), read_storage(&spec.key)?);
        }
        let data =
            gather(&storages[&spec.key], &spec, &mut budget).map_err(|message| format!("`{name}`: {message}"))?;
        tensors.push(RawTensor { name: name.to_string(), dtype: spec.dtype, shape: spec.shape, data });
    }
    Ok(tensors)
}

struct TensorSpec {
    key: String,
    dtype: DType,
    offset: i64,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

fn check_global(value: &Value, allowed: &[(&str, &str)]) -> Result<(), String> {
    match value.global_name() {
        Some(name) if allowed.contains(&name) => Ok(()),
        Some((module, name)) => {
            Err(format!("the pickle names `{module}.{name}`, which a state dict does not need; refusing it"))
        }
        None => Err(format!("expected a global, found a {}", value.type_name())),
    }
}

fn ints(value: &Value) -> Result<Vec<i64>, String> {
    match value {
        Value::Tuple(items) => items
            .iter()
            .map(|item| match item {
                Value::Int(n) => Ok(*n),
                other => Err(format!("expected an int, found a {}", other.type_name())),
            })
            .collect(),
        other => Err(format!("expected a tuple of ints, found a {}", other.type_name())),
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, possibly inside `_rebuild_parameter`
/// (a real file wraps a tensor once; a few levels are accepted, no more).
fn tensor_spec(value: &Value) -> Result<TensorSpec, String> {
    let mut value = value.clone();
    for _ in 0..8 {
        let Value::Object(object) = &value else {
            return Err(format!("a {} where a tensor was expected", value.type_name()));
        };
        let inner = {
            let object = object.borrow();
            if object.callable.global_name() != Some(("torch._utils", "_rebuild_parameter")) {
                return rebuilt_tensor(&object);
            }
            let Value::Tuple(args) = &object.args else { return Err("tensor arguments are not a tuple".into()) };
            args.first().ok_or("a parameter without its tensor")?.clone()
        };
        value = inner;
    }
    Err("parameters nested more than 8 deep".into())
}

/// The arguments of `_rebuild_tensor_v2`.
fn rebuilt_tensor(object: &vm::Object) -> Result<TensorSpec, String> {
    let Value::Tuple(args) = &object.args else { return Err("tensor arguments are not a tuple".into()) };
    check_global(&object.callable, &[("torch._utils", "_rebuild_tensor_v2")])?;
    let [storage, offset, shape, strides, ..] = &args[..] else { return Err("too few tensor arguments".into()) };
    let Value::Object(storage) = storage else { return Err("the storage is not a persistent id".into()) };
    let storage = storage.borrow();
    check_global(&storage.callable, &[("__persistent__", "id")])?;
    let Value::Tuple(id) = &storage.args else { return Err("the persistent id is not a tuple".into()) };
    let [Value::Str(tag), class, Value::Str(key), ..] = &id[..] else {
        return Err("unexpected persistent id layout".into());
    };
    if &**tag != "storage" {
        return Err(format!("unexpected persistent id `{tag}`"));
    }
    let dtype = match class.global_name() {
        Some(("torch", name)) => {
            DType::from_storage(name).ok_or_else(|| format!("unsupported storage `torch.{name}`"))?
        }
        Some((module, name)) => return Err(format!("unsupported storage `{module}.{name}`")),
        None => return Err("the storage type is not a global".into()),
    };
    if key.contains('/') || key.contains("..") {
        return Err(format!("storage key `{key}` is not a plain name"));
    }
    let Value::Int(offset) = offset else { return Err("the storage offset is not an int".into()) };
    let (shape, strides) = (ints(shape)?, ints(strides)?);
    if shape.len() != strides.len() || shape.iter().chain(&strides).any(|&n| n < 0) || *offset < 0 {
        return Err("shape, strides or offset out of range".into());
    }
    Ok(TensorSpec { key: key.to_string(), dtype, offset: *offset, shape, strides })
}

/// The tensor's elements in row-major order, every index checked against the storage; its
/// bytes are taken from `budget`.
fn gather(storage: &[u8], spec: &TensorSpec, budget: &mut u64) -> Result<Vec<u8>, String> {
    let size = spec.dtype.size();
    let elements = storage.len() / size;
    let count = spec.shape.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n as usize)).ok_or("shape overflows")?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let bytes = count.checked_mul(size).ok_or("shape overflows")? as u64;
    if bytes > *budget {
        return Err(format!(
            "its {bytes} bytes take the state dict past twice the file's size (views that expand a storage?)"
        ));
    }
    *budget -= bytes;
    // The furthest element any index reaches (all strides are ≥ 0, checked when read).
    let last = spec.shape.iter().zip(&spec.strides).map(|(&n, &s)| (n - 1) as i128 * s as i128).sum::<i128>()
        + spec.offset as i128;
    if last >= elements as i128 {
        return Err(format!("reaches element {last} of a storage of {elements}"));
    }
    let contiguous = {
        let mut expected = 1i64;
        spec.shape.iter().zip(&spec.strides).rev().all(|(&n, &s)| {
            let ok = n == 1 || s == expected;
            expected *= n;
            ok
        })
    };
    let start = spec.offset as usize * size;
    if contiguous {
        return Ok(storage[start..start + count * size].to_vec());
    }
    let mut data = Vec::with_capacity(count * size);
    let mut index = vec![0i64; spec.shape.len()];
    for _ in 0..count {
        let element = spec.offset + index.iter().zip(&spec.strides).map(|(i, s)| i * s).sum::<i64>();
        let at = element as usize * size;
        data.extend_from_slice(&storage[at..at + size]);
        for dim in (0..index.len()).rev() {
            index[dim] += 1;
            if index[dim] < spec.shape[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
    Ok(data)
}
