//! Turning a camera frame into exactly what an engine's input tensor expects.
//!
//! This runs once per frame on the real-time thread, so it is built around two rules: nothing
//! allocates in steady state, and no work is spent on pixels the model never sees. Frames come
//! in their source's own layout (YUYV, NV12, I420, RGB, ...; see [`crate::source::frame`]) and
//! are resized *in that layout*, plane by plane, straight down to the model's size; only then is
//! the small picture converted to RGB and normalised, row by row, into the engine's own input
//! buffer. A 1080p frame is never converted as a whole (that alone cost 9-10 ms a frame), and a
//! crop or a letterbox reads only the source pixels it keeps.
//!
//! Everything that depends on the frame geometry and layout (placement, resampling weights,
//! scratch rows) is computed once per (size, layout) in [`plan`] (or ahead of time with
//! [`Preprocessor::prepare`]); normalisation tables are made in [`Preprocessor::new`].
//!
//! Resampling is separable, with the antialiasing kernels of Pillow and `fast_image_resize`
//! (the kernel widens when downscaling) or, for models trained on OpenCV's pipeline, OpenCV's
//! fixed two taps ([`Filter`]: users must get the pixels their model was trained on), in fixed
//! point ([`taps`]); a filter is only a choice of weights made at plan time; the weights of subsampled
//! chroma are folded so that the result equals resizing the frame ffmpeg would convert to RGB,
//! within rounding ([`taps`] says why that is exact in real arithmetic). The per-frame work
//! runs in four small kernels with SIMD versions for AVX2, SSE4.1 and NEON ([`kernels`]), which
//! give bit-identical results to their portable versions. An RGB frame that already has the
//! size the model wants is not resampled at all: its pixels are normalised straight from the
//! frame buffer.
//!
//! Values follow torchvision's convention: `x = (v / 255 - mean[c]) / std[c]` per channel, grey
//! inputs use BT.601 luma, and int8 inputs are quantised as `clamp(round(x * scale), -128, 127)`.

use std::fmt;
use std::str::FromStr;

use crate::invalid_key::InvalidKey;
use crate::source::{Frame, PixelFormat};
use crate::tensor::{InputBufMut, InputElement, InputSpec, Layout};

pub mod kernels;
mod layout;
mod plan;
#[cfg(target_arch = "aarch64")]
mod simd_neon;
#[cfg(target_arch = "x86_64")]
mod simd_x86;
mod taps;

pub use kernels::Isa;
use plan::{Dest, Plan};

/// CIFAR-10's per-channel mean (R, G, B), the default normalisation.
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// CIFAR-10's per-channel standard deviation (R, G, B).
pub const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];
/// BT.601 luma weights for R, G, B (used when the model takes one channel).
pub const LUMA_BT601: [f32; 3] = [0.299, 0.587, 0.114];

/// How a frame of another aspect ratio is fitted to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeMode {
    /// Scale each axis independently to the model size (distorts the aspect ratio).
    #[default]
    Stretch,
    /// Scale to cover the model size, keeping the aspect ratio, and keep the middle.
    CenterCrop,
    /// Scale to fit inside the model size, keeping the aspect ratio, and pad around it with
    /// [`PreprocessOptions::fill`].
    Letterbox,
}

impl ResizeMode {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            ResizeMode::Stretch => "stretch",
            ResizeMode::CenterCrop => "center-crop",
            ResizeMode::Letterbox => "letterbox",
        }
    }
}

impl FromStr for ResizeMode {
    type Err = PreprocessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stretch" => Ok(ResizeMode::Stretch),
            "center-crop" | "centre-crop" | "center_crop" | "crop" => Ok(ResizeMode::CenterCrop),
            "letterbox" => Ok(ResizeMode::Letterbox),
            _ => Err(PreprocessError::UnknownResizeMode {
                value: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for ResizeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order of the colour channels the model takes. Pictures are converted to RGB; models
/// converted from Caffe (and many Vitis AI model-zoo models) take BGR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

impl ChannelOrder {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelOrder::Rgb => "rgb",
            ChannelOrder::Bgr => "bgr",
        }
    }

    /// For each model channel, the RGB channel it takes.
    fn sources(self) -> [usize; 3] {
        match self {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        }
    }
}

impl FromStr for ChannelOrder {
    type Err = PreprocessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rgb" => Ok(ChannelOrder::Rgb),
            "bgr" => Ok(ChannelOrder::Bgr),
            _ => Err(PreprocessError::UnknownChannelOrder {
                value: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for ChannelOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resampling kernel. The Pillow-style kernels (`Box` to `Lanczos3`) widen with the scale factor
/// when downscaling (antialiasing), as Pillow's `Image.resize` and `fast_image_resize`'s
/// `Convolution` do; `Nearest` is Pillow's `NEAREST`. The two OpenCV filters reproduce
/// `cv2.resize` for models trained on OpenCV's pipeline: fixed support (no antialiasing, so a
/// 4x downscale reads 2 of every 4 source pixels, as OpenCV does), OpenCV's own sample positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Pillow `NEAREST`: the pixel under each output pixel's centre, `floor((i + 0.5) * scale)`
    /// with the position summed step by step as Pillow does (an exact `.0` may round down).
    Nearest,
    Box,
    /// Pillow `BILINEAR`: triangle kernel, widened when downscaling.
    #[default]
    Bilinear,
    Hamming,
    CatmullRom,
    Mitchell,
    Lanczos3,
    /// OpenCV `INTER_LINEAR`: the two source pixels around `(i + 0.5) * scale - 0.5`, edges
    /// clamped; never widened.
    BilinearOpenCv,
    /// OpenCV `INTER_NEAREST`: `floor(i * scale)` (the top-left, not the centre, of each output
    /// pixel: it differs from Pillow's `NEAREST` by up to a pixel).
    NearestOpenCv,
}

impl Filter {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::Nearest => "nearest",
            Filter::Box => "box",
            Filter::Bilinear => "bilinear",
            Filter::Hamming => "hamming",
            Filter::CatmullRom => "catmull-rom",
            Filter::Mitchell => "mitchell",
            Filter::Lanczos3 => "lanczos3",
            Filter::BilinearOpenCv => "bilinear-opencv",
            Filter::NearestOpenCv => "nearest-opencv",
        }
    }

