//! Window geometry shared by convolution and pooling: padding modes (TensorFlow's SAME, VALID
//! and EXPLICIT) and the sizes and pads they resolve to on an NHWC input.

use crate::invalid;
use crate::ops::importer::NodeAttributes;
use crate::ops::{Attribute, Attributes, OpResult};

/// How a window op pads its input.
#[derive(Clone, Debug, PartialEq)]
pub enum Padding {
    Same,
    Valid,
    /// top, bottom, left, right
    Explicit([usize; 4]),
}

impl Padding {
    pub fn text(&self) -> String {
        match self {
            Padding::Same => "same".into(),
            Padding::Valid => "valid".into(),
            Padding::Explicit(_) => "explicit".into(),
        }
    }

    pub fn parse(attributes: &Attributes) -> OpResult<Padding> {
        Ok(match attributes.string("padding")? {
            "same" => Padding::Same,
            "valid" => Padding::Valid,
            "explicit" => {
                let pads = attributes.ints("pads")?;
                if pads.len() != 4 || pads.iter().any(|&p| p < 0) {
                    return Err(invalid!("pads must be four non-negative integers"));
                }
                Padding::Explicit([
                    pads[0] as usize,
                    pads[1] as usize,
                    pads[2] as usize,
                    pads[3] as usize,
                ])
            }
            other => return Err(invalid!("unknown padding `{other}`")),
        })
    }

    pub fn add_to(&self, attributes: Attributes) -> Attributes {
        let attributes = attributes.with("padding", Attribute::Str(self.text()));
        match self {
            Padding::Explicit(p) => attributes.with(
                "pads",
                Attribute::Ints(p.iter().map(|&v| v as i64).collect()),
            ),
            _ => attributes,
        }
    }

    /// Reads TensorFlow's `padding` (+ `explicit_paddings`, NHWC) attributes.
    pub fn from_tf(attributes: &NodeAttributes) -> Result<Padding, String> {
        match attributes.string("padding")?.as_str() {
            "SAME" => Ok(Padding::Same),
            "VALID" => Ok(Padding::Valid),
            "EXPLICIT" => {
                let p = attributes.ints("explicit_paddings")?;
                if p.len() != 8 || p.iter().any(|&v| v < 0) {
                    return Err(format!(
                        "explicit_paddings must hold 8 non-negative values, got {p:?}"
                    ));
                }
                Ok(Padding::Explicit([
                    p[2] as usize,
                    p[3] as usize,
                    p[4] as usize,
                    p[5] as usize,
                ]))
            }
            other => Err(format!("padding {other:?} is not supported")),
        }
    }

    /// Output size and padding before/after along one axis.
    pub fn resolve(
        &self,
        input: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        axis: usize,
    ) -> OpResult<(usize, usize, usize)> {
        let effective = (kernel - 1) * dilation + 1;
        let (output, before, after) = match self {
            Padding::Same => {
                let output = input.div_ceil(stride);
                let total = ((output.max(1) - 1) * stride + effective).saturating_sub(input);
                (output, total / 2, total - total / 2)
            }
            Padding::Valid => {
                if input < effective {
                    return Err(invalid!(
                        "window {effective} is larger than the input {input}"
                    ));
                }
                ((input - effective) / stride + 1, 0, 0)
            }
            Padding::Explicit(pads) => {
                let (before, after) = (pads[axis * 2], pads[axis * 2 + 1]);
                let padded = input + before + after;
                if padded < effective {
                    return Err(invalid!(
                        "window {effective} is larger than the padded input {padded}"
                    ));
                }
                ((padded - effective) / stride + 1, before, after)
            }
        };
        Ok((output, before, after))
    }
}

/// Window geometry of a convolution or pooling on a NHWC input.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub batch: usize,
    pub input: [usize; 2],
    pub channels: usize,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub output: [usize; 2],
    /// top, bottom, left, right
    pub pads: [usize; 4],
}

impl Window {
    /// Per axis (rows, columns), the output positions `[first, end)` whose whole window lies
    /// inside the input, reading no padding.
    pub fn interior(&self) -> [(usize, usize); 2] {
        let [top, _, left, _] = self.pads;
        [0, 1].map(|axis| {
            let pad = [top, left][axis];
            let (output, stride) = (self.output[axis], self.strides[axis]);
            let first = pad.div_ceil(stride).min(output);
            let reach = (self.kernel[axis] - 1) * self.dilations[axis];
            let end = if self.input[axis] + pad > reach {
                ((self.input[axis] - 1 + pad - reach) / stride + 1).min(output)
            } else {
                0
            };
            (first, end.max(first))
        })
    }

    pub fn new(
        input: &[usize],
        kernel: [usize; 2],
        strides: [usize; 2],
        dilations: [usize; 2],
        padding: &Padding,
    ) -> OpResult<Window> {
        if input.len() != 4 {
            return Err(invalid!(
                "input must be NHWC (rank 4), got rank {}",
                input.len()
            ));
        }
        if strides.contains(&0) || dilations.contains(&0) || kernel.contains(&0) {
            return Err(invalid!(
                "strides, dilations and window sizes must be positive"
            ));
        }
        let (oh, top, bottom) =
            padding.resolve(input[1], kernel[0], strides[0], dilations[0], 0)?;
        let (ow, left, right) =
            padding.resolve(input[2], kernel[1], strides[1], dilations[1], 1)?;
        Ok(Window {
            batch: input[0],
            input: [input[1], input[2]],
            channels: input[3],
            kernel,
            strides,
            dilations,
            output: [oh, ow],
            pads: [top, bottom, left, right],
        })
    }

    pub fn padded(&self) -> [usize; 2] {
        [
            self.input[0] + self.pads[0] + self.pads[1],
            self.input[1] + self.pads[2] + self.pads[3],
        ]
    }

    /// Bytes of the f32 input with its padding (the padded copy some kernels make).
    pub fn padded_bytes(&self) -> usize {
        let [ph, pw] = self.padded();
        self.batch * ph * pw * self.channels * 4
    }

    pub fn has_padding(&self) -> bool {
        self.pads.iter().any(|&p| p > 0)
    }
}
