//! A bounded reader for the pickle subset PyTorch writes (`data.pkl` in a `.bin`
//! or `.ckpt`). Nothing is executed: `GLOBAL` only names a callable, and
//! `REDUCE`, `NEWOBJ` and `BUILD` record the call without making it; the tensor
//! loader recognises the few torch callables it needs by name.
//!
//! Every pickle is bounded whatever it holds: the number of opcodes, the nesting
//! depth, and the bytes everything it builds takes (counted as it is built, so
//! a refusal comes before the memory is used). A memo reference shares the
//! value instead of copying it, so referring to the same list many times, at any
//! depth, costs one reference each; a shared list or dict is copied only when
//! modified, and that copy is counted.

use std::collections::HashMap;
use std::rc::Rc;

/// Bounds on one pickle.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_ops: usize,
    pub max_depth: usize,
    pub max_built_bytes: usize,
}

/// Far above what real checkpoints need: a 4 GB SD checkpoint's pickle runs
/// about 50,000 opcodes, nests 6 deep and builds about 2 MB.
pub const LIMITS: Limits = Limits {
    max_ops: 16_000_000,
    max_depth: 100,
    max_built_bytes: 128 << 20,
};

/// A value the pickle built.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    /// A callable or class, by name only.
    Global(Rc<(String, String)>),
    Node(Rc<Node>),
}

/// A value made of other values.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    /// The parts; for a dict, keys and values alternate.
    pub items: Vec<Value>,
    depth: usize,
}

/// What a [`Node`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Tuple,
    List,
    Dict,
    /// `items[0]` called with the tuple `items[1]` (REDUCE, NEWOBJ): never made.
    Call,
    /// `items[0]` with the state `items[1]` applied (BUILD).
    Build,
    /// A reference to data outside the pickle (`items[0]` is its id).
    PersistentId,
}

impl Value {
    fn depth(&self) -> usize {
        match self {
            Value::Node(node) => node.depth,
            _ => 0,
        }
    }

    /// The node, if this is one of `kind`.
    pub fn node(&self, kind: NodeKind) -> Option<&[Value]> {
        match self {
            Value::Node(node) if node.kind == kind => Some(&node.items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(value) => Some(*value),
            _ => None,
        }
    }

    /// `(module, name)` of a global.
    pub fn as_global(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global(global) => Some((&global.0, &global.1)),
            _ => None,
        }
    }

    /// The value under `key` when this is a dict.
    pub fn dict_get(&self, key: &str) -> Option<&Value> {
        self.node(NodeKind::Dict)?
            .chunks_exact(2)
            .find(|pair| pair[0].as_str() == Some(key))
            .map(|pair| &pair[1])
    }
}

/// The running reader: the stack, the marks, the memo and the budgets.
struct Machine {
    limits: Limits,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    built_bytes: usize,
}

const VALUE_BYTES: usize = std::mem::size_of::<Value>();
const NODE_BYTES: usize = std::mem::size_of::<Node>();

/// Reads one pickle; the error says which bound or rule it broke.
pub fn read(bytes: &[u8], limits: Limits) -> Result<Value, String> {
    let mut machine = Machine {
        limits,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        built_bytes: 0,
    };
    let mut input = Input { bytes, at: 0 };
    for _ in 0..limits.max_ops {
        let at = input.at;
        let op = input.take(1)?[0];
        if machine
            .step(op, &mut input)
            .map_err(|e| format!("{e} (opcode {op:#04x} at byte {at})"))?
        {
            return machine.pop();
        }
    }
    Err(format!(
        "the pickle runs more than {} opcodes",
        limits.max_ops
    ))
}