    /// Whether the kernel widens with the scale when downscaling (Pillow's convolution).
    pub(crate) fn antialiased(self) -> bool {
        !matches!(
            self,
            Filter::Nearest | Filter::BilinearOpenCv | Filter::NearestOpenCv
        )
    }

    /// Kernel radius in source pixels at scale 1.
    pub(crate) fn support(self) -> f64 {
        match self {
            Filter::Nearest | Filter::Box | Filter::NearestOpenCv => 0.5,
            Filter::Bilinear | Filter::Hamming | Filter::BilinearOpenCv => 1.0,
            Filter::CatmullRom | Filter::Mitchell => 2.0,
            Filter::Lanczos3 => 3.0,
        }
    }

    /// Kernel weight at distance `x` (in scaled source pixels) from the sample centre.
    pub(crate) fn weight(self, x: f64) -> f64 {
        let a = x.abs();
        match self {
            Filter::Nearest | Filter::Box | Filter::NearestOpenCv => {
                f64::from(u8::from((-0.5..0.5).contains(&x)))
            }
            Filter::Bilinear | Filter::BilinearOpenCv => (1.0 - a).max(0.0),
            Filter::Hamming if a >= 1.0 => 0.0,
            Filter::Hamming => sinc(x) * (0.46 + 0.54 * (std::f64::consts::PI * x).cos()),
            Filter::CatmullRom => cubic(a, 0.0, 0.5),
            Filter::Mitchell => cubic(a, 1.0 / 3.0, 1.0 / 3.0),
            Filter::Lanczos3 if a >= 3.0 => 0.0,
            Filter::Lanczos3 => sinc(x) * sinc(x / 3.0),
        }
    }
}

impl FromStr for Filter {
    type Err = PreprocessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nearest" => Ok(Filter::Nearest),
            "box" => Ok(Filter::Box),
            "bilinear" => Ok(Filter::Bilinear),
            "hamming" => Ok(Filter::Hamming),
            "catmull-rom" | "catmullrom" | "bicubic" => Ok(Filter::CatmullRom),
            "mitchell" => Ok(Filter::Mitchell),
            "lanczos3" | "lanczos" => Ok(Filter::Lanczos3),
            "bilinear-opencv" | "opencv-bilinear" | "inter-linear" => Ok(Filter::BilinearOpenCv),
            "nearest-opencv" | "opencv-nearest" | "inter-nearest" => Ok(Filter::NearestOpenCv),
            _ => Err(PreprocessError::UnknownFilter {
                value: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Mitchell–Netravali family of cubics (`b = 0, c = 0.5` is Catmull–Rom), for `a = |x|`.
fn cubic(a: f64, b: f64, c: f64) -> f64 {
    if a < 1.0 {
        ((12.0 - 9.0 * b - 6.0 * c) * a.powi(3)
            + (-18.0 + 12.0 * b + 6.0 * c) * a.powi(2)
            + (6.0 - 2.0 * b))
            / 6.0
    } else if a < 2.0 {
        ((-b - 6.0 * c) * a.powi(3)
            + (6.0 * b + 30.0 * c) * a.powi(2)
            + (-12.0 * b - 48.0 * c) * a
            + (8.0 * b + 24.0 * c))
            / 6.0
    } else {
        0.0
    }
}

/// Colour of the letterbox padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fill {
    /// The normalisation mean, so padding normalises to exactly 0 (int8: 0).
    #[default]
    Mean,
    /// A fixed RGB8 colour (e.g. `[0, 0, 0]` for black, `[114, 114, 114]` as in YOLO),
    /// normalised like any pixel.
    Rgb([u8; 3]),
}

/// Where a letterboxed picture sits in the model input, on each axis: at the start (left, top),
/// centred, or at the end (right, bottom). PaddleOCR pads on the right (`top-left`); YOLO
/// centres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Align {
    pub x: Edge,
    pub y: Edge,
}

/// One axis of an [`Align`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Edge {
    /// Left or top: the padding all after the picture.
    Start,
    /// The padding split, the odd pixel after the picture.
    #[default]
    Center,
    /// Right or bottom: the padding all before the picture.
    End,
}

impl Edge {
    /// Offset of a picture `len` long in `space`, `len <= space`.
    pub fn offset(self, len: usize, space: usize) -> usize {
        let slack = space.saturating_sub(len);
        match self {
            Edge::Start => 0,
            Edge::Center => slack / 2,
            Edge::End => slack,
        }
    }
}

impl Align {
    pub const CENTER: Align = Align {
        x: Edge::Center,
        y: Edge::Center,
    };
    pub const TOP_LEFT: Align = Align {
        x: Edge::Start,
        y: Edge::Start,
    };

