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
