//! The `[tensorrt]` config section: raw as written, checked into [`TensorRtOptions`]. Lives here
//! so the shared `config.rs` only mounts it; compiled in every build so a file written for a
//! Jetson validates (`check-config`) on any machine.

use std::path::PathBuf;

use serde::Deserialize;

use super::{TensorRtOptions, TrtPrecision};
use crate::invalid_key::InvalidKey;

#[derive(Debug, Default, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawTensorRt {
    pub precision: Option<String>,
    pub fp16_fallback: Option<bool>,
    pub calibration_images: Option<PathBuf>,
    pub calibration_source: Option<String>,
    pub calibration_max_images: Option<usize>,
    pub calibration_cache: Option<PathBuf>,
    pub engine_cache: Option<PathBuf>,
    pub workspace_mb: Option<u64>,
    pub dla_core: Option<u32>,
    pub zero_copy: Option<bool>,
    pub input_shape: Option<Vec<i64>>,
}

impl RawTensorRt {
    /// Checks every key; an error names its key.
    pub fn check(self) -> Result<TensorRtOptions, InvalidKey> {
        let d = TensorRtOptions::default();
        let precision: TrtPrecision = match self.precision.as_deref() {
            None => d.precision,
            Some(s) => s
                .parse()
                .map_err(|e| InvalidKey::new("tensorrt.precision", e))?,
        };
        let max = self
            .calibration_max_images
            .unwrap_or(d.calibration_max_images);
        if max == 0 {
            return Err(InvalidKey::new(
                "tensorrt.calibration_max_images",
                "must be at least 1",
            ));
        }
        let calibration_source = match self.calibration_source.as_deref() {
            None => None,
            Some(_) if self.calibration_images.is_some() => {
                return Err(InvalidKey::new(
                    "tensorrt.calibration_source",
                    "set either calibration_images or calibration_source, not both",
                ));
            }
            Some(uri) => Some(
                crate::source::SourceSpec::parse(uri)
                    .map_err(|e| InvalidKey::new("tensorrt.calibration_source", e.to_string()))?,
            ),
        };
        let workspace_mb = self.workspace_mb.unwrap_or(0);
        if workspace_mb > 1 << 20 {
            return Err(InvalidKey::new(
                "tensorrt.workspace_mb",
                format!("{workspace_mb} MB is more than 1 TB"),
            ));
        }
        if let Some(core) = self.dla_core.filter(|c| *c > 7) {
            return Err(InvalidKey::new(
                "tensorrt.dla_core",
                format!("{core}: Jetson boards have DLA cores 0 and 1"),
            ));
        }
        if let Some(s) = &self.input_shape
            && (s.len() != 4 || s.iter().any(|d| *d <= 0))
        {
            return Err(InvalidKey::new(
                "tensorrt.input_shape",
                format!("{s:?}: expected 4 positive dimensions [1, C, H, W]"),
            ));
        }
        Ok(TensorRtOptions {
            precision,
            fp16_fallback: self.fp16_fallback.unwrap_or(d.fp16_fallback),
            calibration_images: self.calibration_images,
            calibration_source,
            calibration_max_images: max,
            calibration_cache: self.calibration_cache,
            engine_cache: self.engine_cache.unwrap_or(d.engine_cache),
            workspace_bytes: workspace_mb << 20,
            dla_core: self.dla_core,
            zero_copy: self.zero_copy.unwrap_or(d.zero_copy),
            input_shape: self.input_shape,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let o = RawTensorRt::default().check().expect("defaults are valid");
        assert_eq!(o.engine_cache, PathBuf::from("/var/cache/rtinfer"));
        assert_eq!(o.precision, TrtPrecision::Fp32);
        assert_eq!(o.calibration_max_images, 1000);
        let raw = RawTensorRt {
            workspace_mb: Some(512),
            precision: Some("int8".into()),
            ..Default::default()
        };
        let o = raw.check().expect("valid");
        assert_eq!(o.workspace_bytes, 512 * 1024 * 1024);
        assert_eq!(o.precision, TrtPrecision::Int8);
        let bad = RawTensorRt {
            precision: Some("int4".into()),
            ..Default::default()
        };
        assert_eq!(bad.check().unwrap_err().key, "tensorrt.precision");
        let bad = RawTensorRt {
            input_shape: Some(vec![1, 3, 224]),
            ..Default::default()
        };
        assert_eq!(bad.check().unwrap_err().key, "tensorrt.input_shape");
        let src = RawTensorRt {
            calibration_source: Some("synthetic://64x48@30".into()),
            ..Default::default()
        };
        let o = src.check().expect("valid");
        assert_eq!(
            o.calibration_source.map(|s| s.uri),
            Some("synthetic://64x48@30".to_string())
        );
        let bad = RawTensorRt {
            calibration_source: Some("bogus://x".into()),
            ..Default::default()
        };
        assert_eq!(bad.check().unwrap_err().key, "tensorrt.calibration_source");
        let both = RawTensorRt {
            calibration_source: Some("synthetic://64x48@30".into()),
            calibration_images: Some(PathBuf::from("/tmp")),
            ..Default::default()
        };
        let InvalidKey { key, message: why } = both.check().unwrap_err();
        assert_eq!(key, "tensorrt.calibration_source");
        assert!(why.contains("not both"), "{why}");
    }
}
