//! A pickle machine that parses and never executes.
//!
//! Python's `pickle.load` imports and calls whatever globals a file names; this machine only
//! records them. `GLOBAL`/`STACK_GLOBAL` push a [`Value::Global`], `REDUCE`/`NEWOBJ` build a
//! [`Value::Object`] holding the callable and its arguments, `BUILD` attaches state to it. What
//! the objects mean (a pandas DataFrame, a numpy array) is decided afterwards by code that knows
//! exactly which globals it accepts (`super::pandas`).
//!
//! Every allocation is bounded by the input: strings and bytes are slices of it, containers grow
//! one element per opcode, memo entries are shared, not copied. Protocols 0 to 5 are read;
//! out-of-band buffers (`NEXT_BUFFER`), text persistent ids and extension codes are refused;
//! binary persistent ids (PyTorch's storages) become calls of the pseudo-global `__persistent__.id`.

use std::cell::RefCell;
use std::rc::Rc;

pub use super::teardown::Items;
use super::teardown::{empty_into, teardown};

/// Shared, mutable containers: the memo aliases objects that later opcodes mutate.
pub type Shared<T> = Rc<RefCell<T>>;

/// A value built by the machine.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64, as little-endian two's-complement bytes.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Items),
    List(Shared<Vec<Value>>),
    Dict(Shared<Vec<(Value, Value)>>),
    Set(Shared<Vec<Value>>),
    /// A reference to `module.name`, never resolved.
    Global(Rc<(String, String)>),
    /// `callable(*args)` as the file asked for it, with the state `BUILD` gave it.
    Object(Shared<Object>),
}

/// The record of a call the file asked for.
#[derive(Debug)]
pub struct Object {
    pub callable: Value,
    pub args: Value,
    pub state: Option<Value>,
    /// Items appended (`APPEND(S)`) or set (`SETITEM(S)`) on the object itself.
    pub items: Vec<Value>,
    pub entries: Vec<(Value, Value)>,
}

impl Value {
    /// `(module, name)` of a global, or of an object's callable.
    pub fn global_name(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global(global) => Some((global.0.as_str(), global.1.as_str())),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global(_) => "global",
            Value::Object(_) => "object",
        }
    }
}

/// Why a pickle could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {message}")]
pub struct PickleError {
    pub offset: usize,
    pub message: String,
}

/// What the stack holds: values, and the marks that `MARK` leaves.
#[derive(Debug, Clone)]
enum Slot {
    Mark,
    Value(Value),
}

/// A parsed pickle. A hostile file can make containers refer to themselves (a list appended to
/// itself through the memo), which `Rc` alone would never free; every container the machine
/// made is therefore registered here and emptied on drop, which breaks any cycle.
#[derive(Debug)]
pub struct Pickle {
    pub root: Value,
    _containers: Containers,
}

#[derive(Debug, Default)]
struct Containers(Vec<Value>);

impl Drop for Containers {
    fn drop(&mut self) {
        let mut work = Vec::new();
        for container in self.0.drain(..) {
            empty_into(&container, &mut work);
        }
        teardown(work);
    }
}

impl Drop for Pickle {
    fn drop(&mut self) {
        teardown(vec![std::mem::replace(&mut self.root, Value::None)]);
    }
}

/// Parse one pickle from `data`.
pub fn parse(data: &[u8]) -> Result<Pickle, PickleError> {
    let mut machine =
        Machine { data, pos: 0, stack: Vec::new(), memo: Vec::new(), memo_len: 0, containers: Containers::default() };
    let root = machine.run()?;
    Ok(Pickle { root, _containers: std::mem::take(&mut machine.containers) })
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        let mut work: Vec<Value> = self.memo.drain(..).flatten().collect();
        work.extend(self.stack.drain(..).filter_map(|slot| match slot {
            Slot::Value(value) => Some(value),
            Slot::Mark => None,
        }));
        teardown(work);
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    /// Indexed by memo key. Picklers number entries 0, 1, 2, ... as they go, so a key can be no
    /// larger than the opcodes read so far; larger keys are refused, which bounds this vector.
    memo: Vec<Option<Value>>,
    /// How many memo keys hold a value (`len(memo)` in Python), the key MEMOIZE uses next.
    memo_len: usize,
    /// Every container made, to break reference cycles when the parse is dropped.
    containers: Containers,
}

