//! The IR text form.
//!
//! ```text
//! graph {
//!   input %0 "x" : f32[1,4]
//!   const %1 weight "dense/kernel" : f32[4,2]
//!   const %2 [0.5, -1] : f32[2]
//!   %3 = matmul(%0, %1) {transpose_a=false, transpose_b=false} : f32[1,2] @"dense/MatMul"
//!   %4 = binary(%3, %2) {kind="add"} : f32[1,2] @"dense/BiasAdd"
//!   output "y" %4
//! }
//! ```
//! Constants with more than [`INLINE_LIMIT`] elements print as `elided`; the parser reads them
//! (and weights, whose data lives in the shards) back as zeros of their type.

use std::collections::HashMap;
use std::fmt::Write;

use super::{DType, Definition, Graph, Tensor, TensorData, TensorType, ValueId};
use crate::ops::{parse_operator, Attribute, Attributes};

/// Constants up to this many elements print their values.
pub const INLINE_LIMIT: usize = 16;

/// The most bytes of zeros the parser materialises for `elided` and `weight` constants, all
/// together. A few characters of text can name a type of any size, and parsing must not turn
/// them into gigabytes (found by fuzzing); 64 MiB is far above what any test or dump of the
/// bundled fixtures needs.
pub const MAX_ZERO_FILLED_BYTES: usize = 1 << 26;

/// Prints the graph in the text form. Values are numbered densely in the order they are printed
/// (inputs, constants, node results), so a graph and its re-parse print identically.
pub fn print(graph: &Graph) -> String {
    let mut numbers: HashMap<ValueId, usize> = HashMap::new();
    let number = |id: ValueId, numbers: &mut HashMap<ValueId, usize>| {
        let next = numbers.len();
        format!("%{}", *numbers.entry(id).or_insert(next))
    };
    let mut out = String::from("graph {\n");
    let type_text = |id: ValueId| match &graph.value(id).ty {
        Some(ty) => ty.to_string(),
        None => "?".to_string(),
    };
    for (index, value) in graph.values.iter().enumerate() {
        let id = ValueId(index as u32);
        match &value.definition {
            Definition::Input(_) => {
                let name = number(id, &mut numbers);
                let _ = writeln!(out, "  input {name} {:?} : {}", value.name, type_text(id));
            }
            Definition::Constant(constant) if is_used(graph, id) => {
                let body = match &constant.weight {
                    Some(name) => format!("weight {name:?}"),
                    None => constant_literal(&constant.tensor),
                };
                let name = number(id, &mut numbers);
                let _ = writeln!(out, "  const {name} {body} : {}", type_text(id));
            }
            _ => {}
        }
    }
    for (_, node) in graph.nodes() {
        let inputs: Vec<String> = node
            .inputs
            .iter()
            .map(|&v| number(v, &mut numbers))
            .collect();
        let outputs: Vec<String> = node
            .outputs
            .iter()
            .map(|&v| number(v, &mut numbers))
            .collect();
        let _ = write!(
            out,
            "  {} = {}({})",
            outputs.join(", "),
            node.op.name(),
            inputs.join(", ")
        );
        let attributes = node.op.attributes();
        if !attributes.0.is_empty() {
            let parts: Vec<String> = attributes
                .0
                .iter()
                .map(|(name, value)| format!("{name}={}", attribute_text(value)))
                .collect();
            let _ = write!(out, " {{{}}}", parts.join(", "));
        }
        let types: Vec<String> = node.outputs.iter().map(|&v| type_text(v)).collect();
        let _ = writeln!(out, " : {} @{:?}", types.join(", "), node.name);
    }
    for port in &graph.outputs {
        let name = number(port.value, &mut numbers);
        let _ = writeln!(out, "  output {:?} {name}", port.name);
    }
    out.push_str("}\n");
    out
}

fn is_used(graph: &Graph, id: ValueId) -> bool {
    graph.nodes().any(|(_, node)| node.inputs.contains(&id)) || graph.is_graph_output(id)
}

