//! Constant folding: nodes whose inputs are all constants are replaced by their value, for the
//! elementwise and shape ops that batch-norm and bias arithmetic produce (Grappler's constant
//! folding, for the ops that matter here). Results are bounded in size, so a hostile graph
//! cannot make the converter allocate without limit.

use tfjsc_proto::tensorflow::{attr_value, DataType, NodeDef};

use super::error::ConvertError;
use super::rewrite::{constant_node, Graph};
use super::tensor::Tensor;
use super::ConvertOptions;

/// Elements above which a folded result is left unfolded (a hostile Fill could ask for more).
const MAX_FOLDED_ELEMENTS: usize = 1 << 26;

/// Replaces nodes whose inputs are all constants by their value, for the elementwise and shape
/// ops batch-norm and bias arithmetic produce.
pub fn fold_constants(graph: &mut Graph, _: &ConvertOptions) -> Result<(), ConvertError> {
    let outputs = graph.output_nodes();
    for index in 0..graph.nodes.len() {
        let node = &graph.nodes[index];
        if node.op == "Const" || outputs.contains(&node.name) || node.input.is_empty() {
            continue;
        }
        let inputs: Option<Vec<&Tensor>> = node.input.iter().map(|i| graph.constant(i)).collect();
        let Some(inputs) = inputs else { continue };
        let Some(value) = evaluate(node, &inputs) else {
            continue;
        };
        if value.len() > MAX_FOLDED_ELEMENTS {
            continue;
        }
        let name = node.name.clone();
        graph.nodes[index] = constant_node(&name, &value);
        graph.constants.insert(name, value);
    }
    Ok(())
}

