"""A step function for the participant workflow's tests, imported by path ("stubs:segment_stub"):
tests/ is on sys.path (conftest.py) and MultiProc's workers inherit it."""
import os
from dataclasses import dataclass
from pathlib import Path

FUNCTION = "stubs:segment_stub"


@dataclass(frozen=True)
class StubSession:
    """What the workflow needs of a session: a unique key (and what the stub reads)."""
    subject: str
    session: str | None = None

    @property
    def key(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")


def segment_stub(session, out_dir, fail=()):
    """Count calls in a file per subject, write an output, or fail like a broken input would."""
    out = Path(out_dir)
    with open(out / f"calls-{session.subject}.txt", "a") as handle:
        handle.write(f"{os.getpid()}\n")
    if session.subject in fail:
        raise ValueError(f"sub-{session.subject}: T1w is unreadable")
    result = out / f"sub-{session.subject}_dseg.txt"
    result.write_text(session.subject)
    return {"dseg": str(result)}


def calls(out, subject):
    path = Path(out) / f"calls-{subject}.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0
