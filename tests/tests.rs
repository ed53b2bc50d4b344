//! One integration test binary (ripgrep's layout): each module tests one area through the real
//! `rtinfer` binary or the library it is built from.

mod util;

mod daemon; // the run loop end to end: socket, counters, deadlines, exit codes
mod hot_loop; // zero heap allocations per frame in steady state (counting allocator)
mod preprocess; // resize modes and normalisation into engine buffers
mod quantize; // int8 PTQ: zoo models fully integer in ORT, QDQ arithmetic by hand, bad inputs
mod sources; // URIs, Y4M colourspaces against ffmpeg, image folders, pacing
mod status_socket; // HTTP on a Unix socket: routes, errors, stale sockets, the client table
mod zoo; // generated models: ONNX Runtime loads them, counts match the architecture text
