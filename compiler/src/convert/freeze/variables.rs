//! Variables become constants: each variable is read from the checkpoint once and emitted as one
//! `Const` (named after the first `ReadVariableOp` that reads it); `ResourceGather` (an
//! embedding lookup on a variable) becomes `GatherV2` on that constant.

use std::collections::BTreeMap;

use tfjsc_proto::tensorflow::{attr_value, AttrValue, DataType, NodeDef};

use super::{type_attr, Freezer, Outputs, Value};
use crate::convert::error::ConvertError;
use crate::convert::rewrite::int_attr;
use crate::convert::tensor::Tensor;

impl<'a> Freezer<'a> {
    /// The `Const` holding variable `key`, emitted once (named after its first reader).
    pub(super) fn variable_constant(
        &mut self,
        key: &str,
        reader: &str,
    ) -> Result<Value, ConvertError> {
        if let Some(name) = self.variable_constants.get(key) {
            return Ok(Value::Tensor(name.clone(), 0));
        }
        let tensor = self.variables.value(key, reader)?;
        let name = self.unique(reader.to_string());
        self.emit_constant(&name, tensor);
        self.variable_constants
            .insert(key.to_string(), name.clone());
        Ok(Value::Tensor(name, 0))
    }

    /// Emits a `Const` node for `tensor`.
    pub(super) fn emit_constant(&mut self, name: &str, tensor: Tensor) {
        let mut node = NodeDef {
            name: name.to_string(),
            op: "Const".to_string(),
            ..NodeDef::default()
        };
        node.attr
            .insert("dtype".into(), type_attr(tensor.dtype as i32));
        node.attr.insert("value".into(), tensor.attr(false));
        self.out.nodes.push(node);
        self.out.constants.insert(name.to_string(), tensor);
    }

    /// `ResourceGather(variable, indices)` becomes `GatherV2(Const, indices, axis)`.
    pub(super) fn resource_gather(
        &mut self,
        node: &NodeDef,
        full_name: &str,
        inputs: Vec<Value>,
    ) -> Result<Outputs, ConvertError> {
        let (Some(Value::Variable(key)), Some(indices)) = (inputs.first(), inputs.get(1)) else {
            return Err(self.node_error(full_name, "ResourceGather without a variable and indices"));
        };
        let indices = indices
            .input()
            .ok_or_else(|| self.node_error(full_name, "indices are a variable handle"))?;
        let params = self.variable_constant(&key.clone(), &format!("{full_name}/params"))?;
        let dtype = node
            .attr
            .get("dtype")
            .cloned()
            .unwrap_or_else(|| type_attr(DataType::DtFloat as i32));
        let (attr, axis) = gather_v2_attributes(node, dtype)
            .map_err(|message| self.node_error(full_name, message))?;
        let axis_name = self.unique(format!("{full_name}/axis"));
        self.emit_constant(&axis_name, Tensor::int32(vec![], &[axis]));
        let name = self.unique(full_name.to_string());
        self.out.nodes.push(NodeDef {
            name: name.clone(),
            op: "GatherV2".into(),
            input: vec![params.input().unwrap_or_default(), indices, axis_name],
            attr,
            ..NodeDef::default()
        });
        Ok(Outputs::Emitted(name))
    }
}

/// The attributes of the `GatherV2` that `ResourceGather` node `resource_gather` becomes, its
/// params of type `params`, and the axis it gathers along (the node's `batch_dims`, for the
/// axis `Const`). Both the graph's gathers and those of control-flow bodies are rewritten so.
pub(super) fn gather_v2_attributes(
    resource_gather: &NodeDef,
    params: AttrValue,
) -> Result<(BTreeMap<String, AttrValue>, i32), String> {
    let batch_dims = int_attr(resource_gather, "batch_dims").unwrap_or(0);
    let axis =
        i32::try_from(batch_dims).map_err(|_| format!("batch_dims {batch_dims} out of range"))?;
    let mut attr = BTreeMap::new();
    attr.insert("Tparams".into(), params);
    if let Some(tindices) = resource_gather.attr.get("Tindices") {
        attr.insert("Tindices".into(), tindices.clone());
    }
    attr.insert("Taxis".into(), type_attr(DataType::DtInt32 as i32));
    attr.insert(
        "batch_dims".into(),
        AttrValue {
            value: Some(attr_value::Value::I(batch_dims)),
        },
    );
    Ok((attr, axis))
}
