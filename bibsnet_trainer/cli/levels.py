"""The two levels as typed entry points: a BIDS folder, a configuration and a selection of the data
in, the level's result out. The command line calls them after parsing; tests and benchmarks call
them without an argument list."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..bids.inputs import Session
from ..config import GroupConfig, ParticipantConfig
from ..runlog import run_log


@dataclass(frozen=True)
class Selection:
    """Which data a level reads: derivative folders holding label maps (besides
    bids_dir/derivatives), subjects, sessions, pybids filters per modality, validation."""
    derivatives: dict[str, Path] = field(default_factory=dict)
    participant_labels: list[str] | None = None
    session_ids: list[str] | None = None
    filters: dict = field(default_factory=dict)
    validate: bool = True


def sessions_of(bids_dir: Path, selection: Selection, level: str) -> list[Session]:
    """The sessions a level works on, every one checked as that level needs (label maps and
    readable ages for the group level, images for the participant level)."""
    from ..bids.inputs import build_layout, collect_sessions, find_derivatives

    derivatives = find_derivatives(bids_dir, dict(selection.derivatives))
    layout = build_layout(bids_dir, derivatives, validate=selection.validate)
    return collect_sessions(layout, participant_labels=selection.participant_labels,
                            session_ids=selection.session_ids, bids_filters=selection.filters,
                            need_labels=level == "group", need_images=level == "participant",
                            strict_ages=level == "group")


def group_level(bids_dir: Path, config: GroupConfig, selection: Selection = Selection()):
    """Train a model (`group.pipeline.run_group`); returns its GroupResult."""
    from ..group.pipeline import run_group

    sessions = sessions_of(bids_dir, selection, "group")
    _make_folders(config)
    with run_log(config.execution.work_dir, "group"):
        return run_group(sessions, config, bids_dir)


def participant_level(bids_dir: Path, config: ParticipantConfig, selection: Selection = Selection()) -> dict:
    """Segment every selected session; returns the keys of the sessions done, skipped and failed."""
    from ..participant.pipeline import run_participant

    sessions = sessions_of(bids_dir, selection, "participant")
    _make_folders(config)
    with run_log(config.execution.work_dir, "participant"):
        return run_participant(sessions, config, bids_dir)


def _make_folders(config: GroupConfig | ParticipantConfig) -> None:
    config.output_dir.mkdir(parents=True, exist_ok=True)
    config.execution.work_dir.mkdir(parents=True, exist_ok=True)