    /// The name used in the configuration file (`center`, `top-left`, `right`, ...).
    pub fn as_str(self) -> &'static str {
        match (self.y, self.x) {
            (Edge::Center, Edge::Center) => "center",
            (Edge::Start, Edge::Start) => "top-left",
            (Edge::Start, Edge::Center) => "top",
            (Edge::Start, Edge::End) => "top-right",
            (Edge::Center, Edge::Start) => "left",
            (Edge::Center, Edge::End) => "right",
            (Edge::End, Edge::Start) => "bottom-left",
            (Edge::End, Edge::Center) => "bottom",
            (Edge::End, Edge::End) => "bottom-right",
        }
    }
}

impl FromStr for Align {
    type Err = PreprocessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let word = s.trim().to_ascii_lowercase().replace('_', "-");
        let (y, x) = match word.as_str() {
            "center" | "centre" => (Edge::Center, Edge::Center),
            "top-left" | "left-top" => (Edge::Start, Edge::Start),
            "top" => (Edge::Start, Edge::Center),
            "top-right" | "right-top" => (Edge::Start, Edge::End),
            "left" => (Edge::Center, Edge::Start),
            "right" => (Edge::Center, Edge::End),
            "bottom-left" | "left-bottom" => (Edge::End, Edge::Start),
            "bottom" => (Edge::End, Edge::Center),
            "bottom-right" | "right-bottom" => (Edge::End, Edge::End),
            _ => {
                return Err(PreprocessError::UnknownAlign {
                    value: s.to_string(),
                });
            }
        };
        Ok(Align { x, y })
    }
}

impl fmt::Display for Align {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `preprocess.fill` as written: `"mean"` or `[r, g, b]` (read as numbers so that `114.5` or
/// `300` get a message naming the key, not a parse error).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(
    untagged,
    expecting = "\"mean\" or three integers [r, g, b] in 0..=255"
)]
pub enum RawFill {
    Word(String),
    Rgb(Vec<f64>),
}

impl RawFill {
    fn check(self) -> Result<Fill, InvalidKey> {
        let key = "preprocess.fill";
        match self {
            RawFill::Word(w) if w.trim().eq_ignore_ascii_case("mean") => Ok(Fill::Mean),
            RawFill::Word(w) => Err(InvalidKey::new(
                key,
                format!("'{w}' is not \"mean\" or [r, g, b] (0..=255 each)"),
            )),
            RawFill::Rgb(v) => {
                let bad = || {
                    InvalidKey::new(
                        key,
                        format!("{v:?} is not three integers [r, g, b] in 0..=255"),
                    )
                };
                let rgb = <[f64; 3]>::try_from(v.as_slice()).map_err(|_| bad())?;
                if rgb
                    .iter()
                    .any(|c| !(c.fract() == 0.0 && (0.0..=255.0).contains(c)))
                {
                    return Err(bad());
                }
                Ok(Fill::Rgb(rgb.map(|c| c as u8)))
            }
        }
    }
}

/// How frames are fitted and normalised. `Default` is stretch, bilinear, CIFAR-10 statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreprocessOptions {
    pub resize: ResizeMode,
    /// Per-channel mean (R, G, B) on the 0..1 scale; grey inputs use `mean[0]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation (R, G, B) on the 0..1 scale; grey inputs use `std[0]`.
    pub std: [f32; 3],
    pub filter: Filter,
    /// Letterbox padding colour.
    pub fill: Fill,
    /// Where the letterboxed picture sits (centred by default).
    pub align: Align,
    /// Channel order of the model input; `mean`/`std` stay in R, G, B order either way.
    pub channel_order: ChannelOrder,
}

