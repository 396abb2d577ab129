//! A bounded reader for the pickles `torch.save` writes (protocols 2 to 5).
//!
//! The pickle is parsed, never executed: the only globals accepted are the ones a state
//! dict needs (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter` and the typed storage classes), and the result is a
//! tree of plain values. Every resource is bounded before it is used: the nesting depth,
//! the memo, the number of values built, and the work spent copying shared containers, so
//! a hostile pickle is refused with an error instead of overflowing the stack or the memory.

use std::collections::HashMap;
use std::rc::Rc;

use burn::tensor::DType;

/// Limits on what a pickle may build.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Deepest nesting of containers.
    pub max_depth: usize,
    /// Most memo entries.
    pub max_memo: usize,
    /// Most values built (and container slots copied) in total.
    pub max_work: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_memo: 1 << 20,
            max_work: 1 << 24,
        }
    }
}

/// Why a pickle was refused. `offset` is the byte position of the opcode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PickleError {
    /// The bytes are not a pickle this reader understands.
    #[error("pickle byte {offset}: {message}")]
    Malformed { offset: usize, message: String },
    /// The pickle asks for something other than tensors and plain containers.
    #[error("pickle byte {offset}: refuses {what} (only tensors and plain containers are read)")]
    Forbidden { offset: usize, what: String },
    /// A resource bound was reached.
    #[error("pickle byte {offset}: {what} exceeds the limit of {limit}")]
    Limit {
        offset: usize,
        what: &'static str,
        limit: usize,
    },
}

/// The globals a state dict needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    /// `torch.<T>Storage` of this element type.
    Storage(DType),
}

/// A tensor as the pickle declares it (nothing is checked against the archive here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorRef {
    pub dtype: DType,
    /// Name of the storage record under the archive's `data/` folder.
    pub key: String,
    /// Number of elements of the storage.
    pub storage_numel: i64,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// A pickled value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(usize),
    Tuple(Vec<Node>),
    List(Vec<Node>),
    Dict(Vec<(Node, Node)>),
    Global(Global),
    /// A storage persistent id `('storage', class, key, location, numel)`.
    Storage {
        dtype: DType,
        key: Rc<str>,
        numel: i64,
    },
    Tensor(Rc<TensorRef>),
}

/// A value with the depth of the containers under it, shared between the stack and the memo.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node(Rc<(usize, Value)>);

impl Node {
    fn new(depth: usize, value: Value) -> Self {
        Self(Rc::new((depth, value)))
    }

    fn leaf(value: Value) -> Self {
        Self::new(0, value)
    }

    pub(crate) fn value(&self) -> &Value {
        &self.0.1
    }

    fn depth(&self) -> usize {
        self.0.0
    }
}

enum Slot {
    Mark,
    Node(Node),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_start: usize,
    limits: Limits,
    stack: Vec<Slot>,
    memo: HashMap<u32, Node>,
    work: usize,
}

/// Parses a pickle into its value.
pub(crate) fn parse(data: &[u8], limits: Limits) -> Result<Node, PickleError> {
    Machine {
        data,
        pos: 0,
        op_start: 0,
        limits,
        stack: Vec::new(),
        memo: HashMap::new(),
        work: 0,
    }
    .run()
}

fn storage_dtype(name: &str) -> Option<DType> {
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
        _ => return None,
    })
}

