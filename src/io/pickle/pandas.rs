//! pandas DataFrames from the pickle machine's object tree, accepting exactly the globals a
//! DataFrame pickle needs (pandas 1.x, 2.x and 3.x; numpy 1.x and 2.x; protocols 2 to 5).
//!
//! Layout: `DataFrame` with BUILD state `{_mgr: ...}`;
//! `_mgr` = `BlockManager(blocks, axes)`; each block = `_unpickle_block(values, placement, ndim)`
//! where `values` is a 2-D numpy array `(columns in block, rows)` or a pandas 3 `StringArray`;
//! `axes[0]` holds the column labels. numpy arrays come from `_reconstruct` + BUILD state
//! `(version, shape, dtype, is_fortran, data)` or, with protocol 5, `_frombuffer(buf, dtype, shape, order)`.

use std::rc::Rc;

use super::vm::{Items, Object, Value};

/// A column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    Float(Vec<f64>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
    /// Object or string columns; `None` for None/NaN.
    Text(Vec<Option<String>>),
}

impl ColumnData {
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Float(v) => v.len(),
            ColumnData::Int(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
            ColumnData::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A DataFrame's columns in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub columns: Vec<(String, ColumnData)>,
}

/// Globals a DataFrame pickle may name, by name, with the modules each has lived in.
const ALLOWED: &[(&str, &[&str])] = &[
    ("DataFrame", &["pandas", "pandas.core.frame"]),
    ("BlockManager", &["pandas.core.internals.managers", "pandas.core.internals"]),
    ("_unpickle_block", &["pandas._libs.internals"]),
    ("_new_Index", &["pandas.core.indexes.base"]),
    ("Index", &["pandas", "pandas.core.indexes.base"]),
    ("RangeIndex", &["pandas", "pandas.core.indexes.range"]),
    ("_reconstruct", &["numpy.core.multiarray", "numpy._core.multiarray"]),
    ("_frombuffer", &["numpy.core.numeric", "numpy._core.numeric"]),
    ("ndarray", &["numpy"]),
    ("dtype", &["numpy"]),
    ("encode", &["_codecs"]),
    ("slice", &["builtins", "__builtin__"]),
    ("__pyx_unpickle_NDArrayBacked", &["pandas._libs.arrays"]),
    ("StringArray", &["pandas.arrays", "pandas.core.arrays.string_"]),
    ("StringDtype", &["pandas", "pandas.core.arrays.string_"]),
];

fn check_global(value: &Value) -> Result<&str, String> {
    let (module, name) =
        value.global_name().ok_or_else(|| format!("expected a class or function, found a {}", value.type_name()))?;
    let allowed = ALLOWED.iter().any(|(n, modules)| *n == name && modules.contains(&module));
    if allowed {
        Ok(name)
    } else if module.starts_with("pyarrow") || name.starts_with("Arrow") {
        // pandas 3 with pyarrow installed stores strings this way by default.
        Err(format!(
            "the frame stores columns with pyarrow (`{module}.{name}`), which routerdc does not read; re-save it \
             after `pd.set_option(\"mode.string_storage\", \"python\")`, or as CSV"
        ))
    } else {
        Err(format!("the pickle names `{module}.{name}`, which a pandas DataFrame does not need; refusing it"))
    }
}

/// The object's callable name (checked against the allow-list), args and state.
fn call(value: &Value) -> Result<(String, Value, Option<Value>), String> {
    let Value::Object(object) = value else { return Err(format!("expected an object, found a {}", value.type_name())) };
    let object: std::cell::Ref<'_, Object> = object.borrow();
    if matches!(object.callable.global_name(), Some(("copy_reg" | "copyreg", "_reconstructor"))) {
        // Protocols 0 and 1 spell `cls.__new__(cls)` as `copy_reg._reconstructor(cls, object, None)`.
        let args = tuple(&object.args)?;
        let [class, base, Value::None] = &args[..] else {
            return Err("copy_reg._reconstructor with arguments other than (class, object, None)".into());
        };
        if !matches!(base.global_name(), Some(("__builtin__" | "builtins", "object"))) {
            return Err("copy_reg._reconstructor of a class built on something other than `object`".into());
        }
        let name = check_global(class)?.to_owned();
        return Ok((name, Value::Tuple(Items::from(Vec::new())), object.state.clone()));
    }
    let name = check_global(&object.callable)?.to_owned();
    Ok((name, object.args.clone(), object.state.clone()))
}

fn tuple(value: &Value) -> Result<Items, String> {
    match value {
        Value::Tuple(items) => Ok(items.clone()),
        Value::List(items) => Ok(Items::from(items.borrow().clone())),
        other => Err(format!("expected a tuple, found a {}", other.type_name())),
    }
}

fn dict_get(value: &Value, key: &str) -> Option<Value> {
    let Value::Dict(entries) = value else { return None };
    entries.borrow().iter().find(|(k, _)| matches!(k, Value::Str(s) if &**s == key)).map(|(_, v)| v.clone())
}

fn int(value: &Value) -> Result<i64, String> {
    match value {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(i64::from(*b)),
        other => Err(format!("expected an int, found a {}", other.type_name())),
    }
}

/// Limits on what a hostile pickle can make us allocate beyond its own size.
#[derive(Debug)]
pub struct Budget {
    remaining: usize,
}

impl Budget {
    /// Text cells may expand to `factor` × the input (cells can share one string), plus 64 MiB.
    pub fn for_input(len: usize, factor: usize) -> Budget {
        Budget { remaining: len.saturating_mul(factor).saturating_add(64 << 20) }
    }

