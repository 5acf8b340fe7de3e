#!/usr/bin/env python3
"""Synthetic volumes per second: our generator (LabelSynthesizer) against a plain
cornucopia.SynthFromLabelTransform on the raw FreeSurfer codes, side by side in one run.

    python benchmarks/synthesis_throughput.py LABEL_MAP [--size 160] [--n 3] [--device cuda]

Also times our generator with cornucopia's own per-class Gaussian-mixture loop (texture_bins=0),
to show what the vectorised GMM alone buys. Prints one line per generator (volumes/s,
seconds/volume, peak device memory) and the ratios.

    python benchmarks/synthesis_throughput.py LABEL_MAP --scaling [--device cuda]

prints how our generator's time grows with volume size (64..160 cubed, all labels) and with the
number of labels (160 cubed, labels merged into fewer groups), one table.
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
    parser.add_argument("--scaling", action="store_true", help="time vs volume size and label count")
    args = parser.parse_args()
    device = torch.device(args.device)
    full = np.asanyarray(nib.load(args.label_map).dataobj).astype(np.int32)
    if args.scaling:
        return scaling(full, args, device)
    codes = crop_or_pad(full, args.size)
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


def fewer_labels(codes: np.ndarray, n: int) -> np.ndarray:
    """Merge the non-zero label values into n - 1 groups (0 stays background)."""
    values = np.unique(codes)
    brain = values[values > 0]
    lookup = np.zeros(int(values.max()) + 1, np.int32)
    for i, v in enumerate(brain):
        lookup[v] = brain[i % (n - 1)]
    return lookup[codes]


def scaling(full: np.ndarray, args, device) -> None:
    from bibsnet_trainer.synthesis import LabelSynthesizer, SynthesisConfig

    synth = LabelSynthesizer(SynthesisConfig(skull_strip_probability=0.0), voxel_mm=1.0, device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; {args.n} volumes per row (our generator)")
    print(f"{'volume':>8} {'labels':>7} {'s/volume':>9} {'volumes/s':>10} {'peak GiB':>9}")
    rows = [(size, None) for size in (64, 96, 128, 160)] + [(160, n) for n in (8, 16, 32)]
    for size, n_labels in rows:
        codes = crop_or_pad(full, size)
        if n_labels:
            codes = fewer_labels(codes, n_labels)
        seconds, peak = timed(lambda k: synth.sample(codes, seed=k), args.n, device)
        print(f"{size:>7}³ {len(np.unique(codes)):>7} {seconds:>9.3f} {1 / seconds:>10.2f} {peak:>9.2f}")


if __name__ == "__main__":
    main()
