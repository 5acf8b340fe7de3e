"""Model registry: the model packages installed in one or more models folders (each a folder with
`manifest.json`), and the choice of one for a subject/session.

Folders searched, in order: `output_dir/models`, then every folder of `$BIBSNET_MODELS_DIR`
(os.pathsep-separated). Scanning reads manifests only; checksums are verified when the chosen
package is opened (`models.package.open_package`).

Choice (`choose_model`, pure): `override` (--model) always wins. Otherwise, among the packages whose
modalities are all available and whose age range does not exclude the age:
  1. more input channels first (T1w+T2w present: the two-channel model),
  2. a model whose age range contains the age before one without a range; among ranges, the
     narrower one (without an age: range-less models first, then the widest range),
  3. T1w-only before T2w-only,
  4. the newest release (`rYYYYMMDD`),
  5. the folder searched first, then the name (deterministic).
Age ranges are `[min_months, max_months]`, both bounds inclusive (a model trained on subjects of
one age, `[a, a]`, serves age a), either bound may be null (open). Without an age, every range is accepted but range-less models come first.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..bids.derivatives import MODELS
from ..errors import ModelError
from .package import MANIFEST, find_packages

LOG = logging.getLogger(__name__)
ENV_MODELS_DIR = "BIBSNET_MODELS_DIR"
KNOWN_MODALITIES = ("T1w", "T2w")
_RELEASE = re.compile(r"^r(\d{8})$")


@dataclass(frozen=True)
class ModelInfo:
    """One installed package, as its manifest describes it."""

    path: Path
    name: str
    release: str
    modalities: tuple[str, ...]
    age_range: tuple[float | None, float | None] | None = None
    order: int = 0                                   # position in the scan (folder priority)
    manifest: Mapping = field(default_factory=dict, compare=False, repr=False)

    def fits_age(self, age_months: float | None) -> bool:
        if age_months is None or self.age_range is None:
            return True
        low, high = self.age_range
        # both ends included: a package's age_range is the youngest and oldest age it learnt from
        return (low is None or age_months >= low) and (high is None or age_months <= high)

    def describe(self) -> str:
        return (f"{self.name} {self.release or '(no release)'} [{'+'.join(self.modalities)}, "
                f"ages {format_age_range(self.age_range)}] at {self.path}")


def format_age_range(age_range) -> str:
    if age_range is None:
        return "any"
    low, high = age_range
    if low is None:
        return f"<{high:g} months"
    if high is None:
        return f">={low:g} months"
    return f"{low:g}-{high:g} months"


def parse_age_range(value, where: Path | None = None) -> tuple[float | None, float | None] | None:
    """Manifest `age_range`: null, or [min_months, max_months] (either bound may be null)."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ModelError(f"age_range must be null or [min_months, max_months], found {value!r}", where)
    bounds = []
    for bound in value:
        if bound is None:
            bounds.append(None)
            continue
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            raise ModelError(f"age_range bound {bound!r} is not a number of months", where)
        bounds.append(float(bound))
    low, high = bounds
    if low is None and high is None:
        return None
    if low is not None and high is not None and low > high:   # equal bounds: trained on one age
        raise ModelError(f"age_range {value!r} is empty (min must not be above max)", where)
    return low, high


def model_info(package: Path, manifest: Mapping, order: int = 0) -> ModelInfo:
    """A ModelInfo from a manifest already read (e.g. by models.open_package for --model)."""
    package = Path(package)
    where = package / MANIFEST
    modalities = manifest.get("modalities")
    if (not isinstance(modalities, list) or not modalities
            or any(m not in KNOWN_MODALITIES for m in modalities) or len(set(modalities)) != len(modalities)):
        raise ModelError(f"manifest 'modalities' must be a non-empty list of {'/'.join(KNOWN_MODALITIES)}, "
                         f"found {modalities!r}", where)
    name = manifest.get("name") or package.name
    return ModelInfo(path=package, name=str(name), release=str(manifest.get("release") or ""),
                     modalities=tuple(modalities), age_range=parse_age_range(manifest.get("age_range"), where),
                     order=order, manifest=dict(manifest))


def models_dirs(output_dir: Path | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    """Folders to search: output_dir/models, then $BIBSNET_MODELS_DIR (os.pathsep-separated)."""
    env = os.environ if env is None else env
    folders: list[Path] = []
    if output_dir is not None:
        folders.append(Path(output_dir) / MODELS)
    folders += [Path(p) for p in (env.get(ENV_MODELS_DIR) or "").split(os.pathsep) if p.strip()]
    unique: list[Path] = []
    for folder in folders:
        if all(folder.resolve() != seen.resolve() for seen in unique):
            unique.append(folder)
    return unique


def scan_models(folders: Iterable[Path]) -> list[ModelInfo]:
    """Every package (`*/manifest.json`) directly under the folders, in folder order. A package whose
    manifest cannot be used is skipped with a warning (one broken package must not hide the others)."""
    found: list[ModelInfo] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for package in find_packages(folder):
            manifest_path = package / MANIFEST
            try:
                manifest = json.loads(manifest_path.read_text())
                if not isinstance(manifest, dict):
                    raise ModelError("manifest.json must hold a JSON object", manifest_path)
                found.append(model_info(package, manifest, order=len(found)))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                LOG.warning("%s: unreadable manifest, package skipped (%s)", manifest_path, exc)
            except ModelError as exc:
                LOG.warning("%s; package skipped", exc)
    return found


def _release_key(release: str) -> int:
    match = _RELEASE.match(release or "")
    return int(match.group(1)) if match else -1


def _rank(model: ModelInfo, age_months: float | None) -> tuple:
    """Smaller is better."""
    if model.age_range is None:
        specificity, width = (1 if age_months is not None else 0), math.inf
    else:
        low, high = model.age_range
        specificity = 0 if age_months is not None else 1
        width = (high if high is not None else math.inf) - (low if low is not None else -math.inf)
        width = width if age_months is not None else -width   # known age: narrowest; unknown: widest
    return (-len(model.modalities), specificity, width, model.modalities != ("T1w",),
            -_release_key(model.release), model.order, model.name)


def choose_model(packages: Sequence[ModelInfo], available_modalities: Iterable[str],
                 age_months: float | None = None, override: ModelInfo | None = None,
                 searched: Sequence[Path] = ()) -> ModelInfo:
    """The package to segment a subject/session with (see the module docstring for the rules).

    `searched`: the models folders that were scanned, named in the error when nothing fits."""
    if override is not None:
        return override
    available = set(available_modalities)
    fitting = [m for m in packages if set(m.modalities) <= available and m.fits_age(age_months)]
    if fitting:
        return min(fitting, key=lambda m: _rank(m, age_months))
    folders = [Path(f) for f in searched]
    where = ", ".join(str(f) for f in folders) or "(no models folder)"
    age = "unknown age" if age_months is None else f"age {age_months:g} months"
    if packages:
        listing = "; ".join(m.describe() for m in packages)
        message = (f"no model package fits modalities {'+'.join(sorted(available)) or 'none'} at {age}. "
                   f"Installed in {where}: {listing}. Give --model, or install a fitting package "
                   f"(bibsnet-models install PACKAGE.zip MODELS_DIR)")
    else:
        message = (f"no model package installed in {where}; run the group level first, give --model, "
                   f"set ${ENV_MODELS_DIR}, or install one (bibsnet-models install PACKAGE.zip MODELS_DIR)")
    raise ModelError(message, folders[0] if folders else None)


__all__ = ["ModelInfo", "ENV_MODELS_DIR", "models_dirs", "scan_models", "model_info", "parse_age_range",
           "choose_model", "format_age_range"]
