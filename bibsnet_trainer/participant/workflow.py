"""The participant level as one nipype workflow, as NiPreps build theirs: `init_participant_wf`
holds one `init_session_wf` per subject/session, whose step node calls a plain function (by its
import path, "package.module:function") with the session and the run's configuration as objects.
It runs with the Linear plugin for one process, MultiProc for more, or the plugin of a
--nipype-plugin-file (`plugin_for`).

- A failing session does not stop the others (`stop_on_first_crash = false`); failures are
  collected from the plugin's status callback, with the message the node left in its folder and
  nipype's crash file (text, in `work_dir/crash/`, named after the session).
- Re-runs resume from the outputs written (the caller schedules only unfinished sessions), so
  step nodes always run rather than trust nipype's cache. Telemetry is off (NIPYPE_NO_ET=1).
"""
from __future__ import annotations

import importlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

os.environ.setdefault("NIPYPE_NO_ET", "1")   # before nipype is imported: no version check online

from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, TraitedSpec, traits  # noqa: E402
from nipype.pipeline import engine as pe  # noqa: E402

from ..runlog import quiet_nipype  # noqa: E402

quiet_nipype()

from ..config import NipypePlugin  # noqa: E402
from ..images import write_text_atomic  # noqa: E402

LOG = logging.getLogger(__name__)
WORKFLOW_NAME = "bibsnet_participant_wf"
ERROR_FILE = "bibsnet_error.txt"