/// The integer of BININT1 (`K`), BININT2 (`M`), BININT (`J`) or LONG1 (0x8a, at most
/// 64 bits here).
fn read_int(op: u8, input: &mut Input) -> Result<i64, String> {
    Ok(match op {
        b'K' => input.u8()?.into(),
        b'M' => u16::from_le_bytes(input.array()?).into(),
        b'J' => i32::from_le_bytes(input.array()?).into(),
        // LONG1, the last one `step` sends here.
        _ => {
            let len = usize::from(input.u8()?);
            let bytes = input.take(len)?;
            if len > 8 {
                return Err("an integer wider than 64 bits".to_string());
            }
            let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                0xff
            } else {
                0
            };
            let mut wide = [fill; 8];
            wide[..len].copy_from_slice(bytes);
            i64::from_le_bytes(wide)
        }
    })
}

struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or("the pickle ends early")?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("the pickle ends early")?;
        let line = self.take(end + 1)?;
        Ok(String::from_utf8_lossy(&line[..end]).into_owned())
    }

    fn text(&mut self, len: usize) -> Result<Rc<str>, String> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(Rc::from)
            .map_err(|_| "a string is not UTF-8".to_string())
    }
}

impl Machine {
    fn charge(&mut self, bytes: usize) -> Result<(), String> {
        self.built_bytes = self.built_bytes.saturating_add(bytes);
        if self.built_bytes > self.limits.max_built_bytes {
            return Err(format!(
                "the pickle builds more than {} MiB",
                self.limits.max_built_bytes >> 20
            ));
        }
        Ok(())
    }