impl Default for PreprocessOptions {
    fn default() -> Self {
        PreprocessOptions {
            resize: ResizeMode::Stretch,
            mean: CIFAR10_MEAN,
            std: CIFAR10_STD,
            filter: Filter::Bilinear,
            fill: Fill::Mean,
            align: Align::CENTER,
            channel_order: ChannelOrder::Rgb,
        }
    }
}

/// `[preprocess]` as written.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPreprocess {
    pub resize: Option<String>,
    /// Three values (R, G, B); a list is read whole so a fourth value is an error, not ignored.
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
    /// `rgb` (default) or `bgr`.
    pub channel_order: Option<String>,
    /// A [`Filter`] name; `bilinear` (Pillow's, antialiased) by default.
    pub filter: Option<String>,
    /// Letterbox padding: `"mean"` (default: pads normalise to 0) or `[r, g, b]`.
    pub fill: Option<RawFill>,
    /// Letterbox alignment: an [`Align`] name; `center` by default.
    pub align: Option<String>,
}

impl RawPreprocess {
    /// Checks the section; an error names its key.
    pub fn check(self) -> Result<PreprocessOptions, InvalidKey> {
        let defaults = PreprocessOptions::default();
        let resize = match self.resize.as_deref() {
            None => defaults.resize,
            Some(s) => s.parse().map_err(|e: PreprocessError| {
                InvalidKey::new("preprocess.resize", e.to_string())
            })?,
        };
        let channel_order = match self.channel_order.as_deref() {
            None => defaults.channel_order,
            Some(s) => s.parse().map_err(|e: PreprocessError| {
                InvalidKey::new("preprocess.channel_order", e.to_string())
            })?,
        };
        let filter = match self.filter.as_deref() {
            None => defaults.filter,
            Some(s) => s.parse().map_err(|e: PreprocessError| {
                InvalidKey::new("preprocess.filter", e.to_string())
            })?,
        };
        let align = match self.align.as_deref() {
            None => defaults.align,
            Some(s) => s
                .parse()
                .map_err(|e: PreprocessError| InvalidKey::new("preprocess.align", e.to_string()))?,
        };
        let fill = match self.fill {
            None => defaults.fill,
            Some(f) => f.check()?,
        };
        // Padding exists only in a letterbox: set elsewhere, these would silently do nothing.
        if resize != ResizeMode::Letterbox {
            if align != Align::CENTER {
                return Err(InvalidKey::new(
                    "preprocess.align",
                    format!(
                        "'{align}' places a letterboxed picture, but preprocess.resize is '{resize}' (set resize = \"letterbox\" or remove align)"
                    ),
                ));
            }
            if fill != Fill::Mean {
                return Err(InvalidKey::new(
                    "preprocess.fill",
                    format!(
                        "pads a letterboxed picture, but preprocess.resize is '{resize}' (set resize = \"letterbox\" or remove fill)"
                    ),
                ));
            }
        }
        let three = |key: &'static str, v: Option<Vec<f32>>, default: [f32; 3]| match v {
            None => Ok(default),
            Some(v) => <[f32; 3]>::try_from(v.as_slice()).map_err(|_| {
                InvalidKey::new(
                    key,
                    format!("{v:?} has {} values, not 3 (R, G, B)", v.len()),
                )
            }),
        };
        let opts = PreprocessOptions {
            resize,
            mean: three("preprocess.mean", self.mean, defaults.mean)?,
            std: three("preprocess.std", self.std, defaults.std)?,
            channel_order,
            filter,
            fill,
            align,
        };
        // The same check the preprocessor makes when it is built, so check-config and run agree.
        validate_options(&opts).map_err(|e| match e {
            PreprocessError::BadOption {
                option: "mean",
                reason,
            } => InvalidKey::new("preprocess.mean", reason),
            PreprocessError::BadOption { reason, .. } => InvalidKey::new("preprocess.std", reason),
            other => InvalidKey::new("preprocess.std", other.to_string()),
        })?;
        Ok(opts)
    }
}

/// An [`InputSpec`] rendered for messages, e.g. `32x32x3 NCHW f32`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpecName(pub InputSpec);

impl fmt::Display for SpecName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        let layout = match s.layout {
            Layout::Nchw => "NCHW",
            Layout::Nhwc => "NHWC",
        };
        write!(f, "{}x{}x{} {layout} ", s.width, s.height, s.channels)?;
        match s.element {
            InputElement::F32 => f.write_str("f32"),
            InputElement::I8 { scale } => write!(f, "int8 (scale {scale})"),
        }
    }
}

