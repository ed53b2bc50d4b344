//! Class names, so results say "person" where the output says 0.
//!
//! A model brought from elsewhere carries its names in one of two places users already have: a
//! label file beside it (one name per line, line N for class N: the format Triton's
//! `label_filename`, jetson-inference's `--labels` and DeepStream's `labelfile-path` read) or the
//! ONNX metadata (`names`, which Ultralytics exports write as a Python dict `{0: 'person', ...}`;
//! a JSON list or object is read too). The file wins, so a user can correct an export without
//! editing it. Names are metadata: a file that cannot be read is reported and the model serves
//! without names, never refused for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// At most this many names (the largest label sets in use have tens of thousands).
pub const MAX_LABELS: usize = 100_000;
/// A label file larger than this is not read.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Each name is cut to this many characters.
const MAX_NAME_CHARS: usize = 200;
/// Metadata keys that hold names, in the order they are tried.
const METADATA_KEYS: [&str; 2] = ["names", "labels"];

/// Where a model's names came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelSource {
    File(PathBuf),
    Metadata(&'static str),
}

impl std::fmt::Display for LabelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabelSource::File(p) => write!(f, "{}", p.display()),
            LabelSource::Metadata(k) => write!(f, "the model's metadata '{k}'"),
        }
    }
}

/// The names of a model's classes, index = class id (an id without a name has `""`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub names: Vec<String>,
    pub source: LabelSource,
}

impl Labels {
    /// The name of class `id`, when there is one.
    pub fn get(&self, id: u32) -> Option<&str> {
        self.names
            .get(id as usize)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// The label files tried for `model`, in order: `NAME.labels.txt` beside it (NAME = the file name
/// without its last extension: `yolov8n.int8.onnx` → `yolov8n.int8.labels.txt`), then with the
/// name up to its first dot (`yolov8n.labels.txt`, shared by a model's variants).
pub fn candidates(model: &Path) -> Vec<PathBuf> {
    let dir = model.parent().unwrap_or(Path::new("."));
    let Some(stem) = model.file_stem().and_then(|s| s.to_str()) else {
        return Vec::new();
    };
    let mut out = vec![dir.join(format!("{stem}.labels.txt"))];
    if let Some((base, _)) = stem.split_once('.') {
        out.push(dir.join(format!("{base}.labels.txt")));
    }
    out
}

/// Whether `path` is a label file (the watch folder leaves those alone).
pub fn is_label_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".labels.txt"))
}

/// The names for the model at `model`: its label file, else its metadata (`(key, value)` pairs),
/// else `None`. A label file that exists but cannot be used is logged (warn) and skipped. Shared:
/// every result of the model names its classes through it.
pub fn find<'a>(
    model: &Path,
    metadata: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<Arc<Labels>> {
    for file in candidates(model) {
        if !file.exists() {
            continue;
        }
        match read_file(&file) {
            Ok(names) => {
                return Some(Arc::new(Labels {
                    names,
                    source: LabelSource::File(file),
                }));
            }
            Err(why) => log::warn!(
                "label file {}: {why}; model {} serves without it",
                file.display(),
                model.display()
            ),
        }
    }
    let metadata: Vec<(&str, &str)> = metadata.into_iter().collect();
    for key in METADATA_KEYS {
        let Some((_, value)) = metadata.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        match parse_names(value) {
            Some(names) => {
                return Some(Arc::new(Labels {
                    names,
                    source: LabelSource::Metadata(key),
                }));
            }
            None => log::warn!(
                "model {}: metadata '{key}' is not a list of names; results carry class ids only",
                model.display()
            ),
        }
    }
    None
}

/// [`find`] for an ONNX model: its label file, else its `metadata_props`.
pub fn for_onnx(model: &Path, proto: Option<&crate::onnx::pb::ModelProto>) -> Option<Arc<Labels>> {
    find(
        model,
        proto
            .into_iter()
            .flat_map(|m| &m.metadata_props)
            .map(|e| (e.key.as_str(), e.value.as_str())),
    )
}

/// One name per line (trimmed; `\r\n` or `\n`; a blank line is a class without a name; trailing
/// blank lines are dropped).
fn read_file(path: &Path) -> Result<Vec<String>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes, more than the {MAX_FILE_BYTES} read",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let mut names: Vec<String> = text.lines().map(clean).collect();
    while names.last().is_some_and(String::is_empty) {
        names.pop();
    }
    if names.is_empty() {
        return Err("no names in it".into());
    }
    if names.len() > MAX_LABELS {
        return Err(format!(
            "{} lines, more than {MAX_LABELS} names",
            names.len()
        ));
    }
    Ok(names)
}

