//! Accuracy beside latency: the study plotted both, because a ratio that meets the budget is
//! only useful if it still classifies. Images go through the daemon's own preprocessing, so the
//! accuracy measured here is the accuracy the daemon delivers, not a Python pipeline's.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::{Config, RawConfig};
use crate::preprocess::Preprocessor;
use crate::source::{Frame, FrameLimits, PixelFormat};
use crate::time::MonoTime;

/// One CIFAR-10 binary record: label byte then 32x32 R, G and B planes.
const CIFAR_RECORD: usize = 1 + 3 * 1024;

/// A labelled image set in memory-light form: where each sample comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    File {
        path: PathBuf,
        label: usize,
    },
    Cifar {
        path: PathBuf,
        index: usize,
        label: usize,
    },
}

/// A labelled set: class names and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledSet {
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
}

/// Reading a labelled set failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("labelled set {path}: {reason}")]
    Set { path: PathBuf, reason: String },
}

fn set_err(path: &Path, reason: impl std::fmt::Display) -> EvalError {
    EvalError::Set {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl LabelledSet {
    /// Opens an ImageFolder tree (one sub-folder per class, sorted by name = class index), or
    /// CIFAR-10 binary batches (a `.bin` file, or a folder of them, `batches.meta.txt` naming
    /// the classes when present).
    pub fn open(path: &Path) -> Result<LabelledSet, EvalError> {
        if path.is_file() {
            return cifar(&[path.to_path_buf()], path);
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| set_err(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        let bins: Vec<PathBuf> = entries
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "bin"))
            .cloned()
            .collect();
        if !bins.is_empty() {
            return cifar(&bins, path);
        }
        let dirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
        if dirs.is_empty() {
            return Err(set_err(
                path,
                "no class sub-folders and no CIFAR .bin batches",
            ));
        }
        let mut set = LabelledSet {
            classes: Vec::new(),
            samples: Vec::new(),
        };
        for (label, d) in dirs.into_iter().enumerate() {
            set.classes
                .push(d.file_name().unwrap_or_default().to_string_lossy().into());
            let mut files: Vec<PathBuf> = std::fs::read_dir(d)
                .map_err(|e| set_err(d, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_image(p))
                .collect();
            files.sort();
            set.samples
                .extend(files.into_iter().map(|path| Sample::File { path, label }));
        }
        Ok(set)
    }

    /// Decodes sample `i` into `frame` (RGB8); returns its label.
    pub fn load(&self, i: usize, frame: &mut Frame) -> Result<usize, EvalError> {
        match &self.samples[i] {
            Sample::File { path, label } => {
                crate::source::limits::decode_image_file(path, &FrameLimits::default(), frame)
                    .map_err(|e| set_err(path, e))?;
                Ok(*label)
            }
            Sample::Cifar { path, index, label } => {
                let bytes = read_record(path, *index)?;
                frame.set_format(PixelFormat::Rgb24, 32, 32);
                for p in 0..1024 {
                    for c in 0..3 {
                        frame.data[3 * p + c] = bytes[1 + c * 1024 + p];
                    }
                }
                Ok(*label)
            }
        }
    }
}

fn is_image(p: &Path) -> bool {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
}

fn read_record(path: &Path, index: usize) -> Result<Vec<u8>, EvalError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| set_err(path, e))?;
    f.seek(SeekFrom::Start((index * CIFAR_RECORD) as u64))
        .map_err(|e| set_err(path, e))?;
    let mut buf = vec![0u8; CIFAR_RECORD];
    f.read_exact(&mut buf).map_err(|e| set_err(path, e))?;
    Ok(buf)
}

fn cifar(bins: &[PathBuf], root: &Path) -> Result<LabelledSet, EvalError> {
    let mut samples = Vec::new();
    let mut max_label = 0;
    for b in bins {
        let bytes = std::fs::read(b).map_err(|e| set_err(b, e))?;
        if bytes.is_empty() || bytes.len() % CIFAR_RECORD != 0 {
            return Err(set_err(
                b,
                format!(
                    "{} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records",
                    bytes.len()
                ),
            ));
        }
        for (index, rec) in bytes.chunks_exact(CIFAR_RECORD).enumerate() {
            let label = usize::from(rec[0]);
            max_label = max_label.max(label);
            samples.push(Sample::Cifar {
                path: b.clone(),
                index,
                label,
            });
        }
    }
    let dir = if root.is_dir() {
        root
    } else {
        root.parent().unwrap_or(Path::new("."))
    };
    let classes = std::fs::read_to_string(dir.join("batches.meta.txt"))
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_else(|_| (0..=max_label.max(9)).map(|i| i.to_string()).collect());
    Ok(LabelledSet { classes, samples })
}

/// Recall of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRecall {
    pub class: usize,
    pub name: String,
    pub count: usize,
    pub correct: usize,
    pub recall: Option<f64>,
}

/// Accuracy of a model on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub model: PathBuf,
    pub images: PathBuf,
    pub samples: usize,
    pub top1: f64,
    pub top5: f64,
    pub per_class: Vec<ClassRecall>,
}