/// Errors of building a preprocessor and of preprocessing one frame. Each names the model input
/// (its spec) or the frame it concerns.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("model input {spec}: {reason}")]
    BadSpec { spec: SpecName, reason: String },
    #[error("preprocessing option {option}: {reason}")]
    BadOption {
        option: &'static str,
        reason: String,
    },
    #[error("input buffer for model input {spec}: expected {expected} elements, got {actual}")]
    OutputLength {
        spec: SpecName,
        expected: usize,
        actual: usize,
    },
    #[error(
        "input buffer for model input {spec}: expected {expected} elements, got {actual} elements"
    )]
    OutputKind {
        spec: SpecName,
        expected: &'static str,
        actual: &'static str,
    },
    #[error("frame {seq} ({width}x{height} {format}): expected {expected} bytes, got {actual}")]
    FrameSize {
        seq: u64,
        width: u32,
        height: u32,
        format: PixelFormat,
        expected: usize,
        actual: usize,
    },
    #[error("frame {seq} is empty ({width}x{height})")]
    EmptyFrame { seq: u64, width: u32, height: u32 },
    #[error("unknown resize mode '{value}' (expected stretch, center-crop or letterbox)")]
    UnknownResizeMode { value: String },
    #[error(
        "unknown letterbox alignment '{value}' (expected center, top-left, top, top-right, left, right, bottom-left, bottom or bottom-right)"
    )]
    UnknownAlign { value: String },
    #[error("unknown channel order '{value}' (expected rgb or bgr)")]
    UnknownChannelOrder { value: String },
    #[error(
        "unknown resize filter '{value}' (expected nearest, box, bilinear, hamming, catmull-rom, mitchell, lanczos3, bilinear-opencv or nearest-opencv)"
    )]
    UnknownFilter { value: String },
}

/// Converts frames into one engine input. Holds every buffer it needs; see the module docs.
#[derive(Debug)]
pub struct Preprocessor {
    spec: InputSpec,
    opts: PreprocessOptions,
    norm: Norm,
    plan: Option<Plan>,
    isa: Isa,
}

impl Preprocessor {
    /// Validates `spec` and `opts` and builds the normalisation tables. The kernels use the
    /// widest instruction set the CPU has ([`Isa::best`]).
    pub fn new(spec: InputSpec, opts: PreprocessOptions) -> Result<Self, PreprocessError> {
        validate_spec(&spec)?;
        validate_options(&opts)?;
        let scale = match spec.element {
            InputElement::F32 => 1.0,
            InputElement::I8 { scale } => scale,
        };
        Ok(Preprocessor {
            spec,
            opts,
            norm: Norm::new(&opts, spec.channels, scale),
            plan: None,
            isa: Isa::best(),
        })
    }

    /// The same preprocessor running its kernels with `isa` (tests and benchmarks compare
    /// instruction sets; the results are identical).
    pub fn with_isa(mut self, isa: Isa) -> Self {
        self.isa = isa;
        self
    }

    /// The instruction set the kernels run with.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    pub fn options(&self) -> &PreprocessOptions {
        &self.opts
    }

    /// Builds the resampling plan and scratch buffers for `width x height` frames in `format`
    /// now, so that the first such frame does not allocate. [`run`](Self::run) calls it itself
    /// whenever the frame geometry or layout changes.
    pub fn prepare(
        &mut self,
        width: u32,
        height: u32,
        format: PixelFormat,
    ) -> Result<(), PreprocessError> {
        if width == 0 || height == 0 {
            return Err(PreprocessError::EmptyFrame {
                seq: 0,
                width,
                height,
            });
        }
        plan_for(
            &mut self.plan,
            (width, height, format),
            &self.spec,
            &self.opts,
        );
        Ok(())
    }

    /// Where the picture lands in the model input for the prepared frame size, as
    /// `(x, y, width, height)` in model pixels (the whole input except for letterboxing).
    pub fn placement(&self) -> Option<(u32, u32, u32, u32)> {
        self.plan.as_ref().map(|p| {
            (
                p.region.x as u32,
                p.region.y as u32,
                p.region.w as u32,
                p.region.h as u32,
            )
        })
    }

    /// Fits, converts, normalises and writes `frame` into `out`, the engine's input buffer,
    /// which must have the element type and length of the spec.
    pub fn run(&mut self, frame: &Frame, out: InputBufMut<'_>) -> Result<(), PreprocessError> {
        self.check_out(&out)?;
        check_frame(frame)?;
        let Preprocessor {
            spec,
            opts,
            norm,
            plan,
            isa,
        } = self;
        let plan = plan_for(plan, (frame.width, frame.height, frame.format), spec, opts);
        match out {
            InputBufMut::F32(buf) => plan.run(*isa, &frame.data, spec, norm, buf),
            InputBufMut::I8(buf) => plan.run(*isa, &frame.data, spec, norm, buf),
        }
        Ok(())
    }

    fn check_out(&self, out: &InputBufMut<'_>) -> Result<(), PreprocessError> {
        let (expected, actual) = match (self.spec.element, out) {
            (InputElement::F32, InputBufMut::F32(_))
            | (InputElement::I8 { .. }, InputBufMut::I8(_)) => (None, ""),
            (InputElement::F32, InputBufMut::I8(_)) => (Some("f32"), "int8"),
            (InputElement::I8 { .. }, InputBufMut::F32(_)) => (Some("int8"), "f32"),
        };
        if let Some(expected) = expected {
            return Err(PreprocessError::OutputKind {
                spec: SpecName(self.spec),
                expected,
                actual,
            });
        }
        if out.len() != self.spec.len() {
            return Err(PreprocessError::OutputLength {
                spec: SpecName(self.spec),
                expected: self.spec.len(),
                actual: out.len(),
            });
        }
        Ok(())
    }
}