impl<'a> Machine<'a> {
    fn error(&self, message: impl Into<String>) -> PickleError {
        PickleError { offset: self.pos, message: message.into() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end =
            self.pos.checked_add(n).filter(|&end| end <= self.data.len()).ok_or_else(|| {
                self.error(format!("the pickle is truncated (an item of {n} bytes runs past its end)"))
            })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, PickleError> {
        Ok(usize::from(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes"))))
    }

    fn u32(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }

    fn u64(&mut self) -> Result<usize, PickleError> {
        let n = u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
        usize::try_from(n).map_err(|_| self.error("a length does not fit in memory"))
    }

    /// A text line of protocol 0, without its `\n`.
    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.error("the pickle is truncated (a line has no end)"))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn utf8(&self, bytes: &[u8]) -> Result<Rc<str>, PickleError> {
        std::str::from_utf8(bytes).map(Rc::from).map_err(|_| self.error("a string is not valid UTF-8"))
    }

    fn push(&mut self, value: Value) {
        if matches!(value, Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::Object(_)) {
            // A container is pushed once, when it is made; copies come from DUP or the memo.
            self.containers.0.push(value.clone());
        }
        self.stack.push(Slot::Value(value));
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Slot::Value(value)) => Ok(value),
            Some(Slot::Mark) => Err(self.error("a value was expected but the stack holds a mark")),
            None => Err(self.error("the stack is empty")),
        }
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let pos = self.pos;
        match self.stack.last_mut() {
            Some(Slot::Value(value)) => Ok(value),
            _ => Err(PickleError { offset: pos, message: "a value was expected on the stack".into() }),
        }
    }

    /// Everything above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .stack
            .iter()
            .rposition(|slot| matches!(slot, Slot::Mark))
            .ok_or_else(|| self.error("no mark on the stack"))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|slot| match slot {
                Slot::Value(value) => value,
                Slot::Mark => unreachable!("the topmost mark is at `mark`"),
            })
            .collect())
    }

    fn memo_get(&self, index: u64) -> Result<Value, PickleError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.memo.get(i))
            .and_then(Option::clone)
            .ok_or_else(|| self.error(format!("memo entry {index} was never stored")))
    }

    fn memo_put(&mut self, index: u64) -> Result<(), PickleError> {
        let value = match self.stack.last() {
            Some(Slot::Value(value)) => value.clone(),
            _ => return Err(self.error("nothing to memoize")),
        };
        let index = usize::try_from(index)
            .ok()
            .filter(|&i| i <= self.pos)
            .ok_or_else(|| self.error(format!("memo key {index} is larger than any pickler writes at this point")))?;
        if self.memo.len() <= index {
            self.memo.resize(index + 1, None);
        }
        if self.memo[index].replace(value).is_none() {
            self.memo_len += 1;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let op = self.byte().map_err(|_| self.error("the pickle ends without STOP"))?;
            match op {
                b'.' => return self.pop(), // STOP
                0x80 => {
                    // PROTO
                    let version = self.byte()?;
                    if version > 5 {
                        return Err(self.error(format!("pickle protocol {version} is newer than 5")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint; the data follows inline.
                    self.take(8)?;
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack.pop().ok_or_else(|| self.error("POP on an empty stack"))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.stack.push(Slot::Value(top));
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'I' => {
                    let line = self.line()?;
                    let value = match line {
                        b"01" => Value::Bool(true),
                        b"00" => Value::Bool(false),
                        _ => Value::Int(self.ascii_int(line)?),
                    };
                    self.push(value);
                }
                b'L' => {
                    let line = self.line()?;
                    let line = line.strip_suffix(b"L").unwrap_or(line);
                    let value = self.ascii_int(line)?;
                    self.push(Value::Int(value));
                }
                b'J' => {
                    let value = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
                    self.push(Value::Int(i64::from(value)));
                }
                b'K' => {
                    let value = self.byte()?;
                    self.push(Value::Int(i64::from(value)));
                }
                b'M' => {
                    let value = self.u16()?;
                    self.push(Value::Int(value as i64));
                }
                0x8a | 0x8b => {
                    // LONG1, LONG4: little-endian two's complement.
                    let n = if op == 0x8a { usize::from(self.byte()?) } else { self.u32()? };
                    let bytes = self.take(n)?;
                    self.push(long_value(bytes));
                }
                b'F' => {
                    let line = self.line()?;
                    let text = std::str::from_utf8(line).map_err(|_| self.error("FLOAT is not ASCII"))?;
                    let value = text
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| self.error(format!("FLOAT `{text}` is not a number")))?;
                    self.push(Value::Float(value));
                }
                b'G' => {
                    let value = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.push(Value::Float(value));
                }
                b'S' => {
                    // STRING: a Python 2 str literal with quotes; kept as latin-1 text.
                    let line = self.line()?;
                    let inner = line
                        .strip_prefix(b"'")
                        .and_then(|l| l.strip_suffix(b"'"))
                        .or_else(|| line.strip_prefix(b"\"").and_then(|l| l.strip_suffix(b"\"")))
                        .ok_or_else(|| self.error("STRING is not quoted"))?;
                    let text: String = unescape_ascii(inner).iter().map(|&b| char::from(b)).collect();
                    self.push(Value::Str(Rc::from(text)));
                }
                b'T' | b'U' => {
                    // BINSTRING, SHORT_BINSTRING: Python 2 str, latin-1.
                    let n = if op == b'T' { self.u32()? } else { usize::from(self.byte()?) };
                    let bytes = self.take(n)?;
                    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
                    self.push(Value::Str(Rc::from(text)));
                }
                b'V' => {
                    // UNICODE: raw-unicode-escape text.
                    let line = self.line()?;
                    let text = raw_unicode_unescape(line).ok_or_else(|| self.error("UNICODE has a bad escape"))?;
                    self.push(Value::Str(Rc::from(text)));
                }
                b'X' | 0x8c | 0x8d => {
                    // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                    let n = match op {
                        b'X' => self.u32()?,
                        0x8c => usize::from(self.byte()?),
                        _ => self.u64()?,
                    };
                    let bytes = self.take(n)?;
                    let text = self.utf8(bytes)?;
                    self.push(Value::Str(text));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8 (in-band protocol 5 buffers)
                    let n = match op {
                        b'B' => self.u32()?,
                        b'C' => usize::from(self.byte()?),
                        _ => self.u64()?,
                    };
                    let bytes = self.take(n)?;
                    self.push(Value::Bytes(Rc::from(bytes)));
                }
                0x97 => {
                    return Err(self.error(
                        "NEXT_BUFFER: out-of-band buffers are not supported; re-save without `buffer_callback`",
                    ));
                }
                0x98 => {} // READONLY_BUFFER
                b']' => self.push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'}' => self.push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
                b'd' => {
                    let items = self.pop_mark()?;
                    let entries = pairs(items).ok_or_else(|| self.error("DICT has an odd number of items"))?;
                    self.push(Value::Dict(Rc::new(RefCell::new(entries))));
                }
                0x8f => self.push(Value::Set(Rc::new(RefCell::new(Vec::new())))),
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::Set(Rc::new(RefCell::new(items))));
                }
                b')' => self.push(Value::Tuple(Items::from(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Items::from(items)));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(self.error("TUPLE with too few items on the stack"));
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(Items::from(items)));
                }
                b'a' => {
                    let item = self.pop()?;
                    self.append(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                0x90 => {
                    // ADDITEMS
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::Set(set) => set.borrow_mut().extend(items),
                        other => {
                            let kind = other.type_name();
                            return Err(self.error(format!("ADDITEMS on a {kind}")));
                        }
                    }
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(vec![(key, value)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let entries = pairs(items).ok_or_else(|| self.error("SETITEMS has an odd number of items"))?;
                    self.set_items(entries)?;
                }
                b'g' | b'h' | b'j' => {
                    let index = match op {
                        b'g' => {
                            let line = self.line()?;
                            self.ascii_int(line)? as u64
                        }
                        b'h' => u64::from(self.byte()?),
                        _ => self.u32()? as u64,
                    };
                    let value = self.memo_get(index)?;
                    self.stack.push(Slot::Value(value));
                }
                b'p' | b'q' | b'r' => {
                    let index = match op {
                        b'p' => {
                            let line = self.line()?;
                            self.ascii_int(line)? as u64
                        }
                        b'q' => u64::from(self.byte()?),
                        _ => self.u32()? as u64,
                    };
                    self.memo_put(index)?;
                }
                0x94 => {
                    // MEMOIZE: the next key is the number of entries stored so far.
                    let index = self.memo_len as u64;
                    self.memo_put(index)?;
                }
                b'c' => {
                    let module = String::from_utf8_lossy(self.line()?).into_owned();
                    let name = String::from_utf8_lossy(self.line()?).into_owned();
                    self.push(Value::Global(Rc::new((module, name))));
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            self.push(Value::Global(Rc::new((module.to_string(), name.to_string()))));
                        }
                        _ => return Err(self.error("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push(object(callable, args));
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args)
                    let args = self.pop()?;
                    let class = self.pop()?;
                    self.push(object(class, args));
                }
                0x92 => {
                    // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    self.push(object(class, args));
                }
                b'i' => {
                    // INST: module and name on lines, args above a mark.
                    let module = String::from_utf8_lossy(self.line()?).into_owned();
                    let name = String::from_utf8_lossy(self.line()?).into_owned();
                    let args = self.pop_mark()?;
                    self.push(object(Value::Global(Rc::new((module, name))), Value::Tuple(Items::from(args))));
                }
                b'o' => {
                    // OBJ: class and args above a mark.
                    let mut items = self.pop_mark()?.into_iter();
                    let class = items.next().ok_or_else(|| self.error("OBJ without a class"))?;
                    let args: Vec<Value> = items.collect();
                    self.push(object(class, Value::Tuple(Items::from(args))));
                }
                b'b' => {
                    let state = self.pop()?;
                    match self.top()? {
                        Value::Object(object) => object.borrow_mut().state = Some(state),
                        other => {
                            let kind = other.type_name();
                            return Err(self.error(format!("BUILD on a {kind}")));
                        }
                    }
                }
                b'Q' => {
                    // BINPERSID: recorded as a call of the pseudo-global `__persistent__.id`,
                    // which only a reader that expects persistent ids (PyTorch checkpoints) accepts.
                    let id = self.pop()?;
                    let marker = Value::Global(Rc::new(("__persistent__".to_owned(), "id".to_owned())));
                    let value = object(marker, id);
                    self.push(value);
                }
                b'P' => return Err(self.error("text persistent ids are not supported")),
                0x82..=0x84 => return Err(self.error("extension codes (copyreg) are not supported")),
                other => return Err(self.error(format!("unknown opcode 0x{other:02x}"))),
            }
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        match self.top()? {
            Value::List(list) => list.borrow_mut().extend(items),
            Value::Object(object) => object.borrow_mut().items.extend(items),
            other => {
                let kind = other.type_name();
                return Err(self.error(format!("APPEND on a {kind}")));
            }
        }
        Ok(())
    }

    fn set_items(&mut self, entries: Vec<(Value, Value)>) -> Result<(), PickleError> {
        match self.top()? {
            Value::Dict(dict) => dict.borrow_mut().extend(entries),
            Value::Object(object) => object.borrow_mut().entries.extend(entries),
            other => {
                let kind = other.type_name();
                return Err(self.error(format!("SETITEM on a {kind}")));
            }
        }
        Ok(())
    }

    fn ascii_int(&self, line: &[u8]) -> Result<i64, PickleError> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| self.error(format!("`{}` is not an integer", String::from_utf8_lossy(line))))
    }
}

