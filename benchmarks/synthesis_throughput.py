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

    python benchmarks/synthesis_throughput.py LABEL_MAP --profile [--size 160] [--device cuda]

profiles our generator (torch profiler, 3 volumes): operator calls per volume (on a GPU each is
at least one kernel launch, a floor on the time per volume), the operators that take the most
time, and the Python call sites (cornucopia, ours) that issue the most operators.
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
    parser.add_argument("--profile", action="store_true", help="where our generator's time and operators go")
    args = parser.parse_args()
    device = torch.device(args.device)
    full = np.asanyarray(nib.load(args.label_map).dataobj).astype(np.int32)
    if args.scaling:
        return scaling(full, args, device)
    if args.profile:
        return profile(crop_or_pad(full, args.size), device)
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


def profile(codes: np.ndarray, device, n: int = 3) -> None:
    import collections
    import traceback

    from torch.overrides import TorchFunctionMode
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from bibsnet_trainer.synthesis import LabelSynthesizer, SynthesisConfig

    synth = LabelSynthesizer(SynthesisConfig(skull_strip_probability=0.0), voxel_mm=1.0, device=device)
    synth.sample(codes, seed=0)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for k in range(n):
            synth.sample(codes, seed=k + 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = prof.key_averages()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    aten_calls = sum(e.count for e in events if e.key.startswith("aten::")) / n
    print(f"device: {name}; volume {codes.shape[0]}^3, {len(np.unique(codes))} labels, {n} volumes profiled")
    print(f"aten operator calls per volume: {aten_calls:.0f}")
    if device.type == "cuda":
        launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel")) / n
        syncs = sum(e.count for e in events if "Synchronize" in e.key or e.key == "cudaMemcpyAsync") / n
        print(f"kernel launches per volume: {launches:.0f}; synchronising calls and copies per volume: {syncs:.0f}")
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=20))

    sites = collections.Counter()

    class CountCallSites(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            stack = traceback.extract_stack()[:-1]
            # smoothing kernels are built on the host (synthesis/smoothing.py): no device launch
            if any(f.filename.endswith("synthesis/smoothing.py") for f in stack) and \
                    any(f.filename.endswith("cornucopia/utils/kernels.py") for f in stack):
                sites["(host) smoothing kernels built on the CPU"] += 1
                return func(*args, **(kwargs or {}))
            site = next((f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}" for f in reversed(stack)
                         if "/torch/" not in f.filename and not f.filename.endswith("synthesis_throughput.py")), "?")
            sites[site] += 1
            return func(*args, **(kwargs or {}))

    with CountCallSites():
        synth.sample(codes, seed=n + 1)
    host = sum(v for k, v in sites.items() if k.startswith("(host)"))
    print(f"torch calls per volume by call site (one volume, {sum(sites.values())} in all, "
          f"{sum(sites.values()) - host} on the synthesis device):")
    for site, count in sites.most_common(15):
        print(f"{count:7d}  {site}")


if __name__ == "__main__":
    main()