/// The plan for frames of `key` (width, height, layout), rebuilt only when it changed.
fn plan_for<'a>(
    plan: &'a mut Option<Plan>,
    key: (u32, u32, PixelFormat),
    spec: &InputSpec,
    opts: &PreprocessOptions,
) -> &'a mut Plan {
    if plan
        .as_ref()
        .is_some_and(|p| (p.width, p.height, p.format) != key)
    {
        *plan = None;
    }
    plan.get_or_insert_with(|| Plan::new(key.0, key.1, key.2, spec, opts))
}

fn validate_spec(spec: &InputSpec) -> Result<(), PreprocessError> {
    let bad = |reason: &str| {
        Err(PreprocessError::BadSpec {
            spec: SpecName(*spec),
            reason: reason.to_string(),
        })
    };
    if spec.width == 0 || spec.height == 0 {
        return bad("width and height must be positive");
    }
    if spec.channels != 1 && spec.channels != 3 {
        return bad("channels must be 3 (RGB) or 1 (grey)");
    }
    if let InputElement::I8 { scale } = spec.element
        && !(scale.is_finite() && scale > 0.0)
    {
        return bad("the int8 scale must be a positive finite number");
    }
    Ok(())
}

/// The smallest `std` accepted (its inverse scales every input).
pub const MIN_STD: f32 = 1e-6;
/// The largest `|mean|` accepted (inputs are 0..1 or 0..255).
pub const MAX_MEAN: f32 = 1e6;

fn validate_options(opts: &PreprocessOptions) -> Result<(), PreprocessError> {
    if let Some(m) = opts
        .mean
        .iter()
        .find(|m| !(m.is_finite() && m.abs() <= MAX_MEAN))
    {
        return Err(PreprocessError::BadOption {
            option: "mean",
            reason: format!("{m:?} is not a number in [-{MAX_MEAN:?}, {MAX_MEAN:?}]"),
        });
    }
    // 1/std must be a normal float: 1e-45 (a subnormal) passed "> 0" and made every input inf.
    if let Some(s) = opts.std.iter().find(|s| !(s.is_finite() && **s >= MIN_STD)) {
        return Err(PreprocessError::BadOption {
            option: "std",
            reason: format!("{s:?} is not a number >= {MIN_STD:?}"),
        });
    }
    Ok(())
}

fn check_frame(frame: &Frame) -> Result<(), PreprocessError> {
    let (seq, width, height) = (frame.seq, frame.width, frame.height);
    if width == 0 || height == 0 {
        return Err(PreprocessError::EmptyFrame { seq, width, height });
    }
    let expected = frame.format.frame_len(width, height);
    // Formats with trailing planes (a Y4M alpha plane) carry more; RGB frames exactly this.
    let fits = match frame.format {
        PixelFormat::Yuv { .. } => frame.data.len() >= expected,
        _ => frame.data.len() == expected,
    };
    if !fits {
        return Err(PreprocessError::FrameSize {
            seq,
            width,
            height,
            format: frame.format,
            expected,
            actual: frame.data.len(),
        });
    }
    Ok(())
}

/// Per-channel normalisation: lookup tables for RGB, the luma formula for grey, and the fill.
#[derive(Debug)]
struct Norm {
    grey: bool,
    /// For each model channel, the RGB channel it takes.
    from: [usize; 3],
    /// Per model channel.
    lut: [[f32; 256]; 3],
    /// `lut` quantised to int8 with `scale`.
    lut_i8: [[i8; 256]; 3],
    /// `(mean[0], std[0])` for grey.
    grey_mean_std: (f32, f32),
    /// Normalised padding value per output channel.
    fill: [f32; 3],
    /// The int8 quantisation scale (unused for f32).
    scale: f32,
}

