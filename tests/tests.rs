//! One integration test binary (ripgrep's layout): each module tests one area through the real
//! `rtinfer` binary or the library it is built from.

mod util;

mod camera; // V4L2 pixel formats vs ffmpeg, MJPEG without Huffman tables, fake-device reconnect
mod daemon; // the run loop end to end: socket, counters, deadlines, exit codes
mod detect; // issue 15: YOLO heads planted in constructed graphs: layouts, NMS, box mapping
mod frame_path; // preprocessing from YUYV/NV12/I420/... against converting first, every ISA alike
mod governor; // the real-time governor: ladders of fake-DPU and ONNX Runtime models, steps, pins
mod hardening; // issue 18: each defect of the adversarial pass, reproduced
mod hot_loop; // zero heap allocations per frame in steady state (counting allocator)
mod limits; // frame-size limits before allocation: images, Y4M, cameras, MJPEG, eval
mod mjpeg; // the baseline MJPEG decoder vs ffmpeg and cjpeg: samplings, DCT scaling, damage
mod models; // issue 15: models in the wild: symbolic dims, final Softmax, several outputs, maps
mod outputs; // GET /results, MQTT through mosquitto, the page in chromium, promtool rules, Grafana
mod power; // meters on pty emulators and fake sysfs trees, the study figures, unplug/replug
mod preprocess; // resize modes and normalisation into engine buffers
mod preprocess_reference; // [preprocess] filters, fill and alignment against Pillow, OpenCV, numpy
mod quantize; // int8 PTQ: zoo models fully integer in ORT, QDQ arithmetic by hand, bad inputs
mod realtime; // cancel watchdog, SCHED_FIFO, mlock under prlimit, overrun policy
mod service; // systemd: sd_notify, SIGHUP reload, /metrics, TCP, journald, the unit file
mod sources; // URIs, Y4M colourspaces against ffmpeg, image folders, pacing
mod status_socket; // HTTP on a Unix socket: routes, errors, stale sockets, the client table
mod streams; // ffmpeg sources: any container, HTTP and RTSP on loopback, the child's lifetime
mod study; // study tooling: inspect, bench, sweep, advise, NeuralScale, eval
mod swap; // hot swap through a real watch folder: renames, bad files, slow writers
mod tensorrt; // the TensorRT layer against the CPU test double: I/O, errors, calibration, cache
mod trt_headers; // the TensorRT double held to the real 10.x headers: deprecations, noexcept
mod vitis; // the Vitis AI backend through libloading on a fake DPU library
mod zoo; // generated models: ONNX Runtime loads them, counts match the architecture text