    fn spend(&mut self, bytes: usize) -> Result<(), String> {
        self.remaining = self
            .remaining
            .checked_sub(bytes)
            .ok_or("the pickle expands to more text than its size allows; refusing it")?;
        Ok(())
    }
}

/// The DataFrame in `root`.
pub fn read_frame(root: &Value, budget: &mut Budget) -> Result<Frame, String> {
    read_frame_columns(root, budget, &|_| true)
}

/// The DataFrame in `root`, with only the columns whose label `wanted` accepts (the others'
/// text is never materialised).
pub fn read_frame_columns(root: &Value, budget: &mut Budget, wanted: &dyn Fn(&str) -> bool) -> Result<Frame, String> {
    let (name, _, state) = call(root)?;
    if name != "DataFrame" {
        return Err(format!("the pickle holds a `{name}`, not a pandas DataFrame"));
    }
    let state = state.ok_or("the DataFrame has no state")?;
    let manager =
        dict_get(&state, "_mgr").or_else(|| dict_get(&state, "_data")).ok_or("the DataFrame state has no `_mgr`")?;
    let (name, args, _) = call(&manager)?;
    if name != "BlockManager" {
        return Err(format!("the DataFrame's manager is a `{name}`, not a BlockManager"));
    }
    let args = tuple(&args)?;
    let [blocks, axes] = &args[..] else { return Err("BlockManager takes (blocks, axes)".into()) };
    let axes = tuple(axes)?;
    let labels = index_labels(axes.first().ok_or("BlockManager has no axes")?, budget)?;
    let mut columns: Vec<Option<ColumnData>> = vec![None; labels.len()];
    for block in tuple(blocks)?.iter() {
        let (name, args, _) = call(block)?;
        if name != "_unpickle_block" {
            return Err(format!("a block is a `{name}`, not `_unpickle_block`"));
        }
        let args = tuple(&args)?;
        let (values, placement) =
            (args.first().ok_or("a block without values")?, args.get(1).ok_or("a block without placement")?);
        let positions = placement_positions(placement)?;
        let keep: Vec<bool> = positions.iter().map(|&p| labels.get(p).is_some_and(|label| wanted(label))).collect();
        let rows = block_columns(values, &keep, budget)?;
        for (position, column) in positions.into_iter().zip(rows) {
            let slot = columns
                .get_mut(position)
                .ok_or_else(|| format!("a block places a column at {position}, beyond the {} labels", labels.len()))?;
            *slot = Some(column);
        }
    }
    let mut frame = Vec::with_capacity(labels.len());
    for (label, column) in labels.into_iter().zip(columns) {
        let column = column.ok_or_else(|| format!("column `{label}` has no block"))?;
        if wanted(&label) {
            frame.push((label, column));
        }
    }
    if let Some((first, rest)) = frame.split_first()
        && let Some((label, column)) = rest.iter().find(|(_, c)| c.len() != first.1.len())
    {
        return Err(format!("column `{label}` has {} rows but `{}` has {}", column.len(), first.0, first.1.len()));
    }
    Ok(Frame { columns: frame })
}

/// Column labels from `_new_Index(cls, {'data': array, ...})`.
fn index_labels(index: &Value, budget: &mut Budget) -> Result<Vec<String>, String> {
    let (name, args, _) = call(index)?;
    if name != "_new_Index" {
        return Err(format!("the column index is a `{name}`"));
    }
    let args = tuple(&args)?;
    let class = args.first().ok_or("_new_Index without a class")?;
    let class_name = check_global(class)?;
    let spec = args.get(1).ok_or("_new_Index without its data")?;
    if class_name == "RangeIndex" {
        let get = |key| {
            dict_get(spec, key)
                .map_or(Ok(None), |v| if matches!(v, Value::None) { Ok(None) } else { int(&v).map(Some) })
        };
        let (start, stop, step) =
            (get("start")?.unwrap_or(0), get("stop")?.ok_or("RangeIndex without stop")?, get("step")?.unwrap_or(1));
        // The length in i128, so that no start, stop or step can overflow it.
        let (start, stop, step) = (i128::from(start), i128::from(stop), i128::from(step));
        let length = if step > 0 && stop > start {
            (stop - start + step - 1) / step
        } else if step < 0 && stop < start {
            (start - stop - step - 1) / -step
        } else {
            0
        };
        if step == 0 || length > 1 << 24 {
            return Err("the column RangeIndex is implausible".into());
        }
        return Ok((0..length).map(|i| (start + i * step).to_string()).collect());
    }
    let data = dict_get(spec, "data").ok_or("the column index has no data")?;
    let array = array(&data, budget)?;
    Ok(match array {
        ColumnData::Text(labels) => labels.into_iter().map(Option::unwrap_or_default).collect(),
        ColumnData::Int(labels) => labels.iter().map(i64::to_string).collect(),
        ColumnData::Float(labels) => labels.iter().map(f64::to_string).collect(),
        ColumnData::Bool(labels) => labels.iter().map(bool::to_string).collect(),
    })
}

/// A block's column positions: `slice(start, stop, step)` or an int64 array.
fn placement_positions(placement: &Value) -> Result<Vec<usize>, String> {
    let (name, args, _) = call(placement)?;
    if name == "slice" {
        let args = tuple(&args)?;
        let get = |i: usize| {
            args.get(i).map_or(Ok(None), |v| if matches!(v, Value::None) { Ok(None) } else { int(v).map(Some) })
        };
        let (start, stop, step) = (get(0)?.unwrap_or(0), get(1)?.ok_or("a slice without stop")?, get(2)?.unwrap_or(1));
        if step <= 0 || start < 0 || stop < start || stop.checked_sub(start).is_none_or(|n| n > 1 << 24) {
            return Err("a block placement slice is implausible".into());
        }
        return Ok((start..stop).step_by(step as usize).map(|p| p as usize).collect());
    }
    match array(placement, &mut Budget::for_input(0, 0))? {
        ColumnData::Int(positions) => positions
            .into_iter()
            .map(|p| usize::try_from(p).map_err(|_| "a negative block placement".to_owned()))
            .collect(),
        _ => Err("a block placement is not integers".into()),
    }
}

/// The columns of a block: a 2-D array `(k, rows)`, or a 1-D extension array (one column).
fn block_columns(values: &Value, keep: &[bool], budget: &mut Budget) -> Result<Vec<ColumnData>, String> {
    let k = keep.len();
    let values = unwrap_backed(values)?;
    let (shape, data, fortran) = ndarray_parts(&values)?;
    // Text of columns nobody wants is skipped (object arrays only: numbers are cheap).
    let n = shape.last().copied().unwrap_or(0);
    let skip = |flat: usize| {
        let row = if fortran { flat % k.max(1) } else { flat / n.max(1) };
        shape.len() == 2 && !keep.get(row).copied().unwrap_or(true)
    };
    let column = decode_skipping(&data, budget, &skip)?;
    match shape[..] {
        [n] if k == 1 => Ok(vec![column.with_len(n)?]),
        [rows_in_block, n] if rows_in_block == k => split_rows(column, k, n, fortran),
        _ => Err(format!("a block of {k} columns has shape {shape:?}")),
    }
}

/// (shape, raw data, is_fortran) of a numpy array object.
fn ndarray_parts(value: &Value) -> Result<(Vec<usize>, RawArray, bool), String> {
    let (name, args, state) = call(value)?;
    match name.as_str() {
        "_reconstruct" => {
            let state = tuple(&state.ok_or("a numpy array without state")?)?;
            let [_, shape, dtype, fortran, data] = &state[..] else {
                return Err("numpy array state is not (version, shape, dtype, fortran, data)".into());
            };
            let shape = shape_of(shape)?;
            let fortran = matches!(fortran, Value::Bool(true) | Value::Int(1));
            Ok((shape, RawArray { dtype: dtype_of(dtype)?, data: data.clone() }, fortran))
        }
        "_frombuffer" => {
            let args = tuple(&args)?;
            let [buffer, dtype, shape, order] = &args[..] else {
                return Err("_frombuffer takes (buffer, dtype, shape, order)".into());
            };
            let fortran = matches!(order, Value::Str(s) if &**s == "F");
            Ok((shape_of(shape)?, RawArray { dtype: dtype_of(dtype)?, data: buffer.clone() }, fortran))
        }
        other => Err(format!("expected a numpy array, found `{other}`")),
    }
}

/// The numpy array inside a pandas extension array (pandas 3's `StringArray`, pickled as
/// `__pyx_unpickle_NDArrayBacked(cls, checksum, None)` with BUILD state `(dtype, ndarray, ...)`),
/// or the value itself.
fn unwrap_backed(value: &Value) -> Result<Value, String> {
    let (name, _, state) = call(value)?;
    if name != "__pyx_unpickle_NDArrayBacked" {
        return Ok(value.clone());
    }
    let state = tuple(&state.ok_or("a pandas extension array without state")?)?;
    state.get(1).cloned().ok_or_else(|| "a pandas extension array without its values".to_owned())
}

/// A 1-D array's values.
fn array(value: &Value, budget: &mut Budget) -> Result<ColumnData, String> {
    let (shape, data, _) = ndarray_parts(&unwrap_backed(value)?)?;
    let column = decode(&data, budget)?;
    match shape[..] {
        [n] => column.with_len(n),
        _ => Err(format!("expected a 1-D array, found shape {shape:?}")),
    }
}

fn shape_of(value: &Value) -> Result<Vec<usize>, String> {
    tuple(value)?
        .iter()
        .map(|v| int(v).and_then(|n| usize::try_from(n).map_err(|_| "a negative array dimension".to_owned())))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Dtype {
    kind: char,
    size: usize,
    big_endian: bool,
}

/// numpy `dtype(code, align, copy)` with BUILD state `(3, byteorder, ...)`.
fn dtype_of(value: &Value) -> Result<Dtype, String> {
    let (name, args, state) = call(value)?;
    if name != "dtype" {
        return Err(format!("expected a numpy dtype, found `{name}`"));
    }
    let args = tuple(&args)?;
    let Some(Value::Str(code)) = args.first() else { return Err("a dtype without its type code".into()) };
    let mut chars = code.chars();
    let kind = chars.next().ok_or("an empty dtype code")?;
    let size: usize = chars.as_str().parse().unwrap_or(8);
    let big_endian = state
        .as_ref()
        .and_then(|s| tuple(s).ok())
        .and_then(|s| s.get(1).cloned())
        .is_some_and(|order| matches!(order, Value::Str(o) if &*o == ">"));
    Ok(Dtype { kind, size, big_endian })
}

struct RawArray {
    dtype: Dtype,
    data: Value,
}

/// The flat values of an array's data.
fn decode(raw: &RawArray, budget: &mut Budget) -> Result<ColumnData, String> {
    decode_skipping(raw, budget, &|_| false)
}

/// [`decode`], leaving object items at the flat positions `skip` accepts as missing text.
fn decode_skipping(raw: &RawArray, budget: &mut Budget, skip: &dyn Fn(usize) -> bool) -> Result<ColumnData, String> {
    let Dtype { kind, size, big_endian } = raw.dtype;
    if kind == 'O' {
        let Value::List(items) = &raw.data else { return Err("an object array whose data is not a list".into()) };
        let items = items.borrow();
        let mut texts = Vec::with_capacity(items.len());
        for (flat, item) in items.iter().enumerate() {
            texts.push(if skip(flat) { None } else { object_text(item, budget)? });
        }
        return Ok(ColumnData::Text(texts));
    }
    let bytes: Rc<[u8]> = match &raw.data {
        Value::Bytes(bytes) => bytes.clone(),
        // Protocol 2 stores raw bytes as `_codecs.encode(str, 'latin1')`.
        Value::Object(_) => {
            let (name, args, _) = call(&raw.data)?;
            let args = tuple(&args)?;
            match (name.as_str(), args.first()) {
                ("encode", Some(Value::Str(text))) => {
                    let bytes: Option<Vec<u8>> = text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
                    Rc::from(bytes.ok_or("array data is not latin-1")?)
                }
                _ => return Err("array data is neither bytes nor `_codecs.encode`".into()),
            }
        }
        other => return Err(format!("array data is a {}", other.type_name())),
    };
    if size == 0 || !bytes.len().is_multiple_of(size) {
        return Err(format!("array data of {} bytes is not a whole number of {size}-byte items", bytes.len()));
    }
    let items = bytes.chunks_exact(size);
    let word = |chunk: &[u8]| -> [u8; 8] {
        let mut buffer = [0u8; 8];
        if big_endian {
            buffer[8 - size..].copy_from_slice(chunk);
            buffer.reverse();
        } else {
            buffer[..size].copy_from_slice(chunk);
        }
        buffer
    };
    Ok(match (kind, size) {
        ('f', 8) => ColumnData::Float(items.map(|c| f64::from_le_bytes(word(c))).collect()),
        ('f', 4) => ColumnData::Float(
            items.map(|c| f64::from(f32::from_le_bytes(word(c)[..4].try_into().expect("4 bytes")))).collect(),
        ),
        ('i', 1 | 2 | 4 | 8) => ColumnData::Int(
            items
                .map(|c| {
                    let shift = 64 - 8 * size as u32;
                    (i64::from_le_bytes(word(c)) << shift) >> shift
                })
                .collect(),
        ),
        ('u', 1 | 2 | 4) => ColumnData::Int(items.map(|c| i64::from_le_bytes(word(c))).collect()),
        ('b', 1) => ColumnData::Bool(items.map(|c| c[0] != 0).collect()),
        _ => {
            return Err(format!(
                "numpy dtype `{kind}{size}` is not supported (float, int, bool and object columns are)"
            ));
        }
    })
}

/// An object-array cell as text: strings as they are, None/NaN as missing, numbers printed.
fn object_text(item: &Value, budget: &mut Budget) -> Result<Option<String>, String> {
    let text = match item {
        Value::None => return Ok(None),
        Value::Float(f) if f.is_nan() => return Ok(None),
        Value::Str(text) => text.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        other => return Err(format!("an object column holds a {}, not text or a number", other.type_name())),
    };
    budget.spend(text.len())?;
    Ok(Some(text))
}

impl ColumnData {
    fn with_len(self, n: usize) -> Result<ColumnData, String> {
        if self.len() == n { Ok(self) } else { Err(format!("an array of shape ({n},) holds {} values", self.len())) }
    }
}

/// Split a `(k, n)` array's flat values into k columns of n.
fn split_rows(flat: ColumnData, k: usize, n: usize, fortran: bool) -> Result<Vec<ColumnData>, String> {
    if k.checked_mul(n) != Some(flat.len()) {
        return Err(format!("an array of shape ({k}, {n}) holds {} values", flat.len()));
    }
    fn split<T: Clone>(values: Vec<T>, k: usize, n: usize, fortran: bool) -> Vec<Vec<T>> {
        if fortran {
            (0..k).map(|j| (0..n).map(|i| values[i * k + j].clone()).collect()).collect()
        } else {
            values.chunks(n.max(1)).take(k).map(<[T]>::to_vec).chain(std::iter::repeat_with(Vec::new)).take(k).collect()
        }
    }
    Ok(match flat {
        ColumnData::Float(v) => split(v, k, n, fortran).into_iter().map(ColumnData::Float).collect(),
        ColumnData::Int(v) => split(v, k, n, fortran).into_iter().map(ColumnData::Int).collect(),
        ColumnData::Bool(v) => split(v, k, n, fortran).into_iter().map(ColumnData::Bool).collect(),
        ColumnData::Text(v) => split(v, k, n, fortran).into_iter().map(ColumnData::Text).collect(),
    })
}
