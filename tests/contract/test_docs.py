"""The documents say what the code does: docs/usage.md lists exactly the options of the parser,
and every relative link in the README and docs/ leads to a file."""
import re

from bibsnet_trainer.cli.parser import build_parser

from conftest import ROOT


def _documented_options() -> set[str]:
    text = (ROOT / "docs" / "usage.md").read_text()
    section = text[text.index("## Options"):text.index("## Exit codes")]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    found = set()
    for cell in rows:
        for code in re.findall(r"`([^`]+)`", cell):
            found |= {m for m in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", code)}
    return found


def _parser_options() -> set[str]:
    options = set()
    for action in build_parser()._actions:
        options |= {o for o in action.option_strings if "_" not in o}   # --participant_label: an alias
    return options - {"-h", "--help"}


def test_usage_lists_every_option_of_the_parser_and_no_other():
    documented, parsed = _documented_options(), _parser_options()
    assert parsed - documented == set(), "in the parser, not in docs/usage.md"
    assert documented - parsed == set(), "in docs/usage.md, not in the parser"


def test_relative_links_lead_to_files():
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not re.match(r"[a-z]+://", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
