"""A node function for the participant workflow's tests, imported by path ("stubs:segment_stub"):
tests/ is on sys.path (conftest.py) and MultiProc's workers inherit it."""
import os
from pathlib import Path

FUNCTION = "stubs:segment_stub"


def segment_stub(subject, out_dir, fail=False):
    """Count calls in a file per subject, write an output, or fail like a broken input would."""
    out = Path(out_dir)
    counter = out / f"calls-{subject}.txt"
    with open(counter, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    if fail:
        raise ValueError(f"sub-{subject}: T1w is unreadable")
    result = out / f"sub-{subject}_dseg.txt"
    result.write_text(subject)
    return {"dseg": str(result)}


def calls(out, subject):
    path = Path(out) / f"calls-{subject}.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0