impl Norm {
    fn new(opts: &PreprocessOptions, channels: u32, scale: f32) -> Norm {
        let from = opts.channel_order.sources();
        // Table `k` belongs to model channel `k`, with the statistics of the RGB channel it takes.
        let mut lut = [[0.0f32; 256]; 3];
        for (table, (mean, std)) in lut
            .iter_mut()
            .zip(from.map(|c| (opts.mean[c], opts.std[c])))
        {
            for (v, x) in table.iter_mut().enumerate() {
                *x = normalise(v as u8, mean, std);
            }
        }
        let grey = channels == 1;
        let grey_mean_std = (opts.mean[0], opts.std[0]);
        let fill = match (opts.fill, grey) {
            (Fill::Mean, _) => [0.0; 3],
            (Fill::Rgb(rgb), false) => [
                lut[0][rgb[from[0]] as usize],
                lut[1][rgb[from[1]] as usize],
                lut[2][rgb[from[2]] as usize],
            ],
            (Fill::Rgb(rgb), true) => [normalise_luma(rgb[0], rgb[1], rgb[2], grey_mean_std); 3],
        };
        let lut_i8 = lut.map(|table| table.map(|x| i8::encode(x, scale)));
        Norm {
            grey,
            from,
            lut,
            lut_i8,
            grey_mean_std,
            fill,
            scale,
        }
    }
}

/// `(v / 255 - mean) / std`, in f32 as documented.
fn normalise(v: u8, mean: f32, std: f32) -> f32 {
    (f32::from(v) / 255.0 - mean) / std
}

/// BT.601 luma of an RGB8 pixel, normalised with `(mean, std)`.
fn normalise_luma(r: u8, g: u8, b: u8, (mean, std): (f32, f32)) -> f32 {
    let y =
        LUMA_BT601[0] * f32::from(r) + LUMA_BT601[1] * f32::from(g) + LUMA_BT601[2] * f32::from(b);
    (y / 255.0 - mean) / std
}

/// An element type of engine input buffers, and how a row of the picture is written in it.
trait Element: Copy {
    /// From a normalised value; `scale` is the int8 quantisation scale.
    fn encode(x: f32, scale: f32) -> Self;
    /// The per-channel tables from RGB8 values to encoded elements.
    fn table(norm: &Norm) -> &[[Self; 256]; 3];

    /// Picture row `y` straight from the resized channels, when this element type and layout
    /// have a fused kernel for it (f32 NCHW); `false` otherwise ([`Element::write_planar_row`]
    /// after [`kernels::to_rgb`] then).
    fn write_channels_row(
        _out: &mut [Self],
        _dst: &Dest,
        _y: usize,
        _ch: [&[i16]; 3],
        _conv: &layout::Conv,
        _norm: &Norm,
        _isa: Isa,
    ) -> bool {
        false
    }

    /// Picture row `y` from packed RGB8 pixels.
    fn write_packed_row(out: &mut [Self], dst: &Dest, y: usize, px: &[u8], norm: &Norm) {
        let start = dst.row_start(y);
        let w = dst.region.w;
        let lut = Self::table(norm);
        match (norm.grey, dst.layout) {
            (true, _) => {
                for (d, p) in out[start..start + w].iter_mut().zip(px.chunks_exact(3)) {
                    *d = Self::encode(
                        normalise_luma(p[0], p[1], p[2], norm.grey_mean_std),
                        norm.scale,
                    );
                }
            }
            (false, Layout::Nchw) => {
                let plane = dst.width * dst.height;
                for k in 0..3 {
                    let (table, from) = (&lut[k], norm.from[k]);
                    let row = &mut out[k * plane + start..k * plane + start + w];
                    for (d, p) in row.iter_mut().zip(px.chunks_exact(3)) {
                        *d = table[p[from] as usize];
                    }
                }
            }
            (false, Layout::Nhwc) => {
                let row = &mut out[start * 3..(start + w) * 3];
                for (d, p) in row.chunks_exact_mut(3).zip(px.chunks_exact(3)) {
                    for k in 0..3 {
                        d[k] = lut[k][p[norm.from[k]] as usize];
                    }
                }
            }
        }
    }

    /// Picture row `y` from one row each of R, G and B.
    fn write_planar_row(out: &mut [Self], dst: &Dest, y: usize, rgb: [&[u8]; 3], norm: &Norm) {
        let start = dst.row_start(y);
        let w = dst.region.w;
        let lut = Self::table(norm);
        match (norm.grey, dst.layout) {
            (true, _) => {
                for (x, d) in out[start..start + w].iter_mut().enumerate() {
                    let luma = normalise_luma(rgb[0][x], rgb[1][x], rgb[2][x], norm.grey_mean_std);
                    *d = Self::encode(luma, norm.scale);
                }
            }
            (false, Layout::Nchw) => {
                let plane = dst.width * dst.height;
                for k in 0..3 {
                    let src = rgb[norm.from[k]];
                    let row = &mut out[k * plane + start..k * plane + start + w];
                    for (d, v) in row.iter_mut().zip(src) {
                        *d = lut[k][*v as usize];
                    }
                }
            }
            (false, Layout::Nhwc) => {
                let row = &mut out[start * 3..(start + w) * 3];
                for (x, d) in row.chunks_exact_mut(3).enumerate() {
                    for k in 0..3 {
                        d[k] = lut[k][rgb[norm.from[k]][x] as usize];
                    }
                }
            }
        }
    }
}

