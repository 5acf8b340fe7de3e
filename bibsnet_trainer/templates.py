"""Age-matched TemplateFlow templates, resolved offline from TEMPLATEFLOW_HOME.

Nothing here touches the network, and templateflow itself is not imported (its API downloads
missing files and, with an empty home, fetches a skeleton): files are looked up in TemplateFlow's
on-disk layout, `tpl-<name>/[cohort-<n>/]tpl-<name>[_cohort-<n>]_res-<r>[_desc-<d>]_<suffix>.nii.gz`.
A file counts only when it is a real gzip file: TemplateFlow's skeleton holds 0-byte placeholders,
and DataLad clones broken symlinks, until a file is fetched.

Cohorts of MNIInfant by age in months (TemplateFlow tpl-MNIInfant/template_description.json,
"cohort": {"1": {"age": [0, 2]}, ..., "11": {"age": [44, 60]}}; Nibabies picks the first cohort
whose upper bound is >= the age, nibabies/utils/misc.py `cohort_by_months`):

    cohort  1: 0-2     2: 2-5     3: 5-8     4: 8-11    5: 11-14   6: 14-17
    cohort  7: 17-21   8: 21-27   9: 27-33  10: 33-44  11: 44-60

Older than 60 months: MNI152NLin2009cAsym (no cohort).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .errors import EXIT_DATA, BibsnetError

INFANT_TEMPLATE = "MNIInfant"
ADULT_TEMPLATE = "MNI152NLin2009cAsym"
# upper bound (months, inclusive as in Nibabies) of MNIInfant cohorts 1..11
MNIINFANT_COHORT_MAX_MONTHS = (2, 5, 8, 11, 14, 17, 21, 27, 33, 44, 60)
GZIP_MAGIC = b"\x1f\x8b"


class TemplateError(BibsnetError):
    """A template that is not available offline."""

    exit_code = EXIT_DATA


@dataclass(frozen=True)
class Template:
    name: str
    cohort: int | None = None

    @property
    def label(self) -> str:
        """`MNIInfant:cohort-2` (the NiPreps `--output-spaces` spelling)."""
        return self.name + (f":cohort-{self.cohort}" if self.cohort is not None else "")


def mniinfant_cohort(age_months: float) -> int:
    """MNIInfant cohort for an age in months (cohort 1 for ages <= 2, including preterm/negative)."""
    for cohort, upper in enumerate(MNIINFANT_COHORT_MAX_MONTHS, 1):
        if age_months <= upper:
            return cohort
    raise ValueError(f"age {age_months:g} months is past MNIInfant's cohorts (<= 60 months)")


def template_for_age(age_months: float | None, default: Template | None = None) -> Template:
    """MNIInfant (age-matched cohort) up to 60 months, MNI152NLin2009cAsym above. Without an age:
    `default` when given, else the adult template."""
    if age_months is None:
        return default or Template(ADULT_TEMPLATE)
    if age_months <= MNIINFANT_COHORT_MAX_MONTHS[-1]:
        return Template(INFANT_TEMPLATE, mniinfant_cohort(age_months))
    return Template(ADULT_TEMPLATE)


def templateflow_home(env: Mapping[str, str] | None = None) -> Path:
    """$TEMPLATEFLOW_HOME, else TemplateFlow's default (the user cache folder, ~/.cache/templateflow)."""
    env = os.environ if env is None else env
    if env.get("TEMPLATEFLOW_HOME"):
        return Path(env["TEMPLATEFLOW_HOME"]).expanduser().absolute()
    try:
        from platformdirs import user_cache_dir       # what templateflow itself uses; no network
        return Path(user_cache_dir("templateflow")).absolute()
    except ImportError:
        cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return (Path(cache) / "templateflow").absolute()


def _is_fetched(path: Path) -> bool:
    try:
        if not path.is_file():              # follows symlinks: a broken DataLad link is not a file
            return False
        with open(path, "rb") as handle:
            return handle.read(2) == GZIP_MAGIC
    except OSError:
        return False


def prefetch_command(template: Template, suffix: str = "T1w", resolution: int = 1,
                     desc: str | None = None, home: Path | None = None) -> str:
    """A shell command that downloads the file into `home` (run it where there is network)."""
    args = [repr(template.name)]
    if template.cohort is not None:
        args.append(f"cohort={template.cohort}")
    args += [f"resolution={resolution}", f"suffix={suffix!r}", f"desc={desc!r}"]
    prefix = f"TEMPLATEFLOW_HOME={home} " if home is not None else ""
    return f"{prefix}python -c \"import templateflow.api as t; t.get({', '.join(args)})\""


def template_file(template: Template, suffix: str = "T1w", resolution: int = 1, desc: str | None = None,
                  home: Path | None = None) -> Path:
    """The template image on disk (offline), or TemplateError naming the template, the folder
    searched and the command to pre-fetch it. `resolution` is TemplateFlow's res index (1: 1 mm for
    both templates; MNI152NLin2009cAsym spells it `res-01`); `desc=None` means no desc entity
    (`desc="brain"` for the skull-stripped image)."""
    home = Path(home) if home is not None else templateflow_home()
    folder = home / f"tpl-{template.name}"
    stem = f"tpl-{template.name}"
    if template.cohort is not None:
        folder = folder / f"cohort-{template.cohort}"
        stem += f"_cohort-{template.cohort}"
    pattern = re.compile(re.escape(stem) + r"_res-0*" + str(int(resolution))
                         + (re.escape(f"_desc-{desc}") if desc else "") + "_" + re.escape(suffix) + r"\.nii\.gz$")
    candidates = sorted(p for p in folder.glob(f"{stem}_res-*_{suffix}.nii.gz") if pattern.match(p.name))
    fetched = [p for p in candidates if _is_fetched(p)]
    if fetched:
        return fetched[0]
    what = f"{template.label} {suffix} (res-{resolution}{f', desc-{desc}' if desc else ''})"
    state = "only a placeholder that was never downloaded is" if candidates else "it is not"
    raise TemplateError(
        f"template {what} is not available offline: {state} in {folder}. Nothing is downloaded at run "
        f"time; pre-fetch it on a machine with network access into this TEMPLATEFLOW_HOME and mount it: "
        f"{prefetch_command(template, suffix, resolution, desc, home)}", folder)


def age_matched_template_file(age_months: float | None, suffix: str = "T1w", resolution: int = 1,
                              desc: str | None = None, home: Path | None = None) -> tuple[Template, Path]:
    template = template_for_age(age_months)
    return template, template_file(template, suffix, resolution, desc, home)


__all__ = ["Template", "TemplateError", "INFANT_TEMPLATE", "ADULT_TEMPLATE", "MNIINFANT_COHORT_MAX_MONTHS",
           "mniinfant_cohort", "template_for_age", "templateflow_home", "template_file",
           "age_matched_template_file", "prefetch_command"]
