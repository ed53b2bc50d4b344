//! The vocabulary shared by preprocessing and every backend: what an engine's image input looks
//! like (size, layout, element type) and a mutable view of the host buffer preprocessing fills.
//!
//! ONNX Runtime takes NCHW float32; the Vitis AI DPU takes NHWC int8 quantised with a power-of-two
//! scale; TensorRT takes NCHW float32 even for int8 engines. Keeping the description here lets
//! preprocessing write straight into an engine's own (reused) input buffer for any of them.

/// Memory order of the image input (batch 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Planes: all R, then all G, then all B.
    Nchw,
    /// Interleaved: R, G, B per pixel.
    Nhwc,
}

/// Element type the engine's input buffer holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputElement {
    F32,
    /// Signed 8-bit: `q = clamp(round(x * scale), -128, 127)` where `x` is the normalised value
    /// (the DPU's `scale = 2^fix_point`).
    I8 {
        scale: f32,
    },
}

/// What preprocessing must produce for an engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    /// 3 (RGB) or 1 (grey: the mean of R, G, B after normalisation is not used; luma is).
    pub channels: u32,
    pub layout: Layout,
    pub element: InputElement,
}

impl InputSpec {
    /// Number of elements of the input tensor (batch 1).
    pub fn len(&self) -> usize {
        self.width as usize * self.height as usize * self.channels as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A mutable view of an engine's host input buffer.
#[derive(Debug)]
pub enum InputBufMut<'a> {
    F32(&'a mut [f32]),
    I8(&'a mut [i8]),
}

impl InputBufMut<'_> {
    pub fn len(&self) -> usize {
        match self {
            InputBufMut::F32(b) => b.len(),
            InputBufMut::I8(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A shape given on the command line (`--input-shape 1x3x48x192`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape(pub Vec<i64>);

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Shape, String> {
        parse_shape(s).map(Shape)
    }
}

/// Parses a tensor shape as a user writes it: `1x3x48x192` (or `1,3,48,192`).
pub fn parse_shape(text: &str) -> Result<Vec<i64>, String> {
    let dims: Result<Vec<i64>, String> = text
        .split(['x', 'X', ','])
        .map(|d| {
            let d = d.trim();
            match d.parse::<i64>() {
                Ok(v) if v > 0 => Ok(v),
                _ => Err(format!(
                    "'{text}' is not a shape like 1x3x224x224 ('{d}' is not a positive number)"
                )),
            }
        })
        .collect();
    let dims = dims?;
    check_shape(&dims)?;
    Ok(dims)
}

/// A pinned shape: 1 to 8 positive dims, the product within 2^31 elements.
pub fn check_shape(dims: &[i64]) -> Result<(), String> {
    let shown = || {
        dims.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("x")
    };
    if dims.is_empty() || dims.len() > 8 {
        return Err(format!("{} dims (1 to 8 expected)", dims.len()));
    }
    if let Some(d) = dims.iter().find(|d| **d <= 0) {
        return Err(format!(
            "{} has a dim {d}; every dim must be positive",
            shown()
        ));
    }
    let total = dims.iter().try_fold(1i64, |a, d| a.checked_mul(*d));
    if total.is_none_or(|t| t > 1 << 31) {
        return Err(format!("{} is more than 2^31 elements", shown()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_as_written() {
        assert_eq!(parse_shape("1x3x48x192"), Ok(vec![1, 3, 48, 192]));
        assert_eq!(parse_shape("1, 3, 8, 8"), Ok(vec![1, 3, 8, 8]));
        assert!(parse_shape("1x3x?x192").is_err());
        assert!(parse_shape("1x0x8").is_err());
        assert!(parse_shape("").is_err());
        assert!(parse_shape("99999x99999x99999").is_err());
    }
}
