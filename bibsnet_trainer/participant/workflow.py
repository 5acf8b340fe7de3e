"""Participant level as a nipype workflow: one node per subject/session calling a plain Python
function (given by its import path, "package.module:function", so nodes pickle cleanly), run with
the MultiProc plugin in a work folder.

- Re-runs reuse finished nodes: nipype caches each node under `work_dir/<workflow>/<node>/` keyed by
  a hash of its inputs (function path, keyword arguments, `cache_key`, and the size and mtime of
  `input_files`). A failed node leaves no cache and runs again next time.
- A failing session does not stop the others (`stop_on_first_crash = false`); failures are
  collected from the plugin's status callback and the message the node left in its folder.
- Crash files go to `work_dir/crash/` (text), telemetry is off (NIPYPE_NO_ET=1).
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

from nipype.interfaces.base import (BaseInterfaceInputSpec, File, InputMultiObject,  # noqa: E402
                                    SimpleInterface, TraitedSpec, traits)
from nipype.pipeline import engine as pe  # noqa: E402

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


class _CallInputSpec(BaseInterfaceInputSpec):
    function = traits.Str(mandatory=True, desc="import path 'package.module:function'")
    kwargs = traits.Dict(traits.Str, traits.Any, desc="keyword arguments (strings, numbers, lists, dicts)")
    input_files = InputMultiObject(File(exists=True),
                                   desc="files the call reads: a change (size/mtime) invalidates the cache")
    cache_key = traits.Str("", usedefault=True, desc="anything else that should invalidate the cache "
                                                     "(e.g. model name and release, package version)")


class _CallOutputSpec(TraitedSpec):
    result = traits.Any(desc="the function's return value (picklable)")


class CallFunction(SimpleInterface):
    """Call `function(**kwargs)`; on failure write 'Type: message' to ERROR_FILE in the node folder."""

    input_spec = _CallInputSpec
    output_spec = _CallOutputSpec

    def _run_interface(self, runtime):
        error_file = Path(runtime.cwd) / ERROR_FILE
        error_file.unlink(missing_ok=True)
        try:
            function = import_callable(self.inputs.function)
            self._results["result"] = function(**dict(self.inputs.kwargs or {}))
        except BaseException as exc:
            write_text_atomic(error_file, f"{type(exc).__name__}: {exc}\n")
            raise
        return runtime


@dataclass
class SessionJob:
    """One node: `key` names the session in reports (e.g. 'sub-01_ses-A')."""

    key: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_files: Sequence[str | os.PathLike] = ()


@dataclass
class WorkflowOutcome:
    done: list[str] = field(default_factory=list)        # ran now and succeeded
    cached: list[str] = field(default_factory=list)      # reused from an earlier run
    failed: dict[str, str] = field(default_factory=dict)  # key -> error message
    results: dict[str, Any] = field(default_factory=dict)  # key -> function's return value
    crash_dir: Path | None = None

    @property
    def succeeded(self) -> list[str]:
        return self.done + self.cached


@dataclass(frozen=True)
class NipypePlugin:
    """fMRIPrep's --nipype-plugin-file: `plugin:` (a nipype plugin name) and `plugin_args:`."""
    name: str
    args: Mapping[str, Any]


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


def build_workflow(jobs: Sequence[SessionJob], function: str, work_dir: Path, *, cache_key: str = "",
                   common_kwargs: Mapping[str, Any] | None = None, mem_gb: float = 1.0,
                   threads_per_node: int = 1, poll_seconds: float = 2.0,
                   name: str = WORKFLOW_NAME) -> tuple[pe.Workflow, dict[str, str]]:
    """The workflow (nodes not connected: sessions are independent) and node name -> session key."""
    work_dir = Path(work_dir).absolute()
    workflow = pe.Workflow(name=name, base_dir=str(work_dir))
    workflow.config["execution"] = {
        "stop_on_first_crash": "false",
        "crashdump_dir": str(work_dir / "crash"),
        "crashfile_format": "txt",
        "hash_method": "timestamp",
        "remove_unnecessary_outputs": "false",
        "check_version": "false",
        "poll_sleep_duration": str(poll_seconds),
    }
    taken: set[str] = set()
    names: dict[str, str] = {}
    if len({job.key for job in jobs}) != len(jobs):
        raise ValueError("session keys must be unique")
    for job in jobs:
        node = pe.Node(CallFunction(), name=node_name(job.key, taken), mem_gb=mem_gb, n_procs=threads_per_node)
        node.inputs.function = function
        node.inputs.kwargs = {**dict(common_kwargs or {}), **job.kwargs}
        node.inputs.cache_key = cache_key
        if job.input_files:
            node.inputs.input_files = [str(Path(f).absolute()) for f in job.input_files]
        workflow.add_nodes([node])
        names[node.name] = job.key
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


def run_sessions(jobs: Sequence[SessionJob], function: str, work_dir: Path, *, n_procs: int = 1,
                 cache_key: str = "", common_kwargs: Mapping[str, Any] | None = None, mem_gb: float = 1.0,
                 threads_per_node: int = 1, memory_gb: float | None = None,
                 mp_context: str | None = None, poll_seconds: float = 2.0,
                 plugin: NipypePlugin | None = None) -> WorkflowOutcome:
    """Run `function(**common_kwargs, **job.kwargs)` once per job with MultiProc (`n_procs` workers,
    `memory_gb` budget, scheduler polling every `poll_seconds`), or with `plugin` (a
    --nipype-plugin-file: its name and arguments go to nipype unchanged, with our status callback
    added). Failed sessions are reported in the outcome, never raised nor logged (the caller logs)."""
    outcome = WorkflowOutcome(crash_dir=Path(work_dir).absolute() / "crash")
    if not jobs:
        return outcome
    workflow, names = build_workflow(jobs, function, work_dir, cache_key=cache_key, common_kwargs=common_kwargs,
                                     mem_gb=mem_gb, threads_per_node=threads_per_node, poll_seconds=poll_seconds)
    started: set[str] = set()
    finished: dict[str, Any] = {}
    crashed: dict[str, Any] = {}

    def status(node, event):
        if node.name not in names:
            return
        if event == "start":
            started.add(node.name)
        elif event == "end":
            finished[node.name] = node
        elif event == "exception":
            crashed[node.name] = node

    if plugin is not None:
        plugin_name, plugin_args = plugin.name, {**plugin.args, "status_callback": status}
    else:
        plugin_name = "MultiProc"
        plugin_args = {"n_procs": max(1, int(n_procs)), "status_callback": status, "raise_insufficient": False}
        if memory_gb is not None:
            plugin_args["memory_gb"] = float(memory_gb)
        if mp_context is not None:
            plugin_args["mp_context"] = mp_context
    try:
        workflow.run(plugin=plugin_name, plugin_args=plugin_args)
    except RuntimeError as exc:          # nipype: "Workflow did not execute cleanly" after running the rest
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
            (outcome.done if name in started else outcome.cached).append(key)
        else:
            outcome.failed[key] = _node_error(crashed[name]) if name in crashed else "did not run"
    return outcome


__all__ = ["CallFunction", "NipypePlugin", "SessionJob", "WorkflowOutcome", "build_workflow", "read_plugin_file",
           "run_sessions",
           "import_callable", "node_name", "WORKFLOW_NAME"]
