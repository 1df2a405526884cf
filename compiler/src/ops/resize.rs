//! ResizeBilinear and ResizeNearestNeighbor (NHWC), with TensorFlow's coordinate rules: the
//! legacy mapping `in = out * scale`, `align_corners` (scale `(in - 1) / (out - 1)`) and
//! `half_pixel_centers` (`in = (out + 0.5) * scale - 0.5` for bilinear; nearest takes
//! `floor((out + 0.5) * scale)`, clamped to `[0, in - 1]`). Sampling positions and weights depend
//! only on shapes: the kernel reads them from tables computed at compile time.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_module::{DataDescription, Module};

use crate::codegen::kernel::{memory_flags, Kernel, LANES};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use crate::ops::{Attribute, Attributes, InputFacts, OpError, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

/// Resizes input 0 (NHWC) to the `[height, width]` of input 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    pub bilinear: bool,
    pub align_corners: bool,
    pub half_pixel_centers: bool,
}

/// Where output position `o` of one axis reads: for bilinear, two input indices and the weight
/// of the second; for nearest, `lower` only.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub lower: usize,
    pub upper: usize,
    pub lerp: f32,
}

/// TensorFlow's `CalculateResizeScale`.
fn resize_scale(input: usize, output: usize, align_corners: bool) -> f32 {
    if align_corners && output > 1 {
        (input - 1) as f32 / (output - 1) as f32
    } else {
        input as f32 / output as f32
    }
}

impl Resize {
    fn parse_with(a: &Attributes, bilinear: bool) -> OpResult<Arc<dyn Operator>> {
        let op = Resize {
            bilinear,
            align_corners: a.boolean("align_corners")?,
            half_pixel_centers: a.boolean("half_pixel_centers")?,
        };
        op.check()?;
        Ok(Arc::new(op))
    }

    pub fn parse_bilinear(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Self::parse_with(a, true)
    }

    pub fn parse_nearest(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Self::parse_with(a, false)
    }

    fn check(&self) -> OpResult<()> {
        if self.align_corners && self.half_pixel_centers {
            return Err(invalid!(
                "half_pixel_centers and align_corners cannot both be true"
            ));
        }
        Ok(())
    }

    /// The sampling positions of one axis.
    pub fn samples(&self, input: usize, output: usize) -> Vec<Sample> {
        let scale = resize_scale(input, output, self.align_corners);
        let last = input as i64 - 1;
        (0..output)
            .map(|o| {
                if self.bilinear {
                    let position = if self.half_pixel_centers {
                        (o as f32 + 0.5) * scale - 0.5
                    } else {
                        o as f32 * scale
                    };
                    let floor = position.floor();
                    Sample {
                        lower: (floor as i64).max(0).min(last) as usize,
                        upper: (position.ceil() as i64).min(last).max(0) as usize,
                        lerp: position - floor,
                    }
                } else {
                    let position = if self.half_pixel_centers {
                        (o as f32 + 0.5) * scale
                    } else {
                        o as f32 * scale
                    };
                    // roundf rounds halves away from zero, as f32::round does.
                    let index = if self.align_corners {
                        position.round()
                    } else {
                        position.floor()
                    } as i64;
                    let index = index.min(last).max(0) as usize;
                    Sample {
                        lower: index,
                        upper: index,
                        lerp: 0.0,
                    }
                }
            })
            .collect()
    }

    fn output_type(&self, input: &TensorType, size: Option<&Tensor>) -> OpResult<TensorType> {
        self.check()?;
        let size = size
            .ok_or_else(|| {
                OpError::Unsupported("the resize size must be a compile-time constant".into())
            })?
            .to_i64_vec();
        let &[n, h, w, c] = &input.shape[..] else {
            return Err(invalid!("resize needs a 4-D NHWC input, got {input}"));
        };
        let &[height, width] = &size[..] else {
            return Err(invalid!("the resize size {size:?} must be two integers"));
        };
        if height <= 0 || width <= 0 {
            return Err(invalid!("the resize size {size:?} must be positive"));
        }
        if (h == 0 || w == 0) && n * c > 0 {
            return Err(invalid!("cannot resize an empty image {input}"));
        }
        let dtype = if self.bilinear {
            match input.dtype {
                DType::F32 | DType::I32 => DType::F32,
                other => return Err(invalid!("ResizeBilinear does not take {other:?} images")),
            }
        } else {
            input.dtype
        };
        Ok(TensorType::new(
            dtype,
            vec![n, height as usize, width as usize, c],
        ))
    }
}

