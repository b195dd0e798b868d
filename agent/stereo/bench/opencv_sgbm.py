#!/usr/bin/env python3
"""OpenCV StereoSGBM on raw 8-bit pairs, for `stereo bench` to time side by side.

Usage: opencv_sgbm.py DIR WIDTH HEIGHT MIN_DISP NUM_DISP THREADS MODES SECONDS
DIR holds pairNNN_left.raw / pairNNN_right.raw (8-bit, row-major). THREADS is a
comma-separated list of thread counts (cv2.setNumThreads), MODES a comma-separated
list of sgbm, hh, 3way, hh4 (OpenCV's MODE_SGBM, MODE_HH, MODE_SGBM_3WAY,
MODE_HH4). For every mode and pair it writes pairNNN_MODE.f32 (disparity in pixels,
<0 invalid), then for every thread count prints one JSON line with the median
milliseconds per frame (best of three windows). Needs
`pip install "opencv-python-headless<5"`.
"""
import glob, json, os, sys, time

import cv2
import numpy as np

d, w, h, mind, nd, threads, modes, seconds = sys.argv[1:9]
w, h, mind, nd, seconds = int(w), int(h), int(mind), int(nd), float(seconds)
threads = [int(t) for t in threads.split(",")]
MODES = {
    "sgbm": cv2.STEREO_SGBM_MODE_SGBM,
    "hh": cv2.STEREO_SGBM_MODE_HH,
    "3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    "hh4": cv2.STEREO_SGBM_MODE_HH4,
}
block = 5
pairs = []
for lp in sorted(glob.glob(os.path.join(d, "pair*_left.raw"))):
    rp = lp.replace("_left.raw", "_right.raw")
    l = np.fromfile(lp, dtype=np.uint8).reshape(h, w)
    r = np.fromfile(rp, dtype=np.uint8).reshape(h, w)
    pairs.append((lp, l, r))
for mode in modes.split(","):
    sgbm = cv2.StereoSGBM_create(
        minDisparity=mind,
        numDisparities=nd,
        blockSize=block,
        P1=8 * block * block,
        P2=32 * block * block,
        disp12MaxDiff=1,
        uniquenessRatio=8,
        speckleWindowSize=40,
        speckleRange=2,
        mode=MODES[mode],
    )
    for lp, l, r in pairs:
        raw = sgbm.compute(l, r)
        disp = raw.astype(np.float32) / 16.0
        # Invalid pixels hold (minDisparity - 1) * 16.
        disp[raw < mind * 16] = -1.0
        disp.tofile(lp.replace("_left.raw", "_%s.f32" % mode))
    for t in threads:
        cv2.setNumThreads(t)
        # Median frame time in each of three windows of SECONDS / 3, the best window
        # kept (as `stereo bench` times ours: a neighbour's burst on a shared machine
        # slows a whole window).
        medians, frames, i = [], 0, 0
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
        print(json.dumps({"mode": mode, "threads": t, "ms_median": min(medians), "frames": frames, "version": cv2.__version__}), flush=True)
