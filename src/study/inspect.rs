//! What a model costs before it runs: parameters, MACs/FLOPs, the critical datapath length and
//! the width profile. The study explained latency by these counts; computing them from the ONNX
//! graph itself (not from the generator's bookkeeping) lets users check exporters' models too.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::shapes::{ShapeMap, Unsized};
use crate::onnx::pb::{self as onnx_pb, GraphProto, ModelProto};

/// Everything `rtinfer inspect` reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InspectReport {
    pub path: Option<PathBuf>,
    pub nodes: usize,
    /// Weight/bias elements (as `model.params` in `/status`).
    pub params: u64,
    /// `rtinfer.params_torch` of zoo models (the study's convention: unfolded BatchNorm).
    pub params_torch: Option<u64>,
    /// MACs of Conv, ConvTranspose, Gemm, MatMul (and quantized forms) over the sized nodes.
    pub macs: u64,
    /// 2 x `macs`.
    pub flops: u64,
    /// `rtinfer.flops_thop` of zoo models.
    pub flops_thop: Option<u64>,
    /// False when some node could not be sized: `macs` is then a lower bound.
    pub macs_complete: bool,
    /// Nodes whose shapes could not be inferred, as `"name (OpType): reason"`.
    pub unsized_ops: Vec<String>,
    /// Number of nodes left unsized only because something upstream was.
    pub unsized_downstream: usize,
    /// Critical datapath length: nodes on the longest path.
    pub cdl: usize,
    /// Output channels of each convolution, in graph order (the study's Fig. 21).
    pub conv_widths: Vec<u64>,
    pub convs: usize,
    /// Convolutions that run quantized (QLinearConv, ConvInteger, or Conv fed by DequantizeLinear).
    pub convs_quantized: usize,
    /// Node count by operator type.
    pub ops: BTreeMap<String, usize>,
}

/// Why a model could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Onnx(#[from] onnx_pb::OnnxError),
    #[error("model {path}: the graph has a cycle through node {node:?}")]
    Cycle { path: String, node: String },
}

/// Reads and inspects an ONNX file.
pub fn inspect_file(path: &Path) -> Result<InspectReport, InspectError> {
    let model = onnx_pb::read_model(path)?;
    let mut r = inspect(&model).map_err(|node| InspectError::Cycle {
        path: path.display().to_string(),
        node,
    })?;
    r.path = Some(path.to_path_buf());
    Ok(r)
}

/// Inspects a decoded model; `Err(node)` names a node on a cycle.
pub fn inspect(model: &ModelProto) -> Result<InspectReport, String> {
    let empty = GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let mut shapes = ShapeMap::new(graph);
    let mut macs = 0u64;
    let mut unsized_ops = Vec::new();
    let mut downstream = 0;
    for node in &graph.node {
        match shapes.infer(node) {
            Ok(m) => macs = macs.saturating_add(m),
            Err(Unsized::Upstream) => downstream += 1,
            Err(Unsized::UnknownOp) => unsized_ops.push(format!(
                "{} ({}): operator not supported by shape inference",
                node.name, node.op_type
            )),
            Err(Unsized::Failed(why)) => {
                unsized_ops.push(format!("{} ({}): {why}", node.name, node.op_type))
            }
        }
    }
    let (conv_widths, convs_quantized) = conv_profile(graph);
    let meta = |k: &str| onnx_pb::metadata(model, k).and_then(|v| v.parse().ok());
    let mut ops = BTreeMap::new();
    for n in &graph.node {
        *ops.entry(n.op_type.clone()).or_insert(0) += 1;
    }
    Ok(InspectReport {
        path: None,
        nodes: graph.node.len(),
        params: onnx_pb::model_params(model),
        params_torch: meta("rtinfer.params_torch"),
        macs,
        flops: macs.saturating_mul(2),
        flops_thop: meta("rtinfer.flops_thop"),
        macs_complete: unsized_ops.is_empty() && downstream == 0,
        unsized_ops,
        unsized_downstream: downstream,
        cdl: critical_datapath_length(graph)?,
        convs: conv_widths.len(),
        conv_widths,
        convs_quantized,
        ops,
    })
}