/// Names from a metadata value: a JSON list (`["a", "b"]`), a JSON object or a Python dict with
/// integer keys (`{"0": "a"}`, `{0: 'a', 1: "b"}`: what Ultralytics writes). `None` when it is
/// none of these or holds no name.
pub fn parse_names(value: &str) -> Option<Vec<String>> {
    let v = value.trim();
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(v) {
        let names: Vec<String> = items
            .iter()
            .map(|i| i.as_str().map(clean))
            .collect::<Option<_>>()?;
        return (!names.is_empty() && names.len() <= MAX_LABELS).then_some(names);
    }
    let body = v.strip_prefix('{')?.strip_suffix('}')?;
    let mut pairs = Vec::new();
    for item in split_top_level(body)? {
        let (k, name) = item.split_once(':')?;
        let k = unquote(k.trim()).unwrap_or(k.trim());
        let id: usize = k.parse().ok()?;
        if id >= MAX_LABELS {
            return None;
        }
        pairs.push((id, clean(unquote(name.trim())?)));
    }
    let len = pairs.iter().map(|(id, _)| id + 1).max()?;
    let mut names = vec![String::new(); len];
    for (id, name) in pairs {
        names[id] = name;
    }
    Some(names)
}

/// The items of a dict body split at commas outside quotes; `None` on an unclosed quote.
fn split_top_level(body: &str) -> Option<Vec<&str>> {
    let mut items = Vec::new();
    let (mut start, mut quote, mut escaped) = (0, None::<char>, false);
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, ',') => {
                items.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quote.is_some() {
        return None;
    }
    items.push(&body[start..]);
    Some(items.into_iter().filter(|s| !s.trim().is_empty()).collect())
}

/// The text between matching single or double quotes.
fn unquote(s: &str) -> Option<&str> {
    ['\'', '"'].iter().find_map(|q| {
        s.strip_prefix(*q)
            .and_then(|r| r.strip_suffix(*q))
            .filter(|_| s.len() >= 2)
    })
}

/// Trimmed, without control characters, at most [`MAX_NAME_CHARS`] characters.
fn clean(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ultralytics_python_dicts_json_lists_and_objects_parse() {
        assert_eq!(
            parse_names("{0: 'person', 1: 'bicycle', 2: \"traffic light\"}").unwrap(),
            ["person", "bicycle", "traffic light"]
        );
        assert_eq!(parse_names(r#"["cat", "dog"]"#).unwrap(), ["cat", "dog"]);
        assert_eq!(parse_names(r#"{"1": "b", "0": "a"}"#).unwrap(), ["a", "b"]);
        // Commas and escaped quotes inside a name; a gap is a class without a name.
        assert_eq!(
            parse_names(r"{0: 'a, b', 2: 'it\'s'}").unwrap(),
            ["a, b", "", r"it\'s"]
        );
    }

    #[test]
    fn values_that_are_not_names_are_refused() {
        for v in [
            "",
            "person",
            "{0: person}",
            "{x: 'a'}",
            "{0: 'a}",
            "[1, 2]",
            "[]",
            "{}",
            "{100000: 'a'}",
        ] {
            assert_eq!(parse_names(v), None, "{v:?}");
        }
    }

    #[test]
    fn a_label_file_beside_the_model_wins_over_metadata_and_variants_share_one() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("det.int8.onnx");
        let meta = [("names", "{0: 'from-metadata'}")];
        let found = find(&model, meta).unwrap();
        assert_eq!(found.source, LabelSource::Metadata("names"));
        assert_eq!(found.get(0), Some("from-metadata"));

        std::fs::write(dir.path().join("det.labels.txt"), "person\r\n\ncar\n\n").unwrap();
        let found = find(&model, meta).unwrap();
        assert_eq!(
            found.source,
            LabelSource::File(dir.path().join("det.labels.txt"))
        );
        assert_eq!(&*found.names, ["person", "", "car"]);
        assert_eq!(
            (found.get(1), found.get(2), found.get(3)),
            (None, Some("car"), None)
        );

        // The variant's own file is tried first.
        std::fs::write(dir.path().join("det.int8.labels.txt"), "p\n").unwrap();
        assert_eq!(&*find(&model, meta).unwrap().names, ["p"]);
    }

    #[test]
    fn an_unusable_label_file_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(dir.path().join("m.labels.txt"), [0xff, 0xfe, b'\n']).unwrap();
        assert_eq!(find(&model, []), None);
        let found = find(&model, [("labels", r#"["x"]"#)]).unwrap();
        assert_eq!(found.source, LabelSource::Metadata("labels"));
        assert!(is_label_file(&dir.path().join("m.labels.txt")));
        assert!(!is_label_file(&model));
    }
}
