//! The study's tooling: inspect, bench, advise, NeuralScale layouts, eval and sweep.

mod advise; // Eq. 1, fits against hand-computed values, the measured search on injected latencies
mod bench; // the protocol's run counts, statistics on scripted samples, memory across ratios
mod eval_sweep; // accuracy on generated labelled sets; sweep CSV rows and SVG charts
mod inspect; // parameters, MACs and CDL against closed forms; hand-built graphs
mod neuralscale; // published fits meet the parameter budget and spend more FLOPs