impl Element for f32 {
    #[inline]
    fn encode(x: f32, _scale: f32) -> f32 {
        x
    }

    fn table(norm: &Norm) -> &[[f32; 256]; 3] {
        &norm.lut
    }

    fn write_channels_row(
        out: &mut [f32],
        dst: &Dest,
        y: usize,
        ch: [&[i16]; 3],
        conv: &layout::Conv,
        norm: &Norm,
        isa: Isa,
    ) -> bool {
        if norm.grey || dst.layout != Layout::Nchw {
            return false;
        }
        let (start, w, plane) = (dst.row_start(y), dst.region.w, dst.width * dst.height);
        let (c0, rest) = out.split_at_mut(plane);
        let (c1, c2) = rest.split_at_mut(plane);
        let rows = [
            &mut c0[start..start + w],
            &mut c1[start..start + w],
            &mut c2[start..start + w],
        ];
        let lut = [&norm.lut[0], &norm.lut[1], &norm.lut[2]];
        kernels::to_tensor_f32(isa, conv, ch, lut, norm.from, rows);
        true
    }
}

impl Element for i8 {
    /// `clamp(round(x * scale), -128, 127)`, rounding half away from zero; NaN gives 0.
    #[inline]
    fn encode(x: f32, scale: f32) -> i8 {
        (x * scale).round().clamp(-128.0, 127.0) as i8
    }

    fn table(norm: &Norm) -> &[[i8; 256]; 3] {
        &norm.lut_i8
    }
}

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

#[cfg(test)]
mod tests {
    use super::plan::{Crop, fit};
    use super::*;

    #[test]
    fn fit_letterbox_and_crop_geometry() {
        let (r, c) = fit(640, 480, 224, 224, ResizeMode::Letterbox, Align::CENTER);
        assert_eq!(
            r,
            Rect {
                x: 0,
                y: 28,
                w: 224,
                h: 168
            }
        );
        assert_eq!(
            c,
            Crop {
                left: 0.0,
                top: 0.0,
                w: 640.0,
                h: 480.0
            }
        );
        let (r, c) = fit(640, 480, 224, 224, ResizeMode::CenterCrop, Align::CENTER);
        assert_eq!(
            r,
            Rect {
                x: 0,
                y: 0,
                w: 224,
                h: 224
            }
        );
        assert!((c.left - 80.0).abs() < 1e-9 && (c.w - 480.0).abs() < 1e-9 && c.top == 0.0);
    }

    #[test]
    fn letterbox_alignment_moves_the_picture_not_its_size_nor_the_source() {
        // 640x480 in 224x224: a 224x168 picture, 56 rows of padding.
        for (name, x, y) in [
            ("center", 0, 28),
            ("top-left", 0, 0),
            ("top", 0, 0),
            ("bottom", 0, 56),
            ("bottom-right", 0, 56),
            ("left", 0, 28),
        ] {
            let align: Align = name.parse().unwrap();
            assert_eq!(align.to_string(), name);
            let (r, c) = fit(640, 480, 224, 224, ResizeMode::Letterbox, align);
            assert_eq!((r.x, r.y, r.w, r.h), (x, y, 224, 168), "{name}");
            assert_eq!(
                (c.left, c.top, c.w, c.h),
                (0.0, 0.0, 640.0, 480.0),
                "{name}"
            );
        }
        // 480x640 in 224x224: 168x224, the padding left and right (an odd 2 split 1 + 1).
        for (name, x) in [
            ("left", 0),
            ("center", 28),
            ("right", 56),
            ("top-right", 56),
        ] {
            let (r, _) = fit(
                480,
                640,
                224,
                224,
                ResizeMode::Letterbox,
                name.parse().unwrap(),
            );
            assert_eq!((r.x, r.y, r.w, r.h), (x, 0, 168, 224), "{name}");
        }
        // The odd pixel of padding goes after a centred picture.
        assert_eq!(Edge::Center.offset(4, 9), 2);
        // Alignment leaves the modes without padding alone.
        let stretch = fit(640, 480, 224, 224, ResizeMode::Stretch, Align::TOP_LEFT);
        assert_eq!(
            stretch,
            fit(640, 480, 224, 224, ResizeMode::Stretch, Align::CENTER)
        );
        assert!(
            "middle"
                .parse::<Align>()
                .unwrap_err()
                .to_string()
                .contains("'middle'")
        );
    }

    #[test]
    fn cubic_kernels_are_interpolating_where_expected() {
        assert!((Filter::CatmullRom.weight(0.0) - 1.0).abs() < 1e-12);
        assert!(Filter::CatmullRom.weight(1.0).abs() < 1e-12);
        assert!((Filter::Mitchell.weight(0.0) - 8.0 / 9.0).abs() < 1e-12);
        assert!(Filter::Lanczos3.weight(2.0).abs() < 1e-12);
    }
}
