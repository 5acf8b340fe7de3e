#!/usr/bin/env python3
"""Synthetic volumes per second: our generator (LabelSynthesizer) against a plain
cornucopia.SynthFromLabelTransform on the raw FreeSurfer codes, side by side in one run.

    python benchmarks/synthesis_throughput.py LABEL_MAP [--size 160] [--n 3] [--device cuda]

Also times our generator with cornucopia's own per-class Gaussian-mixture loop (texture_bins=0),
to show what the vectorised GMM alone buys. Prints one line per generator (volumes/s,
seconds/volume, peak device memory) and the ratios.
"""
import argparse
import time
from dataclasses import replace

import nibabel as nib
import numpy as np
import torch


def crop_or_pad(data: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size,) * 3, data.dtype)
    centre = np.array(data.shape) // 2
    lo = np.maximum(centre - size // 2, 0)
    src = data[lo[0]:lo[0] + size, lo[1]:lo[1] + size, lo[2]:lo[2] + size]
    out[:src.shape[0], :src.shape[1], :src.shape[2]] = src
    return out


def timed(fn, n, device):
    fn(0)  # warm-up (kernels, allocations)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for k in range(n):
        fn(k + 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / n
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return seconds, peak


def main():
    import cornucopia as cc

    from bibsnet_trainer.synthesis import LabelSynthesizer, SynthesisConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("label_map")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    codes = crop_or_pad(np.asanyarray(nib.load(args.label_map).dataobj).astype(np.int32), args.size)
    n_labels = len(np.unique(codes))
    config = SynthesisConfig(skull_strip_probability=0.0)
    ours = LabelSynthesizer(config, voxel_mm=1.0, device=device)
    results = {}
    results["ours (LabelSynthesizer)"] = timed(lambda k: ours.sample(codes, seed=k), args.n, device)
    looped = LabelSynthesizer(replace(config, texture_bins=0), voxel_mm=1.0, device=device)
    results["ours, cornucopia's per-class GMM loop"] = timed(lambda k: looped.sample(codes, seed=k), args.n, device)
    if not args.skip_naive:
        naive = cc.SynthFromLabelTransform()  # follows the input tensor's device
        labels = torch.as_tensor(codes[None], dtype=torch.long, device=device)
        def plain(_):
            with torch.no_grad(), device:  # cornucopia 0.5.1 makes some tensors on the default device
                return naive(labels)
        results["plain cornucopia SynthFromLabelTransform"] = timed(plain, args.n, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; volume {args.size}^3, {n_labels} labels, {args.n} volumes each")
    for label, (seconds, peak) in results.items():
        print(f"{label:45s} {1 / seconds:8.2f} volumes/s  {seconds:8.3f} s/volume  peak {peak:.2f} GiB")
    ours_s = results["ours (LabelSynthesizer)"][0]
    for label, (seconds, _) in list(results.items())[1:]:
        print(f"speed-up of ours over {label}: {seconds / ours_s:.2f}x")


if __name__ == "__main__":
    main()