fn object(callable: Value, args: Value) -> Value {
    Value::Object(Rc::new(RefCell::new(Object { callable, args, state: None, items: Vec::new(), entries: Vec::new() })))
}

fn pairs(items: Vec<Value>) -> Option<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    let mut entries = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        entries.push((key, value));
    }
    Some(entries)
}

/// LONG1/LONG4 payload: little-endian two's complement of any length.
fn long_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buffer = if negative { [0xff; 8] } else { [0; 8] };
        buffer[..bytes.len()].copy_from_slice(bytes);
        return Value::Int(i64::from_le_bytes(buffer));
    }
    Value::BigInt(Rc::from(bytes))
}

/// Python 2 string-literal escapes (`\\n`, `\\xNN`, `\\'`) in a protocol-0 STRING.
fn unescape_ascii(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            let (byte, used) = match bytes[i + 1] {
                b'n' => (b'\n', 2),
                b'r' => (b'\r', 2),
                b't' => (b'\t', 2),
                b'\\' => (b'\\', 2),
                b'\'' => (b'\'', 2),
                b'"' => (b'"', 2),
                b'x' if i + 3 < bytes.len() => {
                    match std::str::from_utf8(&bytes[i + 2..i + 4]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(byte) => (byte, 4),
                        None => (b'\\', 1),
                    }
                }
                _ => (b'\\', 1),
            };
            out.push(byte);
            i += used;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// `raw-unicode-escape`: latin-1 bytes with `\\uXXXX` and `\\UXXXXXXXX` escapes.
fn raw_unicode_unescape(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() && (bytes[i + 1] == b'u' || bytes[i + 1] == b'U') {
            let width = if bytes[i + 1] == b'u' { 4 } else { 8 };
            let hex = std::str::from_utf8(bytes.get(i + 2..i + 2 + width)?).ok()?;
            out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
            i += 2 + width;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
#[path = "vm_tests.rs"]
mod tests;
