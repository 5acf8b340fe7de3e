"""Subject-level splits: held-out test subjects, k validation folds, and the label maps synthesis
may draw from. Never two sessions of one subject on both sides; stratified by age bin where ages
are known; synthetic images only ever train, and never from a subject that validates or tests.
Pure functions over Session lists and subject -> age-bin maps."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ..errors import InputError
from ..bids.inputs import Session


@dataclass
class Split:
    development: list[Session]         # real sessions outside the test set (train + validation)
    test: list[Session]                # real sessions held out for the Dice report
    synth_sources: list[Session]       # label maps synthesis draws from (no test subject)
    val_folds: list[list[str]]         # per fold, the subjects nnU-Net validates on ([] = none real)
    validate_on_training: bool = False  # --train-on-all: nnU-Net validates on the real training cases

    @property
    def n_folds(self) -> int:
        return len(self.val_folds)

    def val(self, fold: int = 0) -> list[Session]:
        return [s for s in self.development if s.subject in set(self.val_folds[fold])]

    def train(self, fold: int = 0) -> list[Session]:
        return [s for s in self.development if s.subject not in set(self.val_folds[fold])]

    def synth_for(self, fold: int) -> list[Session]:
        """Label maps whose synthetic images may train this fold (not its validation subjects)."""
        return [s for s in self.synth_sources if s.subject not in set(self.val_folds[fold])]


def _by_bin(subjects: list[str], bins: dict[str, str | None]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for subject in subjects:
        groups.setdefault(str(bins.get(subject)), []).append(subject)
    return groups


def stratified_sample(subjects: list[str], n: int, bins: dict[str, str | None], rng: random.Random) -> list[str]:
    """n subjects drawn so that each age bin contributes in proportion to its size (largest
    remainder; ties broken at random)."""
    groups = _by_bin(subjects, bins)
    for members in groups.values():
        rng.shuffle(members)
    total = len(subjects)
    quota = {b: n * len(m) / total for b, m in groups.items()}
    take = {b: math.floor(q) for b, q in quota.items()}
    order = sorted(groups, key=lambda b: (-(quota[b] - take[b]), rng.random()))
    for b in order[: n - sum(take.values())]:
        take[b] += 1
    return sorted(s for b, members in groups.items() for s in members[: take[b]])


def stratified_folds(subjects: list[str], k: int, bins: dict[str, str | None], rng: random.Random) -> list[list[str]]:
    """k folds of subjects, each age bin dealt round-robin so every fold sees every bin."""
    folds: list[list[str]] = [[] for _ in range(k)]
    position = 0
    for b in sorted(_by_bin(subjects, bins)):
        members = _by_bin(subjects, bins)[b]
        rng.shuffle(members)
        for subject in members:
            folds[position % k].append(subject)
            position += 1
    return [sorted(f) for f in folds]


def split_subjects(sessions: list[Session], modalities: list[str], test_fraction: float, seed: int, *,
                   folds: int = 1, age_bins: dict[str, str | None] | None = None,
                   test_subjects: list[str] | None = None, train_on_all: bool | None = False) -> Split:
    """Held-out test subjects and validation folds are real subjects (all `modalities` and a label
    map); synthesis draws only from label maps of subjects not held out for testing. With
    `train_on_all`, no subject validates: every real subject not held out trains. `None` is a
    preset's default: the same, where there are such subjects and one fold."""
    bins = age_bins or {}
    labelled = [s for s in sessions if s.label_map]
    real = [s for s in labelled if all(m in s.images for m in modalities)]
    subjects = sorted({s.subject for s in real})
    rng = random.Random(seed)
    if test_subjects is not None:
        unknown = sorted(set(test_subjects) - set(subjects))
        if unknown:
            raise InputError(f"--test-subjects {' '.join(unknown)}: not a subject with {' and '.join(modalities)} "
                             f"images and a label map (those are: {' '.join(subjects) or 'none'})")
        test_subjects = set(test_subjects)
    else:
        n_test = min(len(subjects), max(1, math.ceil(test_fraction * len(subjects)))) if subjects else 0
        test_subjects = set(stratified_sample(subjects, n_test, bins, rng))
    rest = [s for s in subjects if s not in test_subjects]
    if train_on_all is None:
        train_on_all = bool(rest) and folds == 1
    if train_on_all:
        if not rest:
            raise InputError("--train-on-all needs real subjects (images and a label map) outside the held-out "
                             "test set; there are none", sessions[0].label_map)
        val_folds = [[]]
    elif folds > 1:
        if len(rest) < folds:
            raise InputError(f"{folds} folds need at least {folds} real subjects with images and label maps "
                             f"outside the held-out test set; there are {len(rest)}", sessions[0].label_map)
        val_folds = stratified_folds(rest, folds, bins, rng)
    else:
        val_folds = [stratified_sample(rest, 1, bins, rng) if len(rest) >= 2 else []]
    split = Split(development=[s for s in real if s.subject not in test_subjects],
                  test=[s for s in real if s.subject in test_subjects],
                  synth_sources=[s for s in labelled if s.subject not in test_subjects],
                  val_folds=val_folds, validate_on_training=train_on_all)
    if not split.synth_sources and not split.train(0):
        raise InputError("nothing left to train on once test subjects are held out; "
                         "add label maps or lower --test-fraction", sessions[0].label_map)
    return split
