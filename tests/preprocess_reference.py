"""The reference of tests/preprocess_reference.rs: each [preprocess] case done the way the
training pipelines a user copies do it, with Pillow, OpenCV and numpy.

    preprocess_reference.py CASES.json OUTDIR

CASES.json is a list of {"name", "src": FILE.rgb, "src_size": [w, h], "dst_size": [w, h],
"filter": "pil-bilinear" | "pil-nearest" | "cv-linear" | "cv-nearest",
"resize": "stretch" | "letterbox", "align": [x, y] (each "start" | "center" | "end"),
"fill": [r, g, b] | "mean", "mean": [3], "std": [3]}; writes OUTDIR/NAME.f32, the float32 NCHW
tensor (1 x 3 x H x W, little-endian), and prints {"NAME": [picture w, h, x, y], ...}.

A letterbox is the usual one: scale = min(dw / sw, dh / sh), the picture resized to
floor(sw * scale + 0.5) x floor(sh * scale + 0.5), normalised, and pasted into a canvas of the
fill colour (normalised like a pixel; "mean" pads with 0 after normalising, as PaddleOCR does).
"""
import json
import sys

import cv2
import numpy as np
from PIL import Image


def resize(img, w, h, how):
    if how == "pil-bilinear":
        return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BILINEAR))
    if how == "pil-nearest":
        return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.NEAREST))
    if how == "cv-linear":
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    if how == "cv-nearest":
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)
    raise SystemExit(f"unknown filter {how}")


def offset(edge, length, space):
    slack = space - length
    return {"start": 0, "center": slack // 2, "end": slack}[edge]


def main():
    cases = json.load(open(sys.argv[1]))
    outdir = sys.argv[2]
    placed = {}
    cv2.setNumThreads(1)
    for c in cases:
        sw, sh = c["src_size"]
        dw, dh = c["dst_size"]
        img = np.fromfile(c["src"], dtype=np.uint8).reshape(sh, sw, 3)
        mean = np.array(c["mean"], dtype=np.float32)
        std = np.array(c["std"], dtype=np.float32)
        if c["resize"] == "stretch":
            w, h, x, y = dw, dh, 0, 0
        else:
            scale = min(dw / sw, dh / sh)
            w = min(max(int(np.floor(sw * scale + 0.5)), 1), dw)
            h = min(max(int(np.floor(sh * scale + 0.5)), 1), dh)
            x = offset(c["align"][0], w, dw)
            y = offset(c["align"][1], h, dh)
        picture = (resize(img, w, h, c["filter"]).astype(np.float32) / 255.0 - mean) / std
        if c["fill"] == "mean":
            canvas = np.zeros((dh, dw, 3), dtype=np.float32)
        else:
            fill = (np.array(c["fill"], dtype=np.float32) / 255.0 - mean) / std
            canvas = np.broadcast_to(fill, (dh, dw, 3)).copy()
        canvas[y:y + h, x:x + w] = picture
        canvas.transpose(2, 0, 1).astype("<f4").tofile(f"{outdir}/{c['name']}.f32")
        placed[c["name"]] = [w, h, x, y]
    print(json.dumps(placed))


main()