impl Operator for Resize {
    fn name(&self) -> &'static str {
        if self.bilinear {
            "resize_bilinear"
        } else {
            "resize_nearest"
        }
    }

    fn attributes(&self) -> Attributes {
        Attributes::default()
            .with("align_corners", Attribute::Bool(self.align_corners))
            .with(
                "half_pixel_centers",
                Attribute::Bool(self.half_pixel_centers),
            )
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(2)?;
        let size = inputs.constant(1, "the resize size")?;
        Ok(vec![self.output_type(inputs.ty(0)?, Some(size))?])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let out = self.output_type(&input.tensor_type(), inputs.get(1).copied())?;
        if out.element_count() == 0 {
            return Ok(vec![Tensor::filled(out.dtype, out.shape, 0.0)]);
        }
        let [n, h, w, c] = [
            input.shape[0],
            input.shape[1],
            input.shape[2],
            input.shape[3],
        ];
        let (height, width) = (out.shape[1], out.shape[2]);
        let ys = self.samples(h, height);
        let xs = self.samples(w, width);
        let at = |b: usize, y: usize, x: usize, ch: usize| ((b * h + y) * w + x) * c + ch;
        if !self.bilinear {
            let mut indices = Vec::with_capacity(out.element_count());
            for b in 0..n {
                for y in &ys {
                    for x in &xs {
                        for ch in 0..c {
                            indices.push(at(b, y.lower, x.lower, ch));
                        }
                    }
                }
            }
            return Ok(vec![Tensor {
                shape: out.shape,
                data: crate::ops::shape::gather_data(&input.data, &indices),
            }]);
        }
        let values = input.to_f32_vec();
        let mut result = Vec::with_capacity(out.element_count());
        for b in 0..n {
            for y in &ys {
                for x in &xs {
                    for ch in 0..c {
                        let top_left = values[at(b, y.lower, x.lower, ch)];
                        let top_right = values[at(b, y.lower, x.upper, ch)];
                        let bottom_left = values[at(b, y.upper, x.lower, ch)];
                        let bottom_right = values[at(b, y.upper, x.upper, ch)];
                        let top = top_left + (top_right - top_left) * x.lerp;
                        let bottom = bottom_left + (bottom_right - bottom_left) * x.lerp;
                        result.push(top + (bottom - top) * y.lerp);
                    }
                }
            }
        }
        Ok(vec![Tensor::from_f32(out.shape, result)])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let input_ty = kernel.inputs[0].ty.clone();
        let size = kernel.inputs.get(1).and_then(|i| i.constant.clone());
        let out = self
            .output_type(&input_ty, size.as_deref())
            .map_err(|e| kernel.error(e.to_string()))?;
        if out.element_count() == 0 {
            return Ok(());
        }
        let [n, h, w, c] = [
            input_ty.shape[0],
            input_ty.shape[1],
            input_ty.shape[2],
            input_ty.shape[3],
        ];
        let (height, width) = (out.shape[1], out.shape[2]);
        if input_ty.element_count() > i32::MAX as usize {
            return Err(kernel.error("resize input too large for 32-bit offsets"));
        }
        // Tables of (lower offset, upper offset, weight bits) in elements: rows, then columns.
        let mut table: Vec<u32> = Vec::new();
        for s in self.samples(h, height) {
            table.extend([
                (s.lower * w * c) as u32,
                (s.upper * w * c) as u32,
                s.lerp.to_bits(),
            ]);
        }
        for s in self.samples(w, width) {
            table.extend([(s.lower * c) as u32, (s.upper * c) as u32, s.lerp.to_bits()]);
        }
        let bytes: Vec<u8> = table.iter().flat_map(|v| v.to_le_bytes()).collect();
        let backend = |e: cranelift_module::ModuleError| CodegenError::Backend(e.to_string());
        let data = kernel
            .module
            .declare_anonymous_data(false, false)
            .map_err(backend)?;
        let mut description = DataDescription::new();
        description.define(bytes.into_boxed_slice());
        description.set_align(16);
        kernel
            .module
            .define_data(data, &description)
            .map_err(backend)?;
        let global = kernel
            .module
            .declare_data_in_func(data, kernel.builder.func);
        let tables = kernel.builder.ins().symbol_value(types::I64, global);
        let columns = kernel
            .builder
            .ins()
            .iadd_imm_s(tables, (height * 12) as i64);
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let in_element = input_ty.dtype.size_of();
        let out_element = out.dtype.size_of();
        let bilinear = self.bilinear;
        let integer = input_ty.dtype == DType::I32;
        kernel.for_count(n, &mut |k, b| {
            let image = k.builder.ins().imul_imm_s(b, (h * w * c) as i64);
            let out_image = k.builder.ins().imul_imm_s(b, (height * width * c) as i64);
            k.for_count(height, &mut |k, y| {
                let row = k.builder.ins().imul_imm_s(y, 12);
                let row = k.builder.ins().iadd(tables, row);
                let (y_lower, y_upper, y_lerp) = entry(k, row);
                let top = k.builder.ins().iadd(image, y_lower);
                let bottom = k.builder.ins().iadd(image, y_upper);
                let out_row = k.builder.ins().imul_imm_s(y, (width * c) as i64);
                let out_row = k.builder.ins().iadd(out_image, out_row);
                k.for_count(width, &mut |k, x| {
                    let column = k.builder.ins().imul_imm_s(x, 12);
                    let column = k.builder.ins().iadd(columns, column);
                    let (x_lower, x_upper, x_lerp) = entry(k, column);
                    let destination = k.builder.ins().imul_imm_s(x, c as i64);
                    let destination = k.builder.ins().iadd(out_row, destination);
                    let top_left = k.builder.ins().iadd(top, x_lower);
                    if !bilinear {
                        return copy_pixel(k, input, top_left, output, destination, c, in_element);
                    }
                    let corners = [
                        top_left,
                        k.builder.ins().iadd(top, x_upper),
                        k.builder.ins().iadd(bottom, x_lower),
                        k.builder.ins().iadd(bottom, x_upper),
                    ];
                    let vector_end = if c >= LANES { c / LANES * LANES } else { 0 };
                    let channel = |k: &mut Kernel, ch: Value, lanes: bool| {
                        let (ty, load_ty) = if lanes {
                            (
                                types::F32X4,
                                if integer { types::I32X4 } else { types::F32X4 },
                            )
                        } else {
                            (types::F32, if integer { types::I32 } else { types::F32 })
                        };
                        let mut v = [ch; 4];
                        for (slot, &corner) in v.iter_mut().zip(&corners) {
                            let index = k.builder.ins().iadd(corner, ch);
                            let loaded = k.load(load_ty, input, index, in_element);
                            *slot = if integer {
                                k.builder.ins().fcvt_from_sint(ty, loaded)
                            } else {
                                loaded
                            };
                        }
                        let (xl, yl) = if lanes {
                            (
                                k.builder.ins().splat(ty, x_lerp),
                                k.builder.ins().splat(ty, y_lerp),
                            )
                        } else {
                            (x_lerp, y_lerp)
                        };
                        // The same operations, in the same order and unfused, as TensorFlow.
                        let top = lerp(k, v[0], v[1], xl);
                        let bottom = lerp(k, v[2], v[3], xl);
                        let value = lerp(k, top, bottom, yl);
                        let index = k.builder.ins().iadd(destination, ch);
                        k.store(value, output, index, out_element);
                    };
                    if vector_end > 0 {
                        let start = k.iconst(0);
                        let end = k.iconst(vector_end as i64);
                        k.for_range(start, end, LANES as i64, &mut |k, ch| {
                            channel(k, ch, true);
                            Ok(())
                        })?;
                    }
                    for ch in vector_end..c {
                        let ch = k.iconst(ch as i64);
                        channel(k, ch, false);
                    }
                    Ok(())
                })
            })
        })
    }

    fn flops(&self, _inputs: &[&TensorType], outputs: &[TensorType]) -> u64 {
        if self.bilinear {
            outputs.iter().map(|t| 9 * t.element_count() as u64).sum()
        } else {
            0
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `a + (b - a) * t`, unfused.
fn lerp(kernel: &mut Kernel, a: Value, b: Value, t: Value) -> Value {
    let difference = kernel.builder.ins().fsub(b, a);
    let scaled = kernel.builder.ins().fmul(difference, t);
    kernel.builder.ins().fadd(a, scaled)
}

/// One table entry: lower and upper offsets (as i64) and the weight.
fn entry(kernel: &mut Kernel, at: Value) -> (Value, Value, Value) {
    let lower = kernel.builder.ins().uload32(memory_flags(), at, 0);
    let upper = kernel.builder.ins().uload32(memory_flags(), at, 4);
    let lerp = kernel.builder.ins().load(types::F32, memory_flags(), at, 8);
    (lower, upper, lerp)
}

/// Copies `count` elements of one pixel.
fn copy_pixel(
    kernel: &mut Kernel,
    input: Value,
    source: Value,
    output: Value,
    destination: Value,
    count: usize,
    element: usize,
) -> Result<(), CodegenError> {
    let from = kernel.address(input, source, element);
    let to = kernel.address(output, destination, element);
    crate::ops::shape::copy_bytes(kernel, from, to, count * element)
}

pub fn import_resize(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let a = NodeAttributes::of(node);
    let fail = node_error(node);
    let op = Resize {
        bilinear: node.op == "ResizeBilinear",
        align_corners: a.boolean_or("align_corners", false).map_err(fail)?,
        half_pixel_centers: a.boolean_or("half_pixel_centers", false).map_err(fail)?,
    };
    op.check().map_err(|e| fail(e.to_string()))?;
    Ok(vec![importer.add(node, op, inputs[..2].to_vec())])
}

pub const FAMILY: Family = Family {
    ir: &[
        ("resize_bilinear", Resize::parse_bilinear),
        ("resize_nearest", Resize::parse_nearest),
    ],
    tensorflow: &[
        ("ResizeBilinear", import_resize),
        ("ResizeNearestNeighbor", import_resize),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Graph;
    use tfjsc_proto::tensorflow::{attr_value, AttrValue};

    fn op(bilinear: bool, align_corners: bool, half_pixel_centers: bool) -> Resize {
        Resize {
            bilinear,
            align_corners,
            half_pixel_centers,
        }
    }

    fn lowers(samples: &[Sample]) -> Vec<usize> {
        samples.iter().map(|s| s.lower).collect()
    }

    #[test]
    fn sampling_follows_tensorflow() {
        // Bilinear, legacy, 2 -> 3: positions 0, 2/3, 4/3.
        let s = op(true, false, false).samples(2, 3);
        assert_eq!(lowers(&s), [0, 0, 1]);
        assert_eq!(s.iter().map(|s| s.upper).collect::<Vec<_>>(), [0, 1, 1]);
        assert!((s[1].lerp - 2.0 / 3.0).abs() < 1e-6);
        // Bilinear, half-pixel, 2 -> 4: positions -0.25, 0.25, 0.75, 1.25; the first reads
        // index 0 twice with weight 0.75 (TensorFlow does not clamp the weight).
        let s = op(true, false, true).samples(2, 4);
        assert_eq!(lowers(&s), [0, 0, 0, 1]);
        assert_eq!(s.iter().map(|s| s.upper).collect::<Vec<_>>(), [0, 1, 1, 1]);
        assert_eq!(s[0].lerp, 0.75);
        // Bilinear, align corners, 3 -> 5: positions 0, 0.5, 1, 1.5, 2.
        let s = op(true, true, false).samples(3, 5);
        assert_eq!(lowers(&s), [0, 0, 1, 1, 2]);
        assert_eq!(s[1].lerp, 0.5);
        // Nearest, legacy, 2 -> 4: floor(o / 2).
        assert_eq!(lowers(&op(false, false, false).samples(2, 4)), [0, 0, 1, 1]);
        // Nearest, align corners, 2 -> 3: round(o * 0.5) with halves away from zero.
        assert_eq!(lowers(&op(false, true, false).samples(2, 3)), [0, 1, 1]);
        // Nearest, half-pixel, 2 -> 3: floor((o + 0.5) * 2 / 3).
        assert_eq!(lowers(&op(false, false, true).samples(2, 3)), [0, 1, 1]);
        // Nearest, half-pixel, 3 -> 2: floor((o + 0.5) * 1.5) = 0, 2.
        assert_eq!(lowers(&op(false, false, true).samples(3, 2)), [0, 2]);
    }

    #[test]
    fn bilinear_values_match_tensorflow() {
        let image = Tensor::from_f32(vec![1, 2, 2, 1], vec![1.0, 2.0, 3.0, 4.0]);
        let size = Tensor::from_i32(vec![2], vec![4, 4]);
        let out = op(true, false, true).evaluate(&[&image, &size]).unwrap();
        let first_row: Vec<f32> = out[0].to_f32_vec()[..4].to_vec();
        assert_eq!(first_row, [1.0, 1.25, 1.75, 2.0]);
        assert_eq!(out[0].dtype(), DType::F32);
        let ints = Tensor::from_i32(vec![1, 2, 2, 1], vec![1, 2, 3, 4]);
        let out = op(false, false, false).evaluate(&[&ints, &size]).unwrap();
        assert_eq!(out[0].dtype(), DType::I32);
    }

    fn node(op: &str, attrs: &[(&str, attr_value::Value)]) -> NodeDef {
        NodeDef {
            name: "resize".into(),
            op: op.into(),
            attr: attrs
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        AttrValue {
                            value: Some(v.clone()),
                        },
                    )
                })
                .collect(),
            ..NodeDef::default()
        }
    }

    #[test]
    fn import_reads_both_flags_and_rejects_both_true() {
        let mut graph = Graph::new();
        let x = graph.add_input("x", Some(TensorType::new(DType::F32, vec![1, 2, 2, 3])));
        let size = graph.add_constant("size", Tensor::from_i32(vec![2], vec![4, 4]), None);
        let mut importer = Importer::new(&mut graph);
        let both = node(
            "ResizeBilinear",
            &[
                ("align_corners", attr_value::Value::B(true)),
                ("half_pixel_centers", attr_value::Value::B(true)),
            ],
        );
        let error = import_resize(&mut importer, &both, &[x, size]).unwrap_err();
        assert!(error.to_string().contains("\"resize\""), "{error}");
        assert!(error.to_string().contains("align_corners"), "{error}");
        let half = node(
            "ResizeNearestNeighbor",
            &[("half_pixel_centers", attr_value::Value::B(true))],
        );
        let y = import_resize(&mut importer, &half, &[x, size]).unwrap()[0];
        crate::passes::PIPELINE[0].1(&mut graph).unwrap();
        assert_eq!(graph.ty(y), &TensorType::new(DType::F32, vec![1, 4, 4, 3]));
        let (_, produced) = graph.producer(y).unwrap();
        let resize = produced.op.as_any().downcast_ref::<Resize>().unwrap();
        assert_eq!(resize, &op(false, false, true));
        let wrong = node(
            "ResizeBilinear",
            &[("align_corners", attr_value::Value::I(1))],
        );
        let mut importer = Importer::new(&mut graph);
        assert!(import_resize(&mut importer, &wrong, &[x, size]).is_err());
    }

    /// Every op of the data-movement families: attributes round-trip through the text parser.
    #[test]
    fn attributes_round_trip() {
        use crate::ops::shape::*;
        let ops: Vec<Arc<dyn Operator>> = vec![
            Arc::new(op(true, false, true)),
            Arc::new(op(false, true, false)),
            Arc::new(Slice),
            Arc::new(Split {
                axis: -1,
                count: 3,
                sizes: vec![1, -1, 2],
                squeeze: false,
            }),
            Arc::new(Split {
                axis: 0,
                count: 2,
                sizes: vec![],
                squeeze: false,
            }),
            Arc::new(Split {
                axis: -2,
                count: 4,
                sizes: vec![],
                squeeze: true,
            }),
            Arc::new(Tile { broadcast: false }),
            Arc::new(Tile { broadcast: true }),
            Arc::new(DepthSpace {
                block: 3,
                to_space: true,
            }),
            Arc::new(DepthSpace {
                block: 2,
                to_space: false,
            }),
            Arc::new(SpaceBatch { to_batch: true }),
            Arc::new(SpaceBatch { to_batch: false }),
            Arc::new(Reverse),
            Arc::new(MirrorPad { symmetric: true }),
            Arc::new(MirrorPad { symmetric: false }),
            Arc::new(SizeOf { dtype: DType::I64 }),
            Arc::new(FillLike { value: 1.0 }),
        ];
        for op in ops {
            let parsed = crate::ops::parse_operator(op.name(), &op.attributes()).unwrap();
            assert_eq!(parsed.name(), op.name());
            assert_eq!(parsed.attributes(), op.attributes(), "{}", op.name());
            assert_eq!(format!("{parsed:?}"), format!("{op:?}"));
        }
    }

    /// The text form prints and parses the new ops (a graph round trip, as in `ir::text`).
    #[test]
    fn text_form_round_trips() {
        let source = "graph {\n  input %0 \"x\" : f32[1,2,2,4]\n  const %1 [4, 6] : i32[2]\n  %2 = resize_bilinear(%0, %1) {align_corners=false, half_pixel_centers=true} : ? @\"r\"\n  %3 = depth_to_space(%2) {block_size=2} : ? @\"d\"\n  %4, %5 = split(%3) {axis=2, count=2, sizes=[3, -1]} : ?, ? @\"s\"\n  output \"y\" %4\n  output \"z\" %5\n}\n";
        let graph = match crate::ir::text::parse(source) {
            Ok(graph) => graph,
            Err(error) => panic!("{}", error.message),
        };
        let printed = crate::ir::text::print(&graph);
        let reparsed = crate::ir::text::parse(&printed)
            .map_err(|e| e.message)
            .unwrap();
        assert_eq!(crate::ir::text::print(&reparsed), printed);
        assert!(printed.contains("half_pixel_centers=true"), "{printed}");
        assert!(printed.contains("sizes=[3, -1]"), "{printed}");
    }
}
