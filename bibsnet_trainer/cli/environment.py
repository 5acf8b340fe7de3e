"""Where the app runs: the device (and why a GPU is not used when it is not), whether it runs in a container,
the default work folder."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import UsageError


LOG = logging.getLogger("bibsnet_trainer")


def resolve_device(choice: str) -> str:
    import torch
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device cuda requested but CUDA is not usable here ({cuda_versions()})")
    device = choice if choice != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    LOG.info(device_line(choice, device))
    return device


def device_line(choice: str, device: str) -> str:
    """One line at start: the device found, and why a GPU is not used when it is not."""
    import torch
    if device == "cuda":
        count = torch.cuda.device_count()
        more = f" and {count - 1} more" if count > 1 else ""
        return f"device: cuda ({torch.cuda.get_device_name(0)}{more}; {cuda_versions()})"
    if choice == "cpu":
        return f"device: cpu (--device cpu; {os.cpu_count()} CPU cores visible)"
    return f"device: cpu, no usable GPU ({cuda_versions()}); {os.cpu_count()} CPU cores visible"


def cuda_versions() -> str:
    """What decides whether CUDA works: the CUDA runtime torch was built for and the NVIDIA driver."""
    import torch
    built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA (a CPU build)"
    driver = "no NVIDIA driver loaded (/proc/driver/nvidia/version missing)"
    version_file = Path("/proc/driver/nvidia/version")
    if version_file.is_file():
        first = version_file.read_text(errors="replace").splitlines()[:1]
        driver = f"driver: {first[0].strip()}" if first else "driver version unreadable"
    return f"torch {torch.__version__} built for {built}; {driver}"


# a 3D nnU-Net iteration with a 64^3 patch and 5 stages costs ~3.6 s on 2 CPU cores (measured on
# a 2-core AMD EPYC); the gpu preset's network and patch are larger, so this is a lower bound
CPU_SECONDS_PER_3D_ITERATION = 3.6


def gpu_preset_on_cpu_warning(auto: bool, epochs: int, iterations: int, minutes: float | None) -> str:
    why = "no usable GPU: --device auto fell back to the CPU" if auto else "--device cpu"
    if minutes:
        cost = (f"--train-minutes {minutes:g} stops it long before nnU-Net's schedule ends, so the model "
                "will be undertrained")
    else:
        days = epochs * iterations * CPU_SECONDS_PER_3D_ITERATION / 86400
        cost = f"at {CPU_SECONDS_PER_3D_ITERATION:g} s or more per iteration that is {days:.0f} days or more"
    return (f"{why}, with the gpu preset (nnU-Net's 3d_fullres, {epochs} x {iterations} iterations): {cost}. "
            "Use --preset cpu (a 2D network trained in under an hour on a CPU) or run on a GPU")


def in_container(environ=None, root: Path = Path("/")) -> bool:
    environ = os.environ if environ is None else environ
    return bool(environ.get("APPTAINER_CONTAINER") or environ.get("SINGULARITY_CONTAINER")
                or environ.get("BIBSNET_IN_CONTAINER") or (root / ".dockerenv").exists())


def default_work_dir(output_dir: Path, environ=None, root: Path = Path("/")) -> Path:
    """./work, except in a container, where the current folder is the container's own and is lost
    with it: there, output_dir/work (ignored by the BIDS validator), so a re-run resumes."""
    return output_dir / "work" if in_container(environ, root) else Path.cwd() / "work"
