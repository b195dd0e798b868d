#!/usr/bin/env python3
"""OpenCV StereoSGBM on raw 8-bit pairs, for `stereo bench` to time side by side.

Usage: opencv_sgbm.py DIR WIDTH HEIGHT NUM_DISP THREADS MODE SECONDS
DIR holds pairNNN_left.raw / pairNNN_right.raw (8-bit, row-major). For every pair it
writes pairNNN_opencv.f32 (disparity in pixels, <0 invalid) and prints one JSON line
with the median milliseconds per frame (best of three windows). Needs `pip install "opencv-python-headless<5"`.
"""
import glob, json, os, sys, time

import cv2
import numpy as np

d, w, h, nd, threads, mode, seconds = sys.argv[1:8]
w, h, nd, threads, seconds = int(w), int(h), int(nd), int(threads), float(seconds)
cv2.setNumThreads(threads)
block = 5
sgbm = cv2.StereoSGBM_create(
    minDisparity=0,
    numDisparities=nd,
    blockSize=block,
    P1=8 * block * block,
    P2=32 * block * block,
    disp12MaxDiff=1,
    uniquenessRatio=8,
    speckleWindowSize=40,
    speckleRange=2,
    mode={"sgbm": cv2.STEREO_SGBM_MODE_SGBM, "hh": cv2.STEREO_SGBM_MODE_HH, "hh4": cv2.STEREO_SGBM_MODE_HH4}[mode],
)
pairs = []
for lp in sorted(glob.glob(os.path.join(d, "pair*_left.raw"))):
    rp = lp.replace("_left.raw", "_right.raw")
    l = np.fromfile(lp, dtype=np.uint8).reshape(h, w)
    r = np.fromfile(rp, dtype=np.uint8).reshape(h, w)
    pairs.append((lp, l, r))
for lp, l, r in pairs:
    disp = sgbm.compute(l, r).astype(np.float32) / 16.0
    disp[disp < 0] = -1.0
    disp.tofile(lp.replace("_left.raw", "_opencv.f32"))
# Median frame time in each of three windows of SECONDS / 3, the best window kept
# (as `stereo bench` times ours: a neighbour's burst on a shared machine slows a
# whole window).
medians, frames, best = [], 0, float("inf")
i = 0
for _ in range(3):
    times = []
    t_end = time.perf_counter() + seconds / 3.0
    while time.perf_counter() < t_end or len(times) < 3:
        _, l, r = pairs[i % len(pairs)]
        t0 = time.perf_counter()
        sgbm.compute(l, r)
        times.append((time.perf_counter() - t0) * 1000.0)
        i += 1
    times.sort()
    medians.append(times[len(times) // 2])
    frames += len(times)
    best = min(best, times[0])
print(json.dumps({"ms_median": min(medians), "ms_best": best, "frames": frames, "threads": threads, "version": cv2.__version__}))