impl Machine<'_> {
    fn malformed(&self, message: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            offset: self.op_start,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| self.malformed("ends inside an opcode"))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn len(&mut self, n: u64) -> Result<usize, PickleError> {
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.data.len() - self.pos)
            .ok_or_else(|| self.malformed(format!("a length of {n} runs past the end")))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.malformed("unterminated GLOBAL"))?;
        let text = std::str::from_utf8(&rest[..end])
            .map_err(|_| self.malformed("GLOBAL name is not UTF-8"))?
            .to_string();
        self.pos += end + 1;
        Ok(text)
    }

    fn string(&mut self, n: usize) -> Result<Rc<str>, PickleError> {
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Rc::from(s)),
            Err(_) => Err(self.malformed("string is not UTF-8")),
        }
    }

    fn spend(&mut self, units: usize) -> Result<(), PickleError> {
        self.work = self.work.saturating_add(units);
        if self.work > self.limits.max_work {
            return Err(PickleError::Limit {
                offset: self.op_start,
                what: "the number of values built",
                limit: self.limits.max_work,
            });
        }
        Ok(())
    }

    fn push(&mut self, node: Node) -> Result<(), PickleError> {
        self.spend(1)?;
        self.stack.push(Slot::Node(node));
        Ok(())
    }

    fn push_value(&mut self, value: Value) -> Result<(), PickleError> {
        self.push(Node::leaf(value))
    }

    fn pop(&mut self) -> Result<Node, PickleError> {
        match self.stack.pop() {
            Some(Slot::Node(node)) => Ok(node),
            Some(Slot::Mark) => Err(self.malformed("a MARK where a value was expected")),
            None => Err(self.malformed("the stack is empty")),
        }
    }

    fn top(&mut self) -> Result<&mut Node, PickleError> {
        let error = self.malformed("the stack is empty or ends in a MARK");
        match self.stack.last_mut() {
            Some(Slot::Node(node)) => Ok(node),
            _ => Err(error),
        }
    }

    /// The values above the last MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Node>, PickleError> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| self.malformed("no MARK on the stack"))?;
        let items = self
            .stack
            .split_off(mark + 1)
            .into_iter()
            .map(|s| match s {
                Slot::Node(node) => node,
                Slot::Mark => unreachable!("the last mark is below"),
            })
            .collect();
        self.stack.pop();
        Ok(items)
    }

    fn depth_of<'n>(
        &self,
        children: impl IntoIterator<Item = &'n Node>,
    ) -> Result<usize, PickleError> {
        let depth = children
            .into_iter()
            .map(|n| n.depth() + 1)
            .max()
            .unwrap_or(1);
        if depth > self.limits.max_depth {
            return Err(PickleError::Limit {
                offset: self.op_start,
                what: "the nesting depth",
                limit: self.limits.max_depth,
            });
        }
        Ok(depth)
    }

    fn container(&mut self, items: Vec<Node>, list: bool) -> Result<Node, PickleError> {
        self.spend(items.len())?;
        let depth = self.depth_of(&items)?;
        Ok(Node::new(
            depth,
            if list {
                Value::List(items)
            } else {
                Value::Tuple(items)
            },
        ))
    }

    fn tuple(&mut self, items: Vec<Node>) -> Result<(), PickleError> {
        let node = self.container(items, false)?;
        self.push(node)
    }

    /// Adds items to the list or dict on top of the stack (copying it first when the memo
    /// shares it, which is paid for in work).
    fn extend_top(&mut self, items: Vec<Node>, dict: bool) -> Result<(), PickleError> {
        if dict && !items.len().is_multiple_of(2) {
            return Err(self.malformed("SETITEMS with an odd number of values"));
        }
        let max_depth = self.limits.max_depth;
        let offset = self.op_start;
        let depth = self.depth_of(&items)?;
        let shared_len = {
            let top = self.top()?;
            match top.value() {
                Value::List(v) if !dict => v.len(),
                Value::Dict(v) if dict => v.len(),
                _ => {
                    let what = if dict {
                        "SETITEM(S) on a non-dict"
                    } else {
                        "APPEND(S) on a non-list"
                    };
                    return Err(self.malformed(what));
                }
            }
        };
        let copy = if Rc::strong_count(&self.top()?.0) > 1 {
            shared_len
        } else {
            0
        };
        self.spend(items.len() + copy)?;
        let top = self.top()?;
        let inner = Rc::make_mut(&mut top.0);
        inner.0 = inner.0.max(depth);
        if inner.0 > max_depth {
            return Err(PickleError::Limit {
                offset,
                what: "the nesting depth",
                limit: max_depth,
            });
        }
        match &mut inner.1 {
            Value::List(v) => v.extend(items),
            Value::Dict(v) => {
                let mut it = items.into_iter();
                while let (Some(k), Some(val)) = (it.next(), it.next()) {
                    v.push((k, val));
                }
            }
            _ => unreachable!("checked above"),
        }
        Ok(())
    }

    fn memo_put(&mut self, index: u32) -> Result<(), PickleError> {
        let node = self.top()?.clone();
        if !self.memo.contains_key(&index) && self.memo.len() >= self.limits.max_memo {
            return Err(PickleError::Limit {
                offset: self.op_start,
                what: "the memo size",
                limit: self.limits.max_memo,
            });
        }
        self.memo.insert(index, node);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<(), PickleError> {
        let node = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.malformed(format!("memo entry {index} is not defined")))?;
        self.push(node)
    }

    fn global(&self, module: &str, name: &str) -> Result<Global, PickleError> {
        let global = match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch", storage) => storage_dtype(storage).map(Global::Storage),
            _ => None,
        };
        global.ok_or_else(|| PickleError::Forbidden {
            offset: self.op_start,
            what: format!("global `{module}.{name}`"),
        })
    }

    fn int(&self, node: &Node, what: &str) -> Result<i64, PickleError> {
        match node.value() {
            Value::Int(i) => Ok(*i),
            _ => Err(self.malformed(format!("{what} is not an integer"))),
        }
    }

    fn ints(&self, node: &Node, what: &str) -> Result<Vec<i64>, PickleError> {
        match node.value() {
            Value::Tuple(items) | Value::List(items) => {
                items.iter().map(|n| self.int(n, what)).collect()
            }
            _ => Err(self.malformed(format!("{what} is not a tuple"))),
        }
    }

    fn persistent_load(&self, pid: Node) -> Result<Value, PickleError> {
        let Value::Tuple(items) = pid.value() else {
            return Err(self.malformed("persistent id is not a tuple"));
        };
        match items.as_slice() {
            [tag, class, key, _location, numel] => {
                if !matches!(tag.value(), Value::Str(s) if &**s == "storage") {
                    return Err(self.malformed("persistent id is not a storage"));
                }
                let Value::Global(Global::Storage(dtype)) = class.value() else {
                    return Err(self.malformed("storage class is not a torch storage type"));
                };
                let Value::Str(key) = key.value() else {
                    return Err(self.malformed("storage key is not a string"));
                };
                Ok(Value::Storage {
                    dtype: *dtype,
                    key: key.clone(),
                    numel: self.int(numel, "storage size")?,
                })
            }
            _ => Err(self.malformed("persistent id is not ('storage', type, key, location, size)")),
        }
    }

    fn reduce(&self, callable: Node, args: Node) -> Result<Value, PickleError> {
        let Value::Global(global) = callable.value() else {
            return Err(PickleError::Forbidden {
                offset: self.op_start,
                what: "a call of something other than an allowed global".into(),
            });
        };
        let Value::Tuple(args) = args.value() else {
            return Err(self.malformed("REDUCE arguments are not a tuple"));
        };
        match global {
            Global::OrderedDict if args.is_empty() => Ok(Value::Dict(Vec::new())),
            Global::OrderedDict => Err(self.malformed("OrderedDict called with arguments")),
            Global::RebuildTensorV2 => {
                if !(6..=7).contains(&args.len()) {
                    return Err(self.malformed("_rebuild_tensor_v2 takes 6 or 7 arguments"));
                }
                let Value::Storage { dtype, key, numel } = args[0].value() else {
                    return Err(self.malformed("_rebuild_tensor_v2's storage is not a storage"));
                };
                let size = self.ints(&args[2], "tensor size")?;
                let stride = self.ints(&args[3], "tensor stride")?;
                if size.len() != stride.len() {
                    return Err(self.malformed(format!(
                        "tensor size {size:?} and stride {stride:?} differ in length"
                    )));
                }
                Ok(Value::Tensor(Rc::new(TensorRef {
                    dtype: *dtype,
                    key: key.to_string(),
                    storage_numel: *numel,
                    offset: self.int(&args[1], "storage offset")?,
                    size,
                    stride,
                })))
            }
            Global::RebuildParameter => match args.first().map(Node::value) {
                Some(Value::Tensor(t)) if (2..=3).contains(&args.len()) => {
                    Ok(Value::Tensor(t.clone()))
                }
                _ => Err(self.malformed("_rebuild_parameter of something other than a tensor")),
            },
            Global::Storage(_) => Err(PickleError::Forbidden {
                offset: self.op_start,
                what: "constructing a storage".into(),
            }),
        }
    }

    fn run(mut self) -> Result<Node, PickleError> {
        loop {
            self.op_start = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if !(2..=5).contains(&proto) {
                        return Err(
                            self.malformed(format!("pickle protocol {proto} (2 to 5 are read)"))
                        );
                    }
                }
                0x95 => {
                    self.u64()?;
                }
                b'.' => {
                    let result = self.pop()?;
                    return Ok(result);
                }
                b'(' => {
                    self.spend(1)?;
                    self.stack.push(Slot::Mark);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.push(top)?;
                }
                b'N' => self.push_value(Value::None)?,
                0x88 => self.push_value(Value::Bool(true))?,
                0x89 => self.push_value(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push_value(Value::Int(v.into()))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push_value(Value::Int(v.into()))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push_value(Value::Int(v.into()))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as u64
                    } else {
                        let n = self.u32()? as i32;
                        u64::try_from(n).map_err(|_| self.malformed("negative LONG4 length"))?
                    };
                    let n = self.len(n)?;
                    if n > 8 {
                        return Err(self.malformed(format!("a {n}-byte integer")));
                    }
                    let bytes = self.take(n)?;
                    let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        [0xff; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(bytes);
                    self.push_value(Value::Int(i64::from_le_bytes(buf)))?
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                    self.push_value(Value::Float(v))?
                }
                b'X' | 0x8c | 0x8d | b'T' | b'U' => {
                    let n = match op {
                        b'X' => self.u32()? as u64,
                        b'T' => {
                            let n = self.u32()? as i32;
                            u64::try_from(n).map_err(|_| self.malformed("negative length"))?
                        }
                        0x8d => self.u64()?,
                        _ => self.u8()? as u64,
                    };
                    let n = self.len(n)?;
                    let s = self.string(n)?;
                    self.push_value(Value::Str(s))?
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as u64,
                        b'C' => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let n = self.len(n)?;
                    self.take(n)?;
                    self.push_value(Value::Bytes(n))?
                }
                b'}' => self.push_value(Value::Dict(Vec::new()))?,
                b']' => self.push_value(Value::List(Vec::new()))?,
                b')' => self.push_value(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.tuple(items)?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.tuple(items)?
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_top(vec![item], false)?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_top(items, false)?
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.extend_top(vec![key, value], true)?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.extend_top(items, true)?
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(i.into())?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len())
                        .map_err(|_| self.malformed("memo overflow"))?;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(i.into())?
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let global = self.global(&module, &name)?;
                    self.push_value(Value::Global(global))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module.value(), name.value())
                    else {
                        return Err(self.malformed("STACK_GLOBAL of non-strings"));
                    };
                    let global = self.global(module, name)?;
                    self.push_value(Value::Global(global))?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.push_value(storage)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = self.reduce(callable, args)?;
                    self.push_value(value)?
                }
                b'b' => {
                    // BUILD: the state of an OrderedDict (`_metadata`) or of a Parameter
                    // does not change the tensors; it is dropped.
                    self.pop()?;
                    if !matches!(self.top()?.value(), Value::Dict(_) | Value::Tensor(_)) {
                        return Err(PickleError::Forbidden {
                            offset: self.op_start,
                            what: "BUILD on something other than a dict or a tensor".into(),
                        });
                    }
                }
                b'P' | b'i' | b'o' | 0x81 | 0x92 | 0x82..=0x84 => {
                    return Err(PickleError::Forbidden {
                        offset: self.op_start,
                        what: format!("opcode 0x{op:02x} (object construction)"),
                    });
                }
                _ => {
                    return Err(self.malformed(format!("unsupported opcode 0x{op:02x}")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn nesting_is_bounded() {
        let mut pickle = vec![0x80, 2];
        pickle.extend(std::iter::repeat_n(b']', 100_000));
        pickle.extend(std::iter::repeat_n(b'a', 99_999));
        pickle.push(b'.');
        let error = parse(&pickle, limits()).unwrap_err();
        assert!(
            matches!(
                error,
                PickleError::Limit {
                    what: "the nesting depth",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn the_memo_is_bounded() {
        let mut pickle = vec![0x80, 2, b'N'];
        for i in 0..2_000_000u32 {
            pickle.push(b'r');
            pickle.extend_from_slice(&i.to_le_bytes());
        }
        pickle.push(b'.');
        let error = parse(&pickle, limits()).unwrap_err();
        assert!(
            matches!(
                error,
                PickleError::Limit {
                    what: "the memo size",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn sharing_a_big_list_is_paid_for() {
        // A 1000-element list memoised, then appended to through the memo 100 000 times:
        // each append copies the list.
        let mut pickle = vec![0x80, 2, b']', b'q', 0, b'('];
        pickle.extend(std::iter::repeat_n(b'N', 1000));
        pickle.push(b'e');
        pickle.extend([b'q', 0]);
        for _ in 0..100_000 {
            pickle.extend([b'h', 0, b'N', b'a', b'0']);
        }
        pickle.extend([b'.']);
        let error = parse(&pickle, limits()).unwrap_err();
        assert!(matches!(error, PickleError::Limit { .. }), "{error}");
    }

    #[test]
    fn globals_other_than_the_state_dict_ones_are_refused() {
        let pickle = b"\x80\x02cposix\nsystem\nq\x00.";
        let error = parse(pickle, limits()).unwrap_err();
        assert!(matches!(error, PickleError::Forbidden { .. }), "{error}");
    }

    #[test]
    fn protocol_0_and_1_are_refused_and_truncation_is_an_error() {
        assert!(matches!(
            parse(b"\x80\x01N.", limits()),
            Err(PickleError::Malformed { .. })
        ));
        assert!(matches!(
            parse(b"\x80\x02X\xff\xff\xff\x00ab", limits()),
            Err(PickleError::Malformed { .. })
        ));
        assert!(matches!(
            parse(b"", limits()),
            Err(PickleError::Malformed { .. })
        ));
    }

    #[test]
    fn long1_integers_are_signed() {
        let node = parse(b"\x80\x02\x8a\x02\xff\xfe.", limits()).unwrap();
        assert_eq!(node.value(), &Value::Int(-257));
        let node = parse(b"\x80\x02\x8a\x01\x7f.", limits()).unwrap();
        assert_eq!(node.value(), &Value::Int(127));
    }
}