/// Nodes on the longest path through the graph (graph inputs, initializers and outputs are not
/// nodes; a path may start at any node). Nodes need not be listed in topological order; a
/// cycle returns the name of a node on it.
pub fn critical_datapath_length(graph: &GraphProto) -> Result<usize, String> {
    let producer: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .filter(|(o, _)| !o.is_empty())
        .collect();
    let preds: Vec<Vec<usize>> = graph
        .node
        .iter()
        .map(|n| {
            let mut p: Vec<usize> = n
                .input
                .iter()
                .filter_map(|i| producer.get(i.as_str()).copied())
                .collect();
            p.sort_unstable();
            p.dedup();
            p
        })
        .collect();
    // Depth-first with an explicit stack (deep graphs must not overflow the thread stack).
    const TODO: usize = 0;
    const OPEN: usize = usize::MAX;
    let mut depth = vec![TODO; graph.node.len()];
    for start in 0..graph.node.len() {
        let mut stack = vec![(start, 0usize)];
        while let Some(&mut (n, ref mut next)) = stack.last_mut() {
            if *next == 0 {
                if depth[n] != TODO && depth[n] != OPEN {
                    stack.pop();
                    continue;
                }
                depth[n] = OPEN;
            }
            if let Some(&p) = preds[n].get(*next) {
                *next += 1;
                match depth[p] {
                    OPEN => return Err(graph.node[p].name.clone()),
                    TODO => stack.push((p, 0)),
                    _ => {}
                }
            } else {
                depth[n] = 1 + preds[n].iter().map(|&p| depth[p]).max().unwrap_or(0);
                stack.pop();
            }
        }
    }
    Ok(depth.into_iter().max().unwrap_or(0))
}

/// Output channels of each convolution and how many run quantized.
fn conv_profile(graph: &GraphProto) -> (Vec<u64>, usize) {
    let dims: HashMap<&str, &[i64]> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.dims.as_slice()))
        .collect();
    let dequant: HashMap<&str, &str> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear")
        .filter_map(|n| Some((n.output.first()?.as_str(), n.input.first()?.as_str())))
        .collect();
    let mut widths = Vec::new();
    let mut quantized = 0;
    for n in &graph.node {
        let (slot, q) = match n.op_type.as_str() {
            "Conv" | "ConvTranspose" => (1, false),
            "ConvInteger" => (1, true),
            "QLinearConv" => (3, true),
            _ => continue,
        };
        let Some(w) = n.input.get(slot).map(String::as_str) else {
            continue;
        };
        let via_dq = dequant.get(w).copied();
        let w = via_dq.unwrap_or(w);
        let d = dims.get(w).copied().unwrap_or(&[]);
        let out = if n.op_type == "ConvTranspose" {
            d.get(1).map(|&c| c * super::shapes::int_or(n, "group", 1))
        } else {
            d.first().copied()
        };
        widths.push(out.unwrap_or(0).max(0) as u64);
        if q || via_dq.is_some() {
            quantized += 1;
        }
    }
    (widths, quantized)
}

/// The human-readable report.
pub fn render(r: &InspectReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if let Some(p) = &r.path {
        let _ = writeln!(s, "model        {}", p.display());
    }
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let _ = writeln!(s, "nodes        {}", r.nodes);
    let _ = writeln!(
        s,
        "parameters   {} (torch convention: {})",
        r.params,
        opt(r.params_torch)
    );
    let bound = if r.macs_complete {
        ""
    } else {
        " (lower bound: unsized ops below)"
    };
    let _ = writeln!(s, "MACs         {}{bound}", r.macs);
    let _ = writeln!(s, "FLOPs        {} (thop: {})", r.flops, opt(r.flops_thop));
    let _ = writeln!(s, "CDL          {}", r.cdl);
    let _ = writeln!(
        s,
        "convs        {} ({} quantized)",
        r.convs, r.convs_quantized
    );
    let w: Vec<String> = r.conv_widths.iter().map(u64::to_string).collect();
    let _ = writeln!(s, "conv widths  {}", w.join(" "));
    for u in &r.unsized_ops {
        let _ = writeln!(s, "unsized      {u}");
    }
    if r.unsized_downstream > 0 {
        let _ = writeln!(
            s,
            "unsized      {} nodes downstream of the above",
            r.unsized_downstream
        );
    }
    s
}

/// `rtinfer inspect` arguments.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// ONNX model file.
    pub model: PathBuf,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the layer-width profile as an SVG chart.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// Runs `rtinfer inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<u8> {
    let r = inspect_file(&args.model)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", render(&r));
    }
    if let Some(svg) = &args.plot {
        let title = format!("layer widths: {}", args.model.display());
        super::plot::width_profile(svg, &title, &r.conv_widths)?;
    }
    Ok(0)
}
