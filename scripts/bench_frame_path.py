"""OpenCV's frame path on the frames `scripts/bench_frame_path.sh` made: cvtColor to RGB,
resize (INTER_LINEAR), normalise into NCHW f32, one thread. Prints one `case` line per
(format, size, model side, resize mode) with the median and p99 thread CPU time per frame, in
the format of `cargo bench --bench frame_path`.

Usage: bench_frame_path.py FRAME_DIR ITERATIONS [FILTER]
"""

import os
import sys
import time

import cv2
import numpy as np

MEAN = np.array([0.4914, 0.4822, 0.4465])
STD = np.array([0.2470, 0.2435, 0.2616])
FORMATS = {
    "yuyv422": cv2.COLOR_YUV2RGB_YUYV,
    "yuv420p": cv2.COLOR_YUV2RGB_I420,
    "nv12": cv2.COLOR_YUV2RGB_NV12,
    "rgb24": None,
}
SIZES = [(640, 480), (1280, 720), (1920, 1080)]


def load(frame_dir, name, w, h):
    data = np.fromfile(os.path.join(frame_dir, f"{name}_{w}x{h}.raw"), dtype=np.uint8)
    if name == "yuyv422":
        return data.reshape(h, w, 2)
    if name in ("yuv420p", "nv12"):
        return data.reshape(h * 3 // 2, w)
    return data.reshape(h, w, 3)


def pipeline(code, side, mode):
    """The frame -> tensor function of one case."""
    params = cv2.dnn.Image2BlobParams(
        scalefactor=tuple(1.0 / (255.0 * STD)),
        size=(0, 0),
        mean=tuple(255.0 * MEAN),
        swapRB=False,
        ddepth=cv2.CV_32F,
        datalayout=cv2.DNN_LAYOUT_NCHW,
    )
    fill = tuple(float(v) for v in 255.0 * MEAN)

    def run(frame):
        rgb = frame if code is None else cv2.cvtColor(frame, code)
        h, w = rgb.shape[:2]
        if mode == "stretch":
            small = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_LINEAR)
        else:
            scale = min(side / w, side / h)
            fw, fh = max(1, round(w * scale)), max(1, round(h * scale))
            fitted = cv2.resize(rgb, (fw, fh), interpolation=cv2.INTER_LINEAR)
            top, left = (side - fh) // 2, (side - fw) // 2
            small = cv2.copyMakeBorder(
                fitted, top, side - fh - top, left, side - fw - left,
                cv2.BORDER_CONSTANT, value=fill,
            )
        return cv2.dnn.blobFromImageWithParams(small, params)

    return run


def bench(case, run, iterations):
    for _ in range(10):
        run()
    samples = []
    for _ in range(iterations):
        t = time.thread_time_ns()
        run()
        samples.append(time.thread_time_ns() - t)
    samples.sort()
    median = samples[len(samples) // 2] / 1e6
    p99 = samples[min(len(samples) - 1, len(samples) * 99 // 100)] / 1e6
    print(f"case {case:<40} median_ms {median:8.4f} p99_ms {p99:8.4f}")


REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
           8: cv2.IMREAD_REDUCED_COLOR_8}


def mjpeg(frame_dir, iterations, wanted):
    """imdecode (libjpeg-turbo: BGR, chroma upsampled) at full size and DCT-reduced, and the
    whole path into a 224x224 tensor (reduced as far as 224 allows, resize INTER_LINEAR, blob)."""
    params = cv2.dnn.Image2BlobParams(
        scalefactor=tuple(1.0 / (255.0 * STD)), size=(0, 0), mean=tuple(255.0 * MEAN),
        swapRB=True, ddepth=cv2.CV_32F, datalayout=cv2.DNN_LAYOUT_NCHW,
    )
    for w, h in SIZES:
        data = np.fromfile(os.path.join(frame_dir, f"mjpeg_{w}x{h}.jpg"), dtype=np.uint8)
        k224 = max(k for k in (1, 2, 4, 8) if -(-w // k) >= 224 and -(-h // k) >= 224)
        cases = [(f"mjpeg {w}x{h} decode full", 1, False)]
        cases += [(f"mjpeg {w}x{h} decode 1/{k}", k, False) for k in (2, 4, 8)]
        cases += [(f"mjpeg {w}x{h} 224x224 full", 1, True),
                  (f"mjpeg {w}x{h} 224x224 1/{k224}", k224, True)]
        for case, k, to_tensor in cases:
            if wanted not in case:
                continue

            def run(k=k, to_tensor=to_tensor):
                bgr = cv2.imdecode(data, REDUCED[k])
                if to_tensor:
                    small = cv2.resize(bgr, (224, 224), interpolation=cv2.INTER_LINEAR)
                    return cv2.dnn.blobFromImageWithParams(small, params)
                return bgr

            assert run().shape[:2] in ((-(-h // k), -(-w // k)), (1, 3)), run().shape
            bench(case, run, iterations)


def main():
    frame_dir, iterations = sys.argv[1], int(sys.argv[2])
    wanted = sys.argv[3] if len(sys.argv) > 3 else ""
    cv2.setNumThreads(1)
    print(f"# opencv {cv2.__version__}, threads {cv2.getNumThreads()}")
    mjpeg(frame_dir, min(iterations, 100), wanted)
    for name, code in FORMATS.items():
        for w, h in SIZES:
            frame = load(frame_dir, name, w, h)
            for side in (224, 32):
                for mode in ("stretch", "letterbox"):
                    case = f"{name} {w}x{h} {side}x{side} {mode}"
                    if wanted not in case:
                        continue
                    run = pipeline(code, side, mode)
                    out = run(frame)
                    assert out.shape == (1, 3, side, side), out.shape
                    for _ in range(10):
                        run(frame)
                    samples = []
                    for _ in range(iterations):
                        t = time.thread_time_ns()
                        run(frame)
                        samples.append(time.thread_time_ns() - t)
                    samples.sort()
                    median = samples[len(samples) // 2] / 1e6
                    p99 = samples[min(len(samples) - 1, len(samples) * 99 // 100)] / 1e6
                    print(f"case {case:<40} median_ms {median:8.4f} p99_ms {p99:8.4f}")


if __name__ == "__main__":
    main()