/// Numpy broadcasting of two shapes.
pub fn broadcast_shape(a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let x = if i + a.len() >= rank {
                a[i + a.len() - rank]
            } else {
                1
            };
            let y = if i + b.len() >= rank {
                b[i + b.len() - rank]
            } else {
                1
            };
            match (x, y) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// The index into a broadcast operand of shape `shape` for each element of `out`.
fn broadcast_indices(shape: &[i64], out: &[i64]) -> Vec<usize> {
    let count: usize = out.iter().product::<i64>() as usize;
    let rank = out.len();
    let mut strides = vec![0usize; rank];
    let mut stride = 1usize;
    for axis in (0..shape.len()).rev() {
        let out_axis = axis + rank - shape.len();
        strides[out_axis] = if shape[axis] == 1 { 0 } else { stride };
        stride *= shape[axis] as usize;
    }
    let mut indices = Vec::with_capacity(count);
    let mut position = vec![0i64; rank];
    for _ in 0..count {
        indices.push(
            position
                .iter()
                .zip(&strides)
                .map(|(&p, &s)| p as usize * s)
                .sum(),
        );
        for axis in (0..rank).rev() {
            position[axis] += 1;
            if position[axis] < out[axis] {
                break;
            }
            position[axis] = 0;
        }
    }
    indices
}

/// Applies `f` elementwise with broadcasting.
pub fn binary_f32(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32) -> Option<Tensor> {
    let (x, y) = (a.as_f32()?, b.as_f32()?);
    let (shape, pairs) = broadcast_pairs(a, b)?;
    let values: Vec<f32> = pairs.map(|(i, j)| f(x[i], y[j])).collect();
    Some(Tensor::float32(shape, &values))
}

fn binary_i32(a: &Tensor, b: &Tensor, f: impl Fn(i32, i32) -> Option<i32>) -> Option<Tensor> {
    let (x, y) = (a.as_i32()?, b.as_i32()?);
    let (shape, pairs) = broadcast_pairs(a, b)?;
    let values: Option<Vec<i32>> = pairs.map(|(i, j)| f(x[i], y[j])).collect();
    Some(Tensor::int32(shape, &values?))
}

/// The broadcast shape of `a` and `b` and, per element of it, the element of each operand it
/// reads; `None` when they do not broadcast or the result is too large to fold.
fn broadcast_pairs(
    a: &Tensor,
    b: &Tensor,
) -> Option<(Vec<i64>, impl Iterator<Item = (usize, usize)>)> {
    let shape = broadcast_shape(&a.shape, &b.shape)?;
    if shape.iter().product::<i64>() as usize > MAX_FOLDED_ELEMENTS {
        return None;
    }
    let (ia, ib) = (
        broadcast_indices(&a.shape, &shape),
        broadcast_indices(&b.shape, &shape),
    );
    Some((shape, ia.into_iter().zip(ib)))
}

/// The value of `node` on constant `inputs`, for the ops folding knows.
fn evaluate(node: &NodeDef, inputs: &[&Tensor]) -> Option<Tensor> {
    let unary = |f: fn(f32) -> f32| -> Option<Tensor> {
        let x = inputs.first()?.as_f32()?;
        Some(Tensor::float32(
            inputs[0].shape.clone(),
            &x.into_iter().map(f).collect::<Vec<_>>(),
        ))
    };
    match (node.op.as_str(), inputs) {
        ("Add" | "AddV2", [a, b]) => {
            binary_f32(a, b, |x, y| x + y).or_else(|| binary_i32(a, b, |x, y| x.checked_add(y)))
        }
        ("Sub", [a, b]) => {
            binary_f32(a, b, |x, y| x - y).or_else(|| binary_i32(a, b, |x, y| x.checked_sub(y)))
        }
        ("Mul", [a, b]) => {
            binary_f32(a, b, |x, y| x * y).or_else(|| binary_i32(a, b, |x, y| x.checked_mul(y)))
        }
        ("RealDiv", [a, b]) => binary_f32(a, b, |x, y| x / y),
        ("Maximum", [a, b]) => binary_f32(a, b, f32::max),
        ("Minimum", [a, b]) => binary_f32(a, b, f32::min),
        ("Rsqrt", [_]) => unary(|x| 1.0 / x.sqrt()),
        ("Sqrt", [_]) => unary(f32::sqrt),
        ("Neg", [_]) => unary(|x| -x),
        ("Reciprocal" | "Inv", [_]) => unary(|x| 1.0 / x),
        ("Square", [_]) => unary(|x| x * x),
        ("Reshape", [a, shape]) => {
            let dims = shape.as_i32()?;
            let count = a.len() as i64;
            let known: i64 = dims
                .iter()
                .filter(|&&d| d >= 0)
                .map(|&d| d as i64)
                .product();
            let dims: Vec<i64> = dims
                .iter()
                .map(|&d| {
                    if d == -1 && known > 0 {
                        count / known
                    } else {
                        d as i64
                    }
                })
                .collect();
            if dims.iter().any(|&d| d < 0) || dims.iter().product::<i64>() != count {
                return None;
            }
            let mut result = (*a).clone();
            result.shape = dims;
            Some(result)
        }
        ("Squeeze", [a]) => {
            let axes: Vec<i64> = match node.attr.get("squeeze_dims").and_then(|v| v.value.as_ref())
            {
                Some(attr_value::Value::List(list)) => list.i.clone(),
                _ => Vec::new(),
            };
            let rank = a.shape.len() as i64;
            let axes: Vec<i64> = axes
                .iter()
                .map(|&x| if x < 0 { x + rank } else { x })
                .collect();
            let mut result = (*a).clone();
            result.shape = a
                .shape
                .iter()
                .enumerate()
                .filter(|&(axis, &dim)| {
                    !(dim == 1 && (axes.is_empty() || axes.contains(&(axis as i64))))
                })
                .map(|(_, &dim)| dim)
                .collect();
            Some(result)
        }
        ("ExpandDims", [a, axis]) => {
            let axis = *axis.as_i32()?.first()? as i64;
            let rank = a.shape.len() as i64;
            let axis = if axis < 0 { axis + rank + 1 } else { axis };
            if !(0..=rank).contains(&axis) {
                return None;
            }
            let mut result = (*a).clone();
            result.shape.insert(axis as usize, 1);
            Some(result)
        }
        ("Cast", [a]) => {
            let to = match node.attr.get("DstT").and_then(|v| v.value.as_ref()) {
                Some(attr_value::Value::Type(t)) => DataType::try_from(*t).ok()?,
                _ => return None,
            };
            match (a.dtype, to) {
                (from, to) if from == to => Some((*a).clone()),
                (DataType::DtInt32, DataType::DtFloat) => Some(Tensor::float32(
                    a.shape.clone(),
                    &a.as_i32()?.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                )),
                (DataType::DtFloat, DataType::DtInt32) => Some(Tensor::int32(
                    a.shape.clone(),
                    &a.as_f32()?.iter().map(|&v| v as i32).collect::<Vec<_>>(),
                )),
                _ => None,
            }
        }
        ("Range", [start, limit, delta]) => {
            let (start, limit, delta) = (
                *start.as_i32()?.first()?,
                *limit.as_i32()?.first()?,
                *delta.as_i32()?.first()?,
            );
            if delta == 0 {
                return None;
            }
            let (difference, step) = (i64::from(limit) - i64::from(start), i64::from(delta));
            if difference != 0 && (difference > 0) != (step > 0) {
                return None; // TensorFlow refuses a range that runs away from its limit
            }
            let count = (difference.abs() + step.abs() - 1) / step.abs();
            if count > MAX_FOLDED_ELEMENTS as i64 {
                return None;
            }
            let values: Vec<i32> = (0..count)
                .map(|k| (i64::from(start) + k * i64::from(delta)) as i32)
                .collect();
            Some(Tensor::int32(vec![count], &values))
        }
        ("Max" | "Min" | "Sum" | "Prod", [a, axes]) => reduce(node, a, &axes.as_i32()?),
        _ => None,
    }
}

/// A reduction (`Max`, `Min`, `Sum`, `Prod`) of float32 or int32 `a` over `axes` (keep_dims from
/// the node), as Grappler folds the sequence length Keras' recurrent layers compute.
fn reduce(node: &NodeDef, a: &Tensor, axes: &[i32]) -> Option<Tensor> {
    let rank = a.shape.len() as i64;
    let mut reduced = vec![false; a.shape.len()];
    for &axis in axes {
        let axis = if axis < 0 {
            i64::from(axis) + rank
        } else {
            i64::from(axis)
        };
        *reduced.get_mut(usize::try_from(axis).ok()?)? = true;
    }
    let keep_dims = matches!(
        node.attr.get("keep_dims").and_then(|v| v.value.as_ref()),
        Some(attr_value::Value::B(true))
    );
    let kept_shape: Vec<i64> = a
        .shape
        .iter()
        .zip(&reduced)
        .map(|(&dim, &r)| if r { 1 } else { dim })
        .collect();
    let count: i64 = kept_shape.iter().product();
    // Output element of each input element (row-major).
    let output_index = |mut flat: usize| -> usize {
        let (mut index, mut stride) = (0usize, 1usize);
        for axis in (0..a.shape.len()).rev() {
            let dim = a.shape[axis] as usize;
            let coordinate = flat % dim.max(1);
            flat /= dim.max(1);
            if !reduced[axis] {
                index += coordinate * stride;
            }
            stride *= kept_shape[axis] as usize;
        }
        index
    };
    let shape: Vec<i64> = if keep_dims {
        kept_shape.clone()
    } else {
        a.shape
            .iter()
            .zip(&reduced)
            .filter(|(_, &r)| !r)
            .map(|(&dim, _)| dim)
            .collect()
    };
    let op = node.op.as_str();
    if let Some(values) = a.as_f32() {
        let initial = match op {
            "Max" => f32::NEG_INFINITY,
            "Min" => f32::INFINITY,
            "Sum" => 0.0,
            _ => 1.0,
        };
        let mut out = vec![initial; count as usize];
        for (flat, value) in values.into_iter().enumerate() {
            let slot = &mut out[output_index(flat)];
            *slot = match op {
                "Max" => slot.max(value),
                "Min" => slot.min(value),
                "Sum" => *slot + value,
                _ => *slot * value,
            };
        }
        return Some(Tensor::float32(shape, &out));
    }
    let values = a.as_i32()?;
    let initial = match op {
        "Max" => i32::MIN,
        "Min" => i32::MAX,
        "Sum" => 0,
        _ => 1,
    };
    let mut out = vec![initial; count as usize];
    for (flat, value) in values.into_iter().enumerate() {
        let slot = &mut out[output_index(flat)];
        *slot = match op {
            "Max" => (*slot).max(value),
            "Min" => (*slot).min(value),
            "Sum" => slot.checked_add(value)?,
            _ => slot.checked_mul(value)?,
        };
    }
    Some(Tensor::int32(shape, &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, keep_dims: bool) -> NodeDef {
        let mut node = NodeDef {
            op: op.into(),
            ..NodeDef::default()
        };
        node.attr.insert(
            "keep_dims".into(),
            tfjsc_proto::tensorflow::AttrValue {
                value: Some(attr_value::Value::B(keep_dims)),
            },
        );
        node
    }

    #[test]
    fn ranges_fold_like_tensorflow() {
        let range = |start: i32, limit: i32, delta: i32| {
            let (a, b, c) = (
                Tensor::int32(vec![], &[start]),
                Tensor::int32(vec![], &[limit]),
                Tensor::int32(vec![], &[delta]),
            );
            evaluate(&node("Range", false), &[&a, &b, &c]).map(|t| t.as_i32().unwrap())
        };
        assert_eq!(range(0, 5, 2), Some(vec![0, 2, 4]));
        assert_eq!(range(0, -5, -2), Some(vec![0, -2, -4]));
        assert_eq!(range(0, 0, 1), Some(vec![]));
        assert_eq!(range(0, 3, -1), None);
        assert_eq!(range(0, 3, 0), None);
    }

    #[test]
    fn reductions_fold_over_the_given_axes() {
        let a = Tensor::float32(vec![2, 3], &[1.0, 5.0, 3.0, 4.0, 2.0, 6.0]);
        let axis = |axes: &[i32]| Tensor::int32(vec![axes.len() as i64], axes);
        let max_rows = evaluate(&node("Max", false), &[&a, &axis(&[1])]).unwrap();
        assert_eq!(
            (max_rows.shape.clone(), max_rows.as_f32().unwrap()),
            (vec![2], vec![5.0, 6.0])
        );
        let sum_columns = evaluate(&node("Sum", true), &[&a, &axis(&[-2])]).unwrap();
        assert_eq!(
            (sum_columns.shape.clone(), sum_columns.as_f32().unwrap()),
            (vec![1, 3], vec![5.0, 7.0, 9.0])
        );
        // A scalar reduced over no axes (Keras' sequence length) is itself.
        let scalar = Tensor::int32(vec![], &[5]);
        let none = Tensor::int32(vec![0], &[]);
        let max = evaluate(&node("Max", false), &[&scalar, &none]).unwrap();
        assert_eq!(
            (max.shape.clone(), max.as_i32().unwrap()),
            (vec![], vec![5])
        );
        assert!(evaluate(&node("Prod", false), &[&a, &axis(&[2])]).is_none());
    }

    #[test]
    fn broadcasting_folds_like_numpy() {
        let a = Tensor::float32(vec![2, 1], &[1.0, 2.0]);
        let b = Tensor::float32(vec![3], &[10.0, 20.0, 30.0]);
        let sum = binary_f32(&a, &b, |x, y| x + y).unwrap();
        assert_eq!(sum.shape, vec![2, 3]);
        assert_eq!(
            sum.as_f32().unwrap(),
            vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]
        );
        assert!(broadcast_shape(&[2], &[3]).is_none());
    }
}
