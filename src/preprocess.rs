//! Turning a camera frame into exactly what an engine's input tensor expects.
//!
//! This runs once per frame on the real-time thread, so it is built around one rule: nothing
//! allocates in steady state. Everything that depends on the source geometry (the placement of
//! the picture in the model input, the resampling weights, the scratch images) is computed once
//! when a frame of a new size arrives (or ahead of time with [`Preprocessor::prepare`]) and
//! reused for every following frame; normalisation goes through per-channel lookup tables made
//! in [`Preprocessor::new`].
//!
//! Resampling is a separable convolution with the same antialiasing kernels as Pillow and
//! `fast_image_resize` (the kernel widens when downscaling). It is done here rather than by
//! `fast_image_resize` because that crate recomputes (and allocates) its weight tables on every
//! call, which the zero-allocation loop cannot afford; the tests use it as the independent
//! reference this implementation must agree with. A frame that already has the size the model
//! wants is not resampled at all: its pixels are normalised straight from the frame buffer.
//!
//! Values follow torchvision's convention: `x = (v / 255 - mean[c]) / std[c]` per channel, grey
//! inputs use BT.601 luma, and int8 inputs are quantised as `clamp(round(x * scale), -128, 127)`.

use std::fmt;
use std::str::FromStr;

use crate::invalid_key::InvalidKey;
use crate::source::Frame;
use crate::tensor::{InputBufMut, InputElement, InputSpec, Layout};

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

/// The order of the colour channels the model takes. Frames are RGB inside rtinfer; models
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

/// Resampling kernel. All but `Nearest` widen with the scale factor when downscaling
/// (antialiasing), as Pillow and `fast_image_resize`'s `Convolution` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    Nearest,
    Box,
    #[default]
    Bilinear,
    Hamming,
    CatmullRom,
    Mitchell,
    Lanczos3,
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
        }
    }

    /// Kernel radius in source pixels at scale 1.
    fn support(self) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::CatmullRom | Filter::Mitchell => 2.0,
            Filter::Lanczos3 => 3.0,
        }
    }

    /// Kernel weight at distance `x` (in scaled source pixels) from the sample centre.
    fn weight(self, x: f64) -> f64 {
        let a = x.abs();
        match self {
            Filter::Nearest | Filter::Box => f64::from(u8::from((-0.5..0.5).contains(&x))),
            Filter::Bilinear => (1.0 - a).max(0.0),
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
            ..defaults
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
    #[error("frame {seq} ({width}x{height}): expected {expected} bytes of RGB8, got {actual}")]
    FrameSize {
        seq: u64,
        width: u32,
        height: u32,
        expected: usize,
        actual: usize,
    },
    #[error("frame {seq} is empty ({width}x{height})")]
    EmptyFrame { seq: u64, width: u32, height: u32 },
    #[error("unknown resize mode '{value}' (expected stretch, center-crop or letterbox)")]
    UnknownResizeMode { value: String },
    #[error("unknown channel order '{value}' (expected rgb or bgr)")]
    UnknownChannelOrder { value: String },
    #[error(
        "unknown resize filter '{value}' (expected nearest, box, bilinear, hamming, catmull-rom, mitchell or lanczos3)"
    )]
    UnknownFilter { value: String },
}

/// Converts RGB8 frames into one engine input. Holds every buffer it needs; see the module docs.
#[derive(Debug)]
pub struct Preprocessor {
    spec: InputSpec,
    opts: PreprocessOptions,
    norm: Norm,
    plan: Option<Plan>,
}