def import_callable(path: str) -> Callable:
    """'package.module:function' (or 'package.module.function') -> the function."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"not an import path 'module:function': {path!r}")
    target = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{path} is not callable")
    return target


class _StepInputSpec(BaseInterfaceInputSpec):
    function = traits.Str(mandatory=True, desc="import path 'package.module:function' of the step")
    session = traits.Any(mandatory=True, desc="the session (bids.inputs.Session), as it is")
    context = traits.Dict(traits.Str, traits.Any, desc="the run's arguments of the step (model package, "
                                                       "configuration, BIDS folder), as they are")


class _StepOutputSpec(TraitedSpec):
    result = traits.Any(desc="the step's return value (picklable)")


class SessionStep(SimpleInterface):
    """Call `function(session, **context)`; on failure write 'Type: message' to ERROR_FILE in the
    node folder, where the parent reads it whichever process ran the node."""

    input_spec = _StepInputSpec
    output_spec = _StepOutputSpec

    def _run_interface(self, runtime):
        error_file = Path(runtime.cwd) / ERROR_FILE
        error_file.unlink(missing_ok=True)
        try:
            function = import_callable(self.inputs.function)
            self._results["result"] = function(self.inputs.session, **dict(self.inputs.context or {}))
        except BaseException as exc:
            write_text_atomic(error_file, f"{type(exc).__name__}: {exc}\n")
            raise
        return runtime


@dataclass
class WorkflowOutcome:
    done: list[str] = field(default_factory=list)          # session keys that succeeded
    failed: dict[str, str] = field(default_factory=dict)   # key -> error message
    results: dict[str, Any] = field(default_factory=dict)  # key -> the step's return value
    crash_files: dict[str, Path] = field(default_factory=dict)   # key -> nipype's crash file
    crash_dir: Path | None = None


def read_plugin_file(path: Path) -> NipypePlugin:
    """The plugin a YAML file names; ValueError (naming what is wrong) for anything else."""
    import yaml
    try:
        content = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(content, dict) or not isinstance(content.get("plugin"), str) or not content["plugin"]:
        raise ValueError("must be a YAML mapping with `plugin:` (a nipype plugin name, e.g. MultiProc, SLURM) "
                         "and optional `plugin_args:`")
    args = content.get("plugin_args") or {}
    if not isinstance(args, dict):
        raise ValueError("`plugin_args:` must be a mapping")
    unknown = set(content) - {"plugin", "plugin_args"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} (only plugin and plugin_args)")
    return NipypePlugin(content["plugin"], args)


def node_name(key: str, taken: set[str]) -> str:
    """A nipype-safe, unique node name for a session key."""
    base = re.sub(r"\W", "_", key) or "session"
    if base[0].isdigit():
        base = "s_" + base
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def plugin_for(nprocs: int, plugin: NipypePlugin | None = None) -> NipypePlugin:
    """The plugin a run uses: the plugin file's when given; Linear (in this process) for one
    process; MultiProc otherwise (fresh worker processes, sessions in parallel)."""
    if plugin is not None:
        return plugin
    if nprocs <= 1:
        return NipypePlugin("Linear", {})
    return NipypePlugin("MultiProc", {"n_procs": int(nprocs), "raise_insufficient": False, "mp_context": "forkserver"})


def init_session_wf(session, function: str, context: Mapping[str, Any], name: str, *, mem_gb: float = 1.0,
                    threads: int = 1) -> pe.Workflow:
    """One session's workflow: its step (validate, segment, write, QC for the participant level),
    given the session and the run's arguments as objects. The node always runs (a re-run resumes
    from the outputs written, not from nipype's cache) and is named after the session, so its
    crash file is too."""
    workflow = pe.Workflow(name=name)
    step = pe.Node(SessionStep(function=function, session=session, context=dict(context)),
                   name=f"segment_{name}", mem_gb=mem_gb, n_procs=threads, overwrite=True)
    workflow.add_nodes([step])
    return workflow


def init_participant_wf(sessions: Sequence, function: str, context: Mapping[str, Any], work_dir: Path, *,
                        mem_gb: float = 1.0, threads: int = 1, poll_seconds: float = 2.0,
                        name: str = WORKFLOW_NAME) -> tuple[pe.Workflow, dict[str, str]]:
    """The participant workflow: one `init_session_wf` per session (objects with a unique `.key`),
    independent of each other; returns it and step node name -> session key."""
    work_dir = Path(work_dir).absolute()
    if len({s.key for s in sessions}) != len(sessions):
        raise ValueError("session keys must be unique")
    workflow = pe.Workflow(name=name, base_dir=str(work_dir))
    workflow.config["execution"] = {
        "stop_on_first_crash": "false",
        "crashdump_dir": str(work_dir / "crash"),
        "crashfile_format": "txt",
        "remove_unnecessary_outputs": "false",
        "check_version": "false",
        "poll_sleep_duration": str(poll_seconds),
    }
    taken: set[str] = set()
    names: dict[str, str] = {}
    for session in sessions:
        session_wf = init_session_wf(session, function, context, node_name(session.key, taken), mem_gb=mem_gb,
                                     threads=threads)
        workflow.add_nodes([session_wf])
        names[f"segment_{session_wf.name}"] = session.key
    return workflow, names


def _node_error(node) -> str:
    try:
        folder = Path(node.output_dir())
        text = (folder / ERROR_FILE).read_text().strip()
        if text:
            return text
    except OSError:
        pass
    return "failed (see the crash file in the work folder)"


def _crash_file(crash_dir: Path, step_name: str) -> Path | None:
    found = sorted(crash_dir.glob(f"crash-*-{step_name}-*.txt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def run_workflow(workflow: pe.Workflow, names: Mapping[str, str], plugin: NipypePlugin,
                 on_end: Callable[[str], None] | None = None) -> WorkflowOutcome:
    """Run the workflow with `plugin` (its name and arguments go to nipype unchanged, with a status
    callback added). A failing session never stops the others; each is reported in the outcome
    with its message and crash file, never raised nor logged (the caller logs). `on_end(key)` is
    called as each session ends (progress)."""
    crash_dir = Path(workflow.base_dir) / "crash"
    outcome = WorkflowOutcome(crash_dir=crash_dir)
    if not names:
        return outcome
    finished: dict[str, Any] = {}
    crashed: dict[str, Any] = {}

    def status(node, event):
        if node.name not in names:
            return
        if event == "end":
            finished[node.name] = node
        elif event == "exception":
            crashed[node.name] = node
        if event in ("end", "exception") and on_end is not None:
            on_end(names[node.name])

    try:
        workflow.run(plugin=plugin.name, plugin_args={**plugin.args, "status_callback": status})
    except Exception as exc:          # nipype re-raises (Linear) or says "did not execute cleanly" after the rest ran
        if not crashed:
            raise
        LOG.debug("nipype: %s", exc)
    for name, key in names.items():
        if name in finished:
            node = finished[name]
            try:
                outcome.results[key] = node.result.outputs.result
            except Exception as exc:      # result file unreadable: treat as failed
                outcome.failed[key] = f"result could not be read ({type(exc).__name__}: {exc})"
                continue
            outcome.done.append(key)
        else:
            outcome.failed[key] = _node_error(crashed[name]) if name in crashed else "did not run"
            crash = _crash_file(crash_dir, name)
            if crash is not None:
                outcome.crash_files[key] = crash
    return outcome


__all__ = ["SessionStep", "NipypePlugin", "WorkflowOutcome", "init_participant_wf", "init_session_wf", "plugin_for",
           "read_plugin_file", "run_workflow", "import_callable", "node_name", "WORKFLOW_NAME"]
