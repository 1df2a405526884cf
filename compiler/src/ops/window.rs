//! Window geometry shared by convolution and pooling: padding modes (TensorFlow's SAME, VALID
//! and EXPLICIT) and the sizes and pads they resolve to on an NHWC input.

use std::ops::Range;

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
    /// This padding with a producer's NHWC padding `pads` (per axis) added, when the spatial
    /// pads can join it: around valid or explicit padding (`same` depends on the input's size),
    /// and with no padding of the batch or channels.
    pub fn plus_pads(&self, pads: &[(usize, usize)]) -> Option<Padding> {
        let &[(0, 0), (top, bottom), (left, right), (0, 0)] = pads else {
            return None;
        };
        let [t, b, l, r] = match self {
            Padding::Valid => [0; 4],
            Padding::Explicit(own) => *own,
            Padding::Same => return None,
        };
        Some(Padding::Explicit([
            t + top,
            b + bottom,
            l + left,
            r + right,
        ]))
    }

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
    /// The output positions along `axis` (0 rows, 1 columns) in spans of consecutive positions
    /// whose windows read the same filter taps inside the input (the rest fall in the padding):
    /// `(positions, taps)`, in order, covering every output position. Without padding this is
    /// one span with every tap; with it, the interior is one span and each border position
    /// usually its own.
    pub fn tap_spans(&self, axis: usize) -> Vec<(Range<usize>, Range<usize>)> {
        let pad = [self.pads[0], self.pads[2]][axis];
        let (input, kernel) = (self.input[axis], self.kernel[axis]);
        let (stride, dilation) = (self.strides[axis], self.dilations[axis]);
        let mut spans: Vec<(Range<usize>, Range<usize>)> = Vec::new();
        for position in 0..self.output[axis] {
            // Tap k reads input position `position·stride + k·dilation - pad`: inside from the
            // first k that reaches 0 up to the last below `input` (a range, as it grows with k).
            let start = position * stride;
            let first = pad.saturating_sub(start).div_ceil(dilation).min(kernel);
            let end = if input + pad > start {
                ((input + pad - start - 1) / dilation + 1).min(kernel)
            } else {
                0
            };
            let taps = first..end.max(first);
            match spans.last_mut() {
                Some((positions, last)) if *last == taps => positions.end = position + 1,
                _ => spans.push((position..position + 1, taps)),
            }
        }
        spans
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every output position's span holds exactly the taps whose input position is inside,
    /// found by testing each tap; spans are in order, cover every position and differ from
    /// their neighbours.
    #[test]
    fn tap_spans_hold_the_taps_inside_the_input() {
        let mut checked = 0;
        for input in [1, 2, 5, 9, 12] {
            for kernel in [1, 2, 3, 5, 9] {
                for stride in [1, 2, 3] {
                    for dilation in [1, 2, 6] {
                        for (top, bottom) in [(0, 0), (1, 1), (2, 0), (0, 3), (4, 5)] {
                            let padding = Padding::Explicit([top, bottom, 0, 0]);
                            let Ok(window) = Window::new(
                                &[1, input, 1, 1],
                                [kernel, 1],
                                [stride, 1],
                                [dilation, 1],
                                &padding,
                            ) else {
                                continue;
                            };
                            let spans = window.tap_spans(0);
                            let mut next = 0;
                            for (index, (positions, taps)) in spans.iter().enumerate() {
                                assert_eq!(positions.start, next, "{window:?}");
                                assert!(index == 0 || spans[index - 1].1 != *taps, "{window:?}");
                                for position in positions.clone() {
                                    for tap in 0..kernel {
                                        let at = (position * stride + tap * dilation) as isize
                                            - top as isize;
                                        let inside = (0..input as isize).contains(&at);
                                        assert_eq!(taps.contains(&tap), inside, "{window:?}");
                                    }
                                }
                                next = positions.end;
                            }
                            assert_eq!(next, window.output[0], "{window:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 500, "only {checked} geometries");
    }
}