impl Preprocessor {
    /// Validates `spec` and `opts` and builds the normalisation tables.
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
        })
    }

    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    pub fn options(&self) -> &PreprocessOptions {
        &self.opts
    }

    /// Builds the resampling plan and scratch buffers for `width x height` frames now, so that
    /// the first such frame does not allocate. [`run`](Self::run) calls it itself whenever the
    /// frame size changes.
    pub fn prepare(&mut self, width: u32, height: u32) -> Result<(), PreprocessError> {
        if width == 0 || height == 0 {
            return Err(PreprocessError::EmptyFrame {
                seq: 0,
                width,
                height,
            });
        }
        plan_for(
            &mut self.plan,
            width as usize,
            height as usize,
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

    /// Fits, normalises and writes `frame` into `out`, the engine's input buffer, which must
    /// have the element type and length of the spec.
    pub fn run(&mut self, frame: &Frame, out: InputBufMut<'_>) -> Result<(), PreprocessError> {
        self.check_out(&out)?;
        check_frame(frame)?;
        let Preprocessor {
            spec,
            opts,
            norm,
            plan,
        } = self;
        let plan = plan_for(
            plan,
            frame.width as usize,
            frame.height as usize,
            spec,
            opts,
        );
        let dst = Dest {
            width: spec.width as usize,
            height: spec.height as usize,
            layout: spec.layout,
            region: plan.region,
        };
        let view = plan.source_view(&frame.rgb);
        match out {
            InputBufMut::F32(buf) => write_tensor(buf, &dst, &view, norm),
            InputBufMut::I8(buf) => write_tensor(buf, &dst, &view, norm),
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

/// The plan for `width x height` frames, rebuilt only when the size changed.
fn plan_for<'a>(
    plan: &'a mut Option<Plan>,
    width: usize,
    height: usize,
    spec: &InputSpec,
    opts: &PreprocessOptions,
) -> &'a mut Plan {
    if plan
        .as_ref()
        .is_some_and(|p| (p.src_w, p.src_h) != (width, height))
    {
        *plan = None;
    }
    plan.get_or_insert_with(|| Plan::new(width, height, spec, opts))
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
    let expected = width as usize * height as usize * 3;
    if frame.rgb.len() != expected {
        return Err(PreprocessError::FrameSize {
            seq,
            width,
            height,
            expected,
            actual: frame.rgb.len(),
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
        for (k, table) in lut.iter_mut().enumerate() {
            for (v, x) in table.iter_mut().enumerate() {
                *x = normalise(v as u8, opts.mean[from[k]], opts.std[from[k]]);
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

/// An element type of engine input buffers.
trait Element: Copy {
    /// From a normalised value; `scale` is the int8 quantisation scale.
    fn encode(x: f32, scale: f32) -> Self;
    /// The per-channel tables from RGB8 values to encoded elements.
    fn table(norm: &Norm) -> &[[Self; 256]; 3];
}

impl Element for f32 {
    #[inline]
    fn encode(x: f32, _scale: f32) -> f32 {
        x
    }

    fn table(norm: &Norm) -> &[[f32; 256]; 3] {
        &norm.lut
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
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

/// Where the fitted picture goes in the model input.
struct Dest {
    width: usize,
    height: usize,
    layout: Layout,
    region: Rect,
}

/// The fitted picture as RGB8 rows: either the resampled scratch image or a window of the frame.
struct View<'a> {
    buf: &'a [u8],
    /// Bytes per row of `buf`.
    stride: usize,
    x0: usize,
    y0: usize,
    w: usize,
}

impl View<'_> {
    #[inline]
    fn row(&self, y: usize) -> &[u8] {
        let start = (self.y0 + y) * self.stride + self.x0 * 3;
        &self.buf[start..start + self.w * 3]
    }
}

/// Writes the whole tensor: padding (when the picture does not cover the input), then the picture.
fn write_tensor<T: Element>(out: &mut [T], dst: &Dest, view: &View<'_>, norm: &Norm) {
    let full = dst.region
        == Rect {
            x: 0,
            y: 0,
            w: dst.width,
            h: dst.height,
        };
    if !full {
        write_fill(out, dst, norm);
    }
    match (norm.grey, dst.layout) {
        (true, _) => write_grey(out, dst, view, norm),
        (false, Layout::Nchw) => write_nchw(out, dst, view, norm),
        (false, Layout::Nhwc) => write_nhwc(out, dst, view, norm),
    }
}

fn write_fill<T: Element>(out: &mut [T], dst: &Dest, norm: &Norm) {
    let fill = norm.fill.map(|x| T::encode(x, norm.scale));
    match (norm.grey, dst.layout) {
        (true, _) => out.fill(fill[0]),
        (false, Layout::Nchw) => {
            for (plane, value) in out.chunks_exact_mut(dst.width * dst.height).zip(fill) {
                plane.fill(value);
            }
        }
        (false, Layout::Nhwc) => {
            for px in out.chunks_exact_mut(3) {
                px.copy_from_slice(&fill);
            }
        }
    }
}

fn write_nchw<T: Element>(out: &mut [T], dst: &Dest, view: &View<'_>, norm: &Norm) {
    let r = dst.region;
    for (c, plane) in out.chunks_exact_mut(dst.width * dst.height).enumerate() {
        let lut = &T::table(norm)[c];
        let from = norm.from[c];
        for y in 0..r.h {
            let start = (r.y + y) * dst.width + r.x;
            let row = &mut plane[start..start + r.w];
            for (d, px) in row.iter_mut().zip(view.row(y).chunks_exact(3)) {
                *d = lut[px[from] as usize];
            }
        }
    }
}

fn write_nhwc<T: Element>(out: &mut [T], dst: &Dest, view: &View<'_>, norm: &Norm) {
    let r = dst.region;
    let lut = T::table(norm);
    for y in 0..r.h {
        let start = ((r.y + y) * dst.width + r.x) * 3;
        let row = &mut out[start..start + r.w * 3];
        for (d, px) in row.chunks_exact_mut(3).zip(view.row(y).chunks_exact(3)) {
            for c in 0..3 {
                d[c] = lut[c][px[norm.from[c]] as usize];
            }
        }
    }
}

/// One channel: NCHW and NHWC are the same memory order.
fn write_grey<T: Element>(out: &mut [T], dst: &Dest, view: &View<'_>, norm: &Norm) {
    let r = dst.region;
    for y in 0..r.h {
        let start = (r.y + y) * dst.width + r.x;
        let row = &mut out[start..start + r.w];
        for (d, px) in row.iter_mut().zip(view.row(y).chunks_exact(3)) {
            *d = T::encode(
                normalise_luma(px[0], px[1], px[2], norm.grey_mean_std),
                norm.scale,
            );
        }
    }
}

/// Everything that depends on the source size: made when a frame of a new size arrives.
#[derive(Debug)]
struct Plan {
    src_w: usize,
    src_h: usize,
    /// Where the picture goes in the model input.
    region: Rect,
    /// Top-left of the frame window copied as is when no resampling is needed.
    offset: (usize, usize),
    resample: Option<Resample>,
}

impl Plan {
    fn new(src_w: usize, src_h: usize, spec: &InputSpec, opts: &PreprocessOptions) -> Plan {
        let (region, crop) = fit(
            src_w,
            src_h,
            spec.width as usize,
            spec.height as usize,
            opts.resize,
        );
        let aligned = |v: f64| (v - v.round()).abs() < 1e-9;
        let identity = crop.w == region.w as f64
            && crop.h == region.h as f64
            && aligned(crop.left)
            && aligned(crop.top);
        if identity {
            let offset = (crop.left.round() as usize, crop.top.round() as usize);
            return Plan {
                src_w,
                src_h,
                region,
                offset,
                resample: None,
            };
        }
        let resample = Resample::new(src_w, src_h, &crop, region.w, region.h, opts.filter);
        Plan {
            src_w,
            src_h,
            region,
            offset: (0, 0),
            resample: Some(resample),
        }
    }

    /// Resamples when needed and returns the picture to normalise.
    fn source_view<'a>(&'a mut self, rgb: &'a [u8]) -> View<'a> {
        let stride = self.src_w * 3;
        match self.resample.as_mut() {
            Some(r) => {
                r.run(rgb, stride);
                View {
                    buf: &r.resized,
                    stride: self.region.w * 3,
                    x0: 0,
                    y0: 0,
                    w: self.region.w,
                }
            }
            None => View {
                buf: rgb,
                stride,
                x0: self.offset.0,
                y0: self.offset.1,
                w: self.region.w,
            },
        }
    }
}

/// The part of the source that is resampled, in (possibly fractional) source pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Crop {
    left: f64,
    top: f64,
    w: f64,
    h: f64,
}

/// Placement of a `src_w x src_h` frame in a `dst_w x dst_h` input: (region in the input,
/// source window that fills it).
fn fit(src_w: usize, src_h: usize, dst_w: usize, dst_h: usize, mode: ResizeMode) -> (Rect, Crop) {
    let (sw, sh, dw, dh) = (src_w as f64, src_h as f64, dst_w as f64, dst_h as f64);
    let full_src = Crop {
        left: 0.0,
        top: 0.0,
        w: sw,
        h: sh,
    };
    let full_dst = Rect {
        x: 0,
        y: 0,
        w: dst_w,
        h: dst_h,
    };
    match mode {
        ResizeMode::Stretch => (full_dst, full_src),
        ResizeMode::CenterCrop => {
            let scale = (dw / sw).max(dh / sh);
            let (cw, ch) = ((dw / scale).min(sw), (dh / scale).min(sh));
            (
                full_dst,
                Crop {
                    left: (sw - cw) / 2.0,
                    top: (sh - ch) / 2.0,
                    w: cw,
                    h: ch,
                },
            )
        }
        ResizeMode::Letterbox => {
            let scale = (dw / sw).min(dh / sh);
            let w = ((sw * scale).round() as usize).clamp(1, dst_w);
            let h = ((sh * scale).round() as usize).clamp(1, dst_h);
            (
                Rect {
                    x: (dst_w - w) / 2,
                    y: (dst_h - h) / 2,
                    w,
                    h,
                },
                full_src,
            )
        }
    }
}

/// Resampling weights along one axis: output `i` is `sum_k weights[i * stride + k] *
/// input[start[i] + k]` for `k < len[i]`.
#[derive(Debug)]
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<f32>,
    stride: usize,
}

impl Taps {
    /// Weights mapping input samples `in0 .. in0 + in_len` (fractional) of an axis of `in_size`
    /// samples onto `out_size` samples. The kernel may read input just outside the window (as a
    /// resize-then-crop would) but never outside `0 .. in_size`.
    fn new(in_size: usize, in0: f64, in_len: f64, out_size: usize, filter: Filter) -> Taps {
        let scale = in_len / out_size as f64;
        let filter_scale = if filter == Filter::Nearest {
            1.0
        } else {
            scale.max(1.0)
        };
        let support = filter.support() * filter_scale;
        let stride = (support.ceil() as usize) * 2 + 1;
        let mut taps = Taps {
            start: Vec::with_capacity(out_size),
            len: Vec::with_capacity(out_size),
            weights: vec![0.0; stride * out_size],
            stride,
        };
        for i in 0..out_size {
            let centre = in0 + (i as f64 + 0.5) * scale;
            if filter == Filter::Nearest {
                taps.push_nearest(i, centre, in_size);
            } else {
                taps.push_kernel(i, centre, support, filter_scale, in_size, filter);
            }
        }
        taps
    }

    fn push_nearest(&mut self, i: usize, centre: f64, in_size: usize) {
        let x = (centre.floor().max(0.0) as usize).min(in_size - 1);
        self.start.push(x);
        self.len.push(1);
        self.weights[i * self.stride] = 1.0;
    }

    fn push_kernel(
        &mut self,
        i: usize,
        centre: f64,
        support: f64,
        filter_scale: f64,
        in_size: usize,
        filter: Filter,
    ) {
        let lo = ((centre - support).floor().max(0.0) as usize).min(in_size - 1);
        let hi = ((centre + support).ceil().max(0.0) as usize)
            .clamp(lo + 1, in_size)
            .min(lo + self.stride);
        let weight = |x: usize| filter.weight((x as f64 + 0.5 - centre) / filter_scale);
        let sum: f64 = (lo..hi).map(weight).sum();
        let row = &mut self.weights[i * self.stride..(i + 1) * self.stride];
        if sum == 0.0 {
            // Cannot happen for a centre inside the input; take the nearest sample rather than black.
            self.start
                .push((centre.floor().max(0.0) as usize).clamp(lo, hi - 1));
            self.len.push(1);
            row[0] = 1.0;
            return;
        }
        for (w, x) in row.iter_mut().zip(lo..hi) {
            // sin(pi * k) is not exactly 0 in floating point: flush such dust so it is trimmed.
            let v = weight(x) / sum;
            *w = if v.abs() < 1e-7 { 0.0 } else { v as f32 };
        }
        // Trim zero weights at both ends so the loops skip samples that do not contribute.
        let n = hi - lo;
        let first = row[..n].iter().position(|w| *w != 0.0).unwrap_or(0);
        let end = row[..n]
            .iter()
            .rposition(|w| *w != 0.0)
            .map_or(n, |p| p + 1)
            .max(first + 1);
        row.copy_within(first..end, 0);
        row[end - first..].fill(0.0);
        self.start.push(lo + first);
        self.len.push(end - first);
    }

    #[inline]
    fn weights(&self, i: usize) -> &[f32] {
        &self.weights[i * self.stride..i * self.stride + self.len[i]]
    }

    /// The input samples any output reads: `(first, end)`.
    fn span(&self) -> (usize, usize) {
        let first = self.start.iter().copied().min().unwrap_or(0);
        let end = self
            .start
            .iter()
            .zip(&self.len)
            .map(|(s, l)| s + l)
            .max()
            .unwrap_or(0);
        (first, end)
    }
}

/// Separable resampling into an RGB8 scratch image: a vertical pass over the source columns
/// that matter into f32 rows, then a horizontal pass into `resized`.
#[derive(Debug)]
struct Resample {
    horiz: Taps,
    vert: Taps,
    /// First source column read; the vertical pass covers `x_first .. x_end`.
    x_first: usize,
    x_end: usize,
    /// `out_h` rows of `(x_end - x_first) * 3` floats.
    tmp: Vec<f32>,
    /// `out_w x out_h` RGB8.
    resized: Vec<u8>,
    out_w: usize,
    out_h: usize,
}

impl Resample {
    fn new(
        src_w: usize,
        src_h: usize,
        crop: &Crop,
        out_w: usize,
        out_h: usize,
        filter: Filter,
    ) -> Resample {
        let horiz = Taps::new(src_w, crop.left, crop.w, out_w, filter);
        let vert = Taps::new(src_h, crop.top, crop.h, out_h, filter);
        let (x_first, x_end) = horiz.span();
        Resample {
            horiz,
            vert,
            x_first,
            x_end,
            tmp: vec![0.0; (x_end - x_first) * 3 * out_h],
            resized: vec![0; out_w * out_h * 3],
            out_w,
            out_h,
        }
    }

    fn run(&mut self, rgb: &[u8], stride: usize) {
        self.vertical(rgb, stride);
        self.horizontal();
    }

    fn vertical(&mut self, rgb: &[u8], stride: usize) {
        let tw = (self.x_end - self.x_first) * 3;
        for (oy, row) in self.tmp.chunks_exact_mut(tw).enumerate().take(self.out_h) {
            row.fill(0.0);
            let start = self.vert.start[oy];
            for (k, &w) in self.vert.weights(oy).iter().enumerate() {
                let from = (start + k) * stride + self.x_first * 3;
                for (acc, &v) in row.iter_mut().zip(&rgb[from..from + tw]) {
                    *acc += w * f32::from(v);
                }
            }
        }
    }

    fn horizontal(&mut self) {
        let tw = (self.x_end - self.x_first) * 3;
        let rows = self
            .tmp
            .chunks_exact(tw)
            .zip(self.resized.chunks_exact_mut(self.out_w * 3));
        for (src, dst) in rows {
            for (ox, px) in dst.chunks_exact_mut(3).enumerate() {
                let base = (self.horiz.start[ox] - self.x_first) * 3;
                let weights = self.horiz.weights(ox);
                let taps = &src[base..base + weights.len() * 3];
                let mut acc = [0.0f32; 3];
                for (s, &w) in taps.chunks_exact(3).zip(weights) {
                    acc[0] += w * s[0];
                    acc[1] += w * s[1];
                    acc[2] += w * s[2];
                }
                for (d, a) in px.iter_mut().zip(acc) {
                    *d = a.clamp(0.0, 255.0).round() as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_taps_sum_to_one_and_stay_inside() {
        for (in_size, out) in [(640, 224), (7, 31), (480, 224), (3, 1)] {
            let t = Taps::new(in_size, 0.0, in_size as f64, out, Filter::Bilinear);
            for i in 0..out {
                let sum: f32 = t.weights(i).iter().sum();
                assert!(
                    (sum - 1.0).abs() < 1e-5,
                    "{in_size}->{out} tap {i} sums to {sum}"
                );
                assert!(t.start[i] + t.len[i] <= in_size);
            }
        }
    }

    #[test]
    fn same_size_taps_are_identity() {
        let t = Taps::new(10, 0.0, 10.0, 10, Filter::Lanczos3);
        for i in 0..10 {
            assert_eq!((t.start[i], t.weights(i)), (i, &[1.0f32][..]));
        }
    }

    #[test]
    fn upscale_by_two_interpolates_midpoints() {
        // Output centres at input 0.25, 0.75, 1.25, 1.75 (in pixel-centre units -0.25, 0.25, ...).
        let t = Taps::new(2, 0.0, 2.0, 4, Filter::Bilinear);
        assert_eq!((t.start[1], t.weights(1)), (0, &[0.75f32, 0.25][..]));
        assert_eq!((t.start[2], t.weights(2)), (0, &[0.25f32, 0.75][..]));
    }

    #[test]
    fn fit_letterbox_and_crop_geometry() {
        let (r, c) = fit(640, 480, 224, 224, ResizeMode::Letterbox);
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
        let (r, c) = fit(640, 480, 224, 224, ResizeMode::CenterCrop);
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
    fn cubic_kernels_are_interpolating_where_expected() {
        assert!((Filter::CatmullRom.weight(0.0) - 1.0).abs() < 1e-12);
        assert!(Filter::CatmullRom.weight(1.0).abs() < 1e-12);
        assert!((Filter::Mitchell.weight(0.0) - 8.0 / 9.0).abs() < 1e-12);
        assert!(Filter::Lanczos3.weight(2.0).abs() < 1e-12);
    }
}