/// The rank of class `label` among `scores` (0 = top-1), as an argmax / top-k would place it:
/// a tie goes to the lower class index (numpy's and PyTorch's first-maximum rule), so a model
/// with constant logits is not scored perfect; a NaN score ranks above every number, and a NaN for
/// the true class (or a label beyond the scores) is never a hit.
pub fn rank_of(label: usize, scores: &[f32]) -> usize {
    let Some(mine) = scores.get(label).copied().filter(|s| !s.is_nan()) else {
        return usize::MAX;
    };
    scores
        .iter()
        .enumerate()
        .filter(|&(i, &s)| i != label && (s > mine || s.is_nan() || (s == mine && i < label)))
        .count()
}

/// Tallies predictions: `(label, rank of the label among the scores)` pairs.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    count: Vec<usize>,
    correct: Vec<usize>,
    top5: usize,
    n: usize,
}

impl Tally {
    /// Records one prediction from `scores` for true `label`.
    pub fn add(&mut self, label: usize, scores: &[f32]) {
        let rank = rank_of(label, scores);
        if self.count.len() <= label {
            self.count.resize(label + 1, 0);
            self.correct.resize(label + 1, 0);
        }
        self.count[label] += 1;
        self.n += 1;
        if rank == 0 {
            self.correct[label] += 1;
        }
        if rank < 5 {
            self.top5 += 1;
        }
    }

    /// The report for `classes` names.
    pub fn report(&self, model: &Path, images: &Path, classes: &[String]) -> EvalReport {
        let n = self.n.max(1) as f64;
        let k = classes.len().max(self.count.len());
        EvalReport {
            model: model.to_path_buf(),
            images: images.to_path_buf(),
            samples: self.n,
            top1: self.correct.iter().sum::<usize>() as f64 / n,
            top5: self.top5 as f64 / n,
            per_class: (0..k)
                .map(|c| {
                    let count = self.count.get(c).copied().unwrap_or(0);
                    let correct = self.correct.get(c).copied().unwrap_or(0);
                    ClassRecall {
                        class: c,
                        name: classes.get(c).cloned().unwrap_or_else(|| c.to_string()),
                        count,
                        correct,
                        recall: (count > 0).then(|| correct as f64 / count as f64),
                    }
                })
                .collect(),
        }
    }
}

/// `rtinfer eval` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    pub model: PathBuf,
    /// ImageFolder tree (one sub-folder per class) or CIFAR-10 binary batches.
    #[arg(long)]
    pub images: PathBuf,
    #[arg(long, default_value = "auto")]
    pub backend: String,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Config file whose [preprocess] and engine options apply (as in `run`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// Evaluate only the first N samples.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// Runs `rtinfer eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<u8> {
    let r = evaluate(&a)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{}: {} samples, top-1 {:.4}, top-5 {:.4}",
            r.model.display(),
            r.samples,
            r.top1,
            r.top5
        );
        for c in &r.per_class {
            let rec = c.recall.map_or("-".into(), |v| format!("{v:.4}"));
            println!(
                "  {:>4} {:<20} {:>6} samples  recall {rec}",
                c.class, c.name, c.count
            );
        }
    }
    Ok(0)
}

/// Evaluates a model in this process.
pub fn evaluate(a: &EvalArgs) -> anyhow::Result<EvalReport> {
    let mut raw = match &a.config {
        Some(p) => crate::config::read_raw(p)?,
        None => RawConfig::default(),
    };
    raw.run.model = Some(a.model.clone());
    raw.run.backend = Some(a.backend.clone());
    raw.run.threads = Some(a.threads);
    if a.ort_library.is_some() {
        raw.onnxruntime.library.clone_from(&a.ort_library);
    }
    let cfg = Config::from_raw(raw, a.config.as_deref())?;
    let set = LabelledSet::open(&a.images)?;
    let mut engine = crate::backend::load(&cfg.backend, &a.model)?;
    let mut pre = Preprocessor::new(engine.info().input, cfg.backend.preprocess)
        .with_context(|| format!("preprocessing for {}", a.model.display()))?;
    let mut frame = Frame::rgb24(32, 32);
    frame.captured_at = MonoTime::now();
    let mut tally = Tally::default();
    let n = a.limit.unwrap_or(usize::MAX).min(set.samples.len());
    for i in 0..n {
        let label = set.load(i, &mut frame)?;
        frame.seq = i as u64 + 1;
        pre.run(&frame, engine.input())?;
        engine.run()?;
        tally.add(label, engine.output());
    }
    Ok(tally.report(&a.model, &a.images, &set.classes))
}

#[cfg(test)]
mod tests {
    use super::rank_of;

    #[test]
    fn ties_go_to_the_lower_index_and_nan_never_hits() {
        assert_eq!(rank_of(2, &[0.1, 0.2, 0.7]), 0);
        assert_eq!(rank_of(0, &[0.1, 0.2, 0.7]), 2);
        // Constant logits: only class 0 is the argmax.
        let flat = [0.5f32; 10];
        assert_eq!(rank_of(0, &flat), 0);
        assert_eq!(rank_of(3, &flat), 3);
        assert_eq!(rank_of(9, &flat), 9, "not in the top 5 either");
        assert_eq!(rank_of(1, &[0.2, f32::NAN, 0.1]), usize::MAX);
        assert_eq!(rank_of(0, &[0.9, f32::NAN, 0.1]), 1, "a NaN ranks above");
        assert_eq!(
            rank_of(5, &[0.9, 0.1]),
            usize::MAX,
            "label beyond the scores"
        );
    }
}