    fn push(&mut self, value: Value) -> Result<(), String> {
        self.charge(VALUE_BYTES)?;
        self.stack.push(value);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("the pickle pops an empty stack".to_string());
        }
        self.stack
            .pop()
            .ok_or_else(|| "the pickle pops an empty stack".to_string())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("the pickle has no mark to pop to")?;
        Ok(self.stack.split_off(mark))
    }

    fn node(&mut self, kind: NodeKind, items: Vec<Value>) -> Result<Value, String> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if depth > self.limits.max_depth {
            return Err(format!(
                "the pickle nests deeper than {} levels",
                self.limits.max_depth
            ));
        }
        self.charge(NODE_BYTES + items.len() * VALUE_BYTES)?;
        Ok(Value::Node(Rc::new(Node { kind, items, depth })))
    }

    fn push_node(&mut self, kind: NodeKind, items: Vec<Value>) -> Result<(), String> {
        let node = self.node(kind, items)?;
        self.push(node)
    }

    /// Adds `items` to the list or dict on top of the stack (copying it first if
    /// the memo shares it, so the memo keeps the value it was given).
    fn extend_top(&mut self, kind: NodeKind, items: Vec<Value>) -> Result<(), String> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if depth > self.limits.max_depth {
            return Err(format!(
                "the pickle nests deeper than {} levels",
                self.limits.max_depth
            ));
        }
        let floor = self.marks.last().copied().unwrap_or(0);
        let above_mark = self.stack.len() > floor;
        let top = match self.stack.last_mut() {
            Some(Value::Node(node)) if node.kind == kind && above_mark => node,
            _ => return Err(format!("the pickle adds items to something not a {kind:?}")),
        };
        let copied_bytes = if Rc::strong_count(top) > 1 {
            top.items.len() * VALUE_BYTES
        } else {
            0
        };
        let added_bytes = items.len() * VALUE_BYTES;
        let node = Rc::make_mut(top);
        node.depth = node.depth.max(depth);
        node.items.extend(items);
        self.charge(copied_bytes + added_bytes)
    }

    /// Runs one opcode; true at STOP. Opcodes of a few lines are here; the others go
    /// to a helper for their kind.
    fn step(&mut self, op: u8, input: &mut Input) -> Result<bool, String> {
        match op {
            0x80 => {
                input.u8()?; // PROTO
            }
            0x95 => {
                input.take(8)?; // FRAME: framing only
            }
            b'.' => return Ok(true),
            b'(' => {
                self.charge(VALUE_BYTES)?;
                self.marks.push(self.stack.len());
            }
            b'0' => {
                self.pop()?;
            }
            b'N' => self.push(Value::None)?,
            0x88 => self.push(Value::Bool(true))?,
            0x89 => self.push(Value::Bool(false))?,
            b'K' | b'M' | b'J' | 0x8a => self.push(Value::Int(read_int(op, input)?))?,
            b'G' => self.push(Value::Float(f64::from_be_bytes(input.array()?)))?,
            b'X' | 0x8c => self.push_str(op, input)?,
            b'c' | 0x93 => self.push_global(op, input)?,
            b')' | b't' | 0x85..=0x87 | b']' | b'l' | b'}' | b'd' => self.new_container(op)?,
            b'a' | b'e' | b's' | b'u' => self.add_items(op)?,
            b'Q' => {
                let id = self.pop()?;
                self.push_node(NodeKind::PersistentId, vec![id])?;
            }
            b'R' | 0x81 => self.reduce()?,
            b'b' => self.build()?,
            b'q' => self.memo_put(input.u8()?.into())?,
            b'r' => self.memo_put(input.u32()?)?,
            0x94 => {
                let id = u32::try_from(self.memo.len()).map_err(|_| "memo too large")?;
                self.memo_put(id)?;
            }
            b'h' => self.memo_get(input.u8()?.into())?,
            b'j' => self.memo_get(input.u32()?)?,
            other => return Err(format!("unsupported opcode {other:#04x}")),
        }
        Ok(false)
    }

    /// BINUNICODE (`X`, a 4-byte length) or SHORT_BINUNICODE (0x8c, a 1-byte length).
    fn push_str(&mut self, op: u8, input: &mut Input) -> Result<(), String> {
        let len = if op == b'X' {
            input.u32()? as usize
        } else {
            usize::from(input.u8()?)
        };
        let text = input.text(len)?;
        self.charge(len)?;
        self.push(Value::Str(text))
    }

    /// GLOBAL (`c`: module and name on lines of their own) or STACK_GLOBAL (0x93: both
    /// popped), named and never looked up.
    fn push_global(&mut self, op: u8, input: &mut Input) -> Result<(), String> {
        let (module, name) = if op == b'c' {
            (input.line()?, input.line()?)
        } else {
            let name = self.pop()?;
            let module = self.pop()?;
            let (Some(module), Some(name)) = (module.as_str(), name.as_str()) else {
                return Err("STACK_GLOBAL of something not a string".to_string());
            };
            (module.to_string(), name.to_string())
        };
        self.charge(module.len() + name.len())?;
        self.push(Value::Global(Rc::new((module, name))))
    }

    /// A new tuple, list or dict: empty, of the items above the mark, or (TUPLE1 to
    /// TUPLE3) of the top one to three items.
    fn new_container(&mut self, op: u8) -> Result<(), String> {
        let (kind, items) = match op {
            b')' => (NodeKind::Tuple, Vec::new()),
            b't' => (NodeKind::Tuple, self.pop_mark()?),
            0x85..=0x87 => {
                let count = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.pop()?);
                }
                items.reverse();
                (NodeKind::Tuple, items)
            }
            b']' => (NodeKind::List, Vec::new()),
            b'l' => (NodeKind::List, self.pop_mark()?),
            b'}' => (NodeKind::Dict, Vec::new()),
            // DICT (`d`), the last one `step` sends here.
            _ => (NodeKind::Dict, self.pop_mark_pairs()?),
        };
        self.push_node(kind, items)
    }

    /// APPEND (`a`), APPENDS (`e`), SETITEM (`s`) or SETITEMS (`u`): items added to the
    /// list or dict on top of the stack.
    fn add_items(&mut self, op: u8) -> Result<(), String> {
        match op {
            b'a' => {
                let value = self.pop()?;
                self.extend_top(NodeKind::List, vec![value])
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend_top(NodeKind::List, items)
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.extend_top(NodeKind::Dict, vec![key, value])
            }
            // SETITEMS (`u`), the last one `step` sends here.
            _ => {
                let items = self.pop_mark_pairs()?;
                self.extend_top(NodeKind::Dict, items)
            }
        }
    }

    /// The items above the mark, which must be keys and values.
    fn pop_mark_pairs(&mut self) -> Result<Vec<Value>, String> {
        let items = self.pop_mark()?;
        if items.len() % 2 != 0 {
            return Err("a dict with a key and no value".to_string());
        }
        Ok(items)
    }

    /// REDUCE or NEWOBJ: the call is recorded, not made.
    fn reduce(&mut self) -> Result<(), String> {
        let args = self.pop()?;
        let callable = self.pop()?;
        // torch saves state dicts as OrderedDicts, whose items follow as
        // SETITEMS: they become plain dicts, the one call interpreted here.
        let is_dict = matches!(
            callable.as_global(),
            Some(("collections", "OrderedDict" | "defaultdict"))
        );
        if is_dict {
            self.push_node(NodeKind::Dict, Vec::new())
        } else {
            self.push_node(NodeKind::Call, vec![callable, args])
        }
    }

    /// BUILD: the state is recorded with the object, not applied.
    fn build(&mut self) -> Result<(), String> {
        let state = self.pop()?;
        let object = self.pop()?;
        match (&object, state.node(NodeKind::Dict)) {
            // An OrderedDict's attributes (`_metadata`) join its items, as
            // other readers do; they are no tensors and are skipped later.
            (Value::Node(node), Some(items)) if node.kind == NodeKind::Dict => {
                let items = items.to_vec();
                self.push(object)?;
                self.extend_top(NodeKind::Dict, items)
            }
            _ => self.push_node(NodeKind::Build, vec![object, state]),
        }
    }

    fn memo_put(&mut self, id: u32) -> Result<(), String> {
        let top = self
            .stack
            .last()
            .cloned()
            .ok_or("the pickle memoizes an empty stack")?;
        self.charge(VALUE_BYTES * 2)?;
        self.memo.insert(id, top);
        Ok(())
    }

    fn memo_get(&mut self, id: u32) -> Result<(), String> {
        let value = self
            .memo
            .get(&id)
            .cloned()
            .ok_or_else(|| format!("the pickle refers to memo {id}, never stored"))?;
        self.push(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        max_ops: 1000,
        max_depth: 8,
        max_built_bytes: 64 << 10,
    };

    #[test]
    fn a_plain_dict_is_read() {
        // {"a": (1, -2, 3.5)}
        let mut pickle = vec![0x80, 2, b'}', b'q', 0, b'X', 1, 0, 0, 0, b'a'];
        pickle.extend([b'K', 1, b'J', 0xfe, 0xff, 0xff, 0xff, b'G']);
        pickle.extend(3.5f64.to_be_bytes());
        pickle.extend([0x87, b's', b'.']);
        let value = read(&pickle, SMALL).expect("reads");
        let tuple = value.dict_get("a").and_then(|v| v.node(NodeKind::Tuple));
        let ints: Vec<_> = tuple.expect("tuple").iter().map(Value::as_int).collect();
        assert_eq!(ints, [Some(1), Some(-2), None]);
    }

    #[test]
    fn every_bound_is_enforced() {
        let endless = [b'N', b'0'].repeat(2000);
        assert!(read(&endless, SMALL).unwrap_err().contains("opcodes"));
        let mut deep = vec![b'('; 9];
        deep.push(b')');
        deep.extend([b't'; 9]);
        deep.push(b'.');
        assert!(read(&deep, SMALL).unwrap_err().contains("deeper than 8"));
        // A 200-item list, shared through the memo, then modified again and again:
        // each change copies it, and the copies are counted.
        let mut copies = vec![b']', b'('];
        copies.extend([b'N'; 200]);
        copies.extend([b'e', b'q', 0]);
        for _ in 0..100 {
            copies.extend([b'0', b'h', 0, b'N', b'a']);
        }
        let error = read(&copies, SMALL).unwrap_err();
        assert!(error.contains("builds more than"), "{error}");
        assert!(
            read(b"\x80\x02N", SMALL)
                .unwrap_err()
                .contains("ends early")
        );
        assert!(read(b"h\x05.", SMALL).unwrap_err().contains("memo 5"));
    }
}
