"""1280x480 quality-90 4:2:2 JPEGs for docs/experiments/jpeg_decode_time.c: five real colour
photographs (scikit-image's test images, scaled), and the camera bench's kind of frame (a textured
gray image) with flat chroma and with chroma from its own brightness edges, as `camera::video`
writes it. Usage: python3 jpeg_frames.py OUT_DIR (needs opencv-python-headless, scikit-image)."""
import math
import os
import random
import sys

import cv2
import numpy as np
import skimage.data

W, H = 1280, 480
out = sys.argv[1] if len(sys.argv) > 1 else "frames"
os.makedirs(out, exist_ok=True)
params = [cv2.IMWRITE_JPEG_QUALITY, 90,
          cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]

for name in ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"]:
    rgb = getattr(skimage.data, name)()[..., :3]
    bgr = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (W, H), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(os.path.join(out, name + ".jpg"), bgr, params)

# The bench's texture: smooth shapes and edges with a little noise.
random.seed(1)
blobs = [(random.uniform(0, W), random.uniform(0, H), random.uniform(8, 60), random.uniform(-80, 80))
         for _ in range(40)]
g = np.zeros((H, W), np.int32)
for y in range(H):
    for x in range(W):
        v = 120 + 30 * math.sin(x * 0.05) * math.cos(y * 0.07)
        for bx, by, r, dv in blobs:
            if abs(x - bx) < r and abs(y - by) < r:
                v += dv
        g[y, x] = max(0, min(255, int(v + random.uniform(-4, 4))))
cv2.imwrite(os.path.join(out, "bench_flat_chroma.jpg"),
            cv2.cvtColor(g.astype(np.uint8), cv2.COLOR_GRAY2BGR), params)
pad = np.pad(g, ((0, 2), (0, 2)), mode="edge")
cb = np.clip(128 + pad[:H, 2:W + 2] - g, 16, 240)
cr = np.clip(128 + pad[2:H + 2, :W] - g, 16, 240)
ycrcb = np.dstack([g, cr, cb]).astype(np.uint8)
cv2.imwrite(os.path.join(out, "bench_edge_chroma.jpg"), cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR), params)