fn constant_literal(tensor: &Tensor) -> String {
    if tensor.element_count() > INLINE_LIMIT {
        return "elided".to_string();
    }
    let items: Vec<String> = match &tensor.data {
        TensorData::F32(values) => values.iter().map(|v| float_text(*v)).collect(),
        TensorData::I32(values) => values.iter().map(|v| v.to_string()).collect(),
        TensorData::I64(values) => values.iter().map(|v| v.to_string()).collect(),
        TensorData::Bool(values) => values.iter().map(|v| v.to_string()).collect(),
    };
    format!("[{}]", items.join(", "))
}

fn float_text(value: f32) -> String {
    if value.is_nan() {
        "nan".into()
    } else if value.is_infinite() {
        if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{value:?}")
    }
}

fn attribute_text(value: &Attribute) -> String {
    match value {
        Attribute::Int(v) => v.to_string(),
        Attribute::Float(v) => float_text(*v),
        Attribute::Bool(v) => v.to_string(),
        Attribute::Str(v) => format!("{v:?}"),
        Attribute::Type(v) => v.short_name().to_string(),
        Attribute::Ints(v) => format!(
            "[{}]",
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Attribute::Floats(v) => format!(
            "[{}]",
            v.iter()
                .map(|x| float_text(*x))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A parse failure with its line.
#[derive(Debug, thiserror::Error)]
#[error("IR text line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Value(u32),
    Str(String),
    Number(String),
    Punct(char),
}

fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        if c.is_whitespace() {
            index += 1;
        } else if c == '#' {
            break;
        } else if c == '%' {
            let start = index + 1;
            index = start;
            while index < chars.len() && chars[index].is_ascii_digit() {
                index += 1;
            }
            let digits: String = chars[start..index].iter().collect();
            tokens.push(Token::Value(
                digits
                    .parse()
                    .map_err(|_| format!("bad value name %{digits}"))?,
            ));
        } else if c == '"' {
            let mut text = String::new();
            index += 1;
            loop {
                match chars.get(index) {
                    None => return Err("unterminated string".into()),
                    Some('"') => break,
                    Some('\\') => {
                        let escaped = chars.get(index + 1).ok_or("unterminated escape")?;
                        text.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            other => *other,
                        });
                        index += 2;
                    }
                    Some(other) => {
                        text.push(*other);
                        index += 1;
                    }
                }
            }
            index += 1;
            tokens.push(Token::Str(text));
        } else if c.is_ascii_digit() || c == '-' || c == '.' {
            let start = index;
            index += 1;
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric() || matches!(chars[index], '.' | '+' | '-'))
            {
                if matches!(chars[index], '+' | '-') && !matches!(chars[index - 1], 'e' | 'E') {
                    break;
                }
                index += 1;
            }
            tokens.push(Token::Number(chars[start..index].iter().collect()));
        } else if c.is_alphabetic() || c == '_' {
            let start = index;
            while index < chars.len() && (chars[index].is_alphanumeric() || chars[index] == '_') {
                index += 1;
            }
            tokens.push(Token::Word(chars[start..index].iter().collect()));
        } else {
            tokens.push(Token::Punct(c));
            index += 1;
        }
    }
    Ok(tokens)
}

struct Cursor {
    tokens: Vec<Token>,
    position: usize,
}

