import hashlib
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("NIPYPE_NO_ET", "1")
sys.path.insert(0, str(Path(__file__).parent))   # the helpers (phantoms, oracle) for every test folder

ROOT = Path(__file__).resolve().parents[1]       # the repository
TESTS = Path(__file__).resolve().parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def tree_digest(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file under root (to prove an input tree is unchanged)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def phantom_bids(tmp_path):
    from phantoms import write_bids
    return write_bids(tmp_path / "bids", {"01": "both", "02": "both", "03": "labels", "04": "image"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """For pytest-xdist's `--dist loadgroup` (`make test` runs two workers): the tests that train a
    model or run a benchmark (marked slow) go to one worker, one after another, since two trainings
    at once on two cores take three times as long each; every other module's tests stay together
    on one worker, so its module fixtures are built once."""
    for item in items:
        group = "slow" if item.get_closest_marker("slow") else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))