impl Cursor {
    fn next(&mut self) -> Result<Token, String> {
        let token = self
            .tokens
            .get(self.position)
            .cloned()
            .ok_or("unexpected end of line")?;
        self.position += 1;
        Ok(token)
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn expect_punct(&mut self, expected: char) -> Result<(), String> {
        match self.next()? {
            Token::Punct(c) if c == expected => Ok(()),
            other => Err(format!("expected `{expected}`, found {other:?}")),
        }
    }

    fn eat_punct(&mut self, expected: char) -> bool {
        if self.peek() == Some(&Token::Punct(expected)) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<u32, String> {
        match self.next()? {
            Token::Value(v) => Ok(v),
            other => Err(format!("expected a value like %3, found {other:?}")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        match self.next()? {
            Token::Str(s) => Ok(s),
            other => Err(format!("expected a string, found {other:?}")),
        }
    }

    fn tensor_type(&mut self) -> Result<Option<TensorType>, String> {
        if self.eat_punct('?') {
            return Ok(None);
        }
        let dtype = match self.next()? {
            Token::Word(word) => {
                DType::from_short_name(&word).ok_or(format!("unknown dtype `{word}`"))?
            }
            other => return Err(format!("expected a dtype, found {other:?}")),
        };
        self.expect_punct('[')?;
        let mut shape = Vec::new();
        while !self.eat_punct(']') {
            match self.next()? {
                Token::Number(n) => {
                    shape.push(n.parse().map_err(|_| format!("bad dimension `{n}`"))?)
                }
                other => return Err(format!("expected a dimension, found {other:?}")),
            }
            self.eat_punct(',');
        }
        let ty = TensorType::new(dtype, shape);
        if ty.checked_byte_size().is_none() {
            return Err(format!("type {ty} is too large"));
        }
        Ok(Some(ty))
    }

    /// A bracketed list of number or boolean words.
    fn literal_list(&mut self) -> Result<Vec<String>, String> {
        self.expect_punct('[')?;
        let mut items = Vec::new();
        while !self.eat_punct(']') {
            match self.next()? {
                Token::Number(n) => items.push(n),
                Token::Word(w) => items.push(w),
                other => return Err(format!("expected a number, found {other:?}")),
            }
            self.eat_punct(',');
        }
        Ok(items)
    }
}

fn parse_float(text: &str) -> Result<f32, String> {
    match text {
        "nan" => Ok(f32::NAN),
        "inf" => Ok(f32::INFINITY),
        "-inf" => Ok(f32::NEG_INFINITY),
        _ => text.parse().map_err(|_| format!("bad number `{text}`")),
    }
}

fn parse_attribute(cursor: &mut Cursor) -> Result<Attribute, String> {
    match cursor.peek().cloned() {
        Some(Token::Str(s)) => {
            cursor.position += 1;
            Ok(Attribute::Str(s))
        }
        Some(Token::Word(w)) => {
            cursor.position += 1;
            match w.as_str() {
                "true" => Ok(Attribute::Bool(true)),
                "false" => Ok(Attribute::Bool(false)),
                "nan" | "inf" => Ok(Attribute::Float(parse_float(&w)?)),
                _ => DType::from_short_name(&w)
                    .map(Attribute::Type)
                    .ok_or(format!("unknown attribute word `{w}`")),
            }
        }
        Some(Token::Number(n)) => {
            cursor.position += 1;
            if let Ok(v) = n.parse::<i64>() {
                Ok(Attribute::Int(v))
            } else {
                Ok(Attribute::Float(parse_float(&n)?))
            }
        }
        Some(Token::Punct('[')) => {
            let items = cursor.literal_list()?;
            if items.iter().all(|item| item.parse::<i64>().is_ok()) {
                Ok(Attribute::Ints(
                    items.iter().map(|item| item.parse().unwrap_or(0)).collect(),
                ))
            } else {
                Ok(Attribute::Floats(
                    items
                        .iter()
                        .map(|item| parse_float(item))
                        .collect::<Result<_, _>>()?,
                ))
            }
        }
        other => Err(format!("expected an attribute value, found {other:?}")),
    }
}

fn literal_tensor(items: &[String], ty: &TensorType) -> Result<Tensor, String> {
    if items.len() != ty.element_count() {
        return Err(format!(
            "constant has {} values, its type {ty} holds {}",
            items.len(),
            ty.element_count()
        ));
    }
    let shape = ty.shape.clone();
    let parse_int = |s: &String| s.parse::<i64>().map_err(|_| format!("bad integer `{s}`"));
    Ok(match ty.dtype {
        DType::F32 => Tensor::from_f32(
            shape,
            items
                .iter()
                .map(|s| parse_float(s))
                .collect::<Result<_, _>>()?,
        ),
        DType::I32 => Tensor::from_i32(
            shape,
            items
                .iter()
                .map(|s| parse_int(s).map(|v| v as i32))
                .collect::<Result<_, _>>()?,
        ),
        DType::I64 => Tensor::from_i64(
            shape,
            items.iter().map(parse_int).collect::<Result<_, _>>()?,
        ),
        DType::Bool => Tensor::from_bool(
            shape,
            items.iter().map(|s| s == "true" || s == "1").collect(),
        ),
    })
}

/// Parses the text form. Value numbers in the text are renumbered densely in order of definition.
pub fn parse(text: &str) -> Result<Graph, ParseError> {
    let mut graph = Graph::new();
    let mut names: HashMap<u32, ValueId> = HashMap::new();
    let mut started = false;
    let mut zero_filled_bytes = 0usize;
    for (line_index, line) in text.lines().enumerate() {
        let fail = |message: String| ParseError {
            line: line_index + 1,
            message,
        };
        let tokens = tokenize(line).map_err(fail)?;
        if tokens.is_empty() {
            continue;
        }
        let mut cursor = Cursor {
            tokens,
            position: 0,
        };
        let result: Result<(), String> = (|| {
            let lookup = |names: &HashMap<u32, ValueId>, v: u32| {
                names
                    .get(&v)
                    .copied()
                    .ok_or(format!("%{v} is used before it is defined"))
            };
            match cursor.next()? {
                Token::Word(w) if w == "graph" && !started => {
                    cursor.expect_punct('{')?;
                    started = true;
                }
                Token::Punct('}') if started => {}
                Token::Word(w) if w == "input" => {
                    let v = cursor.value()?;
                    let name = cursor.string()?;
                    cursor.expect_punct(':')?;
                    let ty = cursor.tensor_type()?;
                    names.insert(v, graph.add_input(&name, ty));
                }
                Token::Word(w) if w == "const" => {
                    let v = cursor.value()?;
                    let (weight, items) = match cursor.peek().cloned() {
                        Some(Token::Word(w)) if w == "weight" => {
                            cursor.position += 1;
                            (Some(cursor.string()?), None)
                        }
                        Some(Token::Word(w)) if w == "elided" => {
                            cursor.position += 1;
                            (None, None)
                        }
                        _ => (None, Some(cursor.literal_list()?)),
                    };
                    cursor.expect_punct(':')?;
                    let ty = cursor.tensor_type()?.ok_or("a constant needs a type")?;
                    let tensor = match items {
                        Some(items) => literal_tensor(&items, &ty)?,
                        None => {
                            zero_filled_bytes = ty
                                .checked_byte_size()
                                .and_then(|bytes| bytes.checked_add(zero_filled_bytes))
                                .filter(|&total| total <= MAX_ZERO_FILLED_BYTES)
                                .ok_or(format!(
                                    "constant {ty} takes the zero-filled constants over {MAX_ZERO_FILLED_BYTES} bytes"
                                ))?;
                            Tensor::filled(ty.dtype, ty.shape.clone(), 0.0)
                        }
                    };
                    let name = weight.clone().unwrap_or_else(|| format!("const{v}"));
                    names.insert(v, graph.add_constant(&name, tensor, weight));
                }
                Token::Word(w) if w == "output" => {
                    let name = cursor.string()?;
                    let v = cursor.value()?;
                    graph.add_output(&name, lookup(&names, v)?);
                }
                Token::Value(first) => {
                    let mut defined = vec![first];
                    while cursor.eat_punct(',') {
                        defined.push(cursor.value()?);
                    }
                    cursor.expect_punct('=')?;
                    let op_name = match cursor.next()? {
                        Token::Word(w) => w,
                        other => return Err(format!("expected an op name, found {other:?}")),
                    };
                    cursor.expect_punct('(')?;
                    let mut inputs = Vec::new();
                    while !cursor.eat_punct(')') {
                        inputs.push(lookup(&names, cursor.value()?)?);
                        cursor.eat_punct(',');
                    }
                    let mut attributes = Attributes::default();
                    if cursor.eat_punct('{') {
                        while !cursor.eat_punct('}') {
                            let key = match cursor.next()? {
                                Token::Word(w) => w,
                                other => {
                                    return Err(format!(
                                        "expected an attribute name, found {other:?}"
                                    ))
                                }
                            };
                            cursor.expect_punct('=')?;
                            attributes.0.insert(key, parse_attribute(&mut cursor)?);
                            cursor.eat_punct(',');
                        }
                    }
                    cursor.expect_punct(':')?;
                    let mut types = vec![cursor.tensor_type()?];
                    while cursor.eat_punct(',') {
                        types.push(cursor.tensor_type()?);
                    }
                    let node_name = if cursor.eat_punct('@') {
                        cursor.string()?
                    } else {
                        format!("n{first}")
                    };
                    let op = parse_operator(&op_name, &attributes)
                        .map_err(|e| format!("{op_name}: {e}"))?;
                    let node = graph.add_node(&node_name, op, inputs, defined.len());
                    let outputs = graph
                        .node(node)
                        .map(|n| n.outputs.clone())
                        .unwrap_or_default();
                    if types.len() != outputs.len() {
                        return Err(format!(
                            "{} results but {} types",
                            outputs.len(),
                            types.len()
                        ));
                    }
                    for ((v, id), ty) in defined.iter().zip(outputs).zip(types) {
                        graph.value_mut(id).ty = ty;
                        names.insert(*v, id);
                    }
                }
                other => return Err(format!("unexpected {other:?}")),
            }
            if cursor.peek().is_some() {
                return Err(format!("unexpected trailing {:?}", cursor.peek()));
            }
            Ok(())
        })();
        result.map_err(fail)?;
    }
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_line() {
        let error =
            parse("graph {\n  input %0 \"x\" : f32[2]\n  %1 = unary(%7) {kind=\"relu\"} : ?\n}\n")
                .unwrap_err();
        assert_eq!(error.line, 3);
        assert!(
            error.message.contains("%7 is used before it is defined"),
            "{}",
            error.message
        );
        let error = parse("graph {\n  %1 = nosuchop() : ?\n}\n").unwrap_err();
        assert!(
            error.message.contains("unknown op `nosuchop`"),
            "{}",
            error.message
        );
        let error = parse("graph {\n  const %0 [1, 2, 3] : f32[2]\n}\n").unwrap_err();
        assert!(error.message.contains("3 values"), "{}", error.message);
    }

    #[test]
    fn constants_and_attributes_round_trip() {
        let source = "graph {\n  input %0 \"x\" : f32[1,4]\n  const %1 [0.5, -1.0, inf, 2.5] : f32[4]\n  const %2 [true, false] : bool[2]\n  %3 = binary(%0, %1) {kind=\"add\"} : f32[1,4] @\"add\"\n  %4 = unary(%3) {alpha=0.1, kind=\"leaky_relu\"} : f32[1,4] @\"leaky\"\n  output \"y\" %4\n}\n";
        let graph = parse(source).unwrap();
        let printed = print(&graph);
        assert_eq!(print(&parse(&printed).unwrap()), printed);
        assert!(printed.contains("[0.5, -1.0, inf, 2.5]"), "{printed}");
        assert!(printed.contains("alpha=0.1"), "{printed}");
        // The unused bool constant is not printed.
        assert!(!printed.contains("bool"), "{printed}");
    }

    #[test]
    fn huge_types_are_errors_not_allocations() {
        // Found by fuzzing: 11 characters of dimension asked for 44 GB of zeros.
        let error = parse("graph {\n  const %0 elided : f32[11111111111]\n}\n").unwrap_err();
        assert!(error.message.contains("zero-filled"), "{}", error.message);
        let error =
            parse("graph {\n  input %0 \"x\" : f32[4294967296,4294967296]\n}\n").unwrap_err();
        assert!(error.message.contains("too large"), "{}", error.message);
        let total =
            "graph {\n  const %0 elided : f32[8388608]\n  const %1 elided : f32[8388609]\n}\n";
        assert!(
            parse(total).is_err(),
            "the limit is on all zero-filled constants together"
        );
    }
}
