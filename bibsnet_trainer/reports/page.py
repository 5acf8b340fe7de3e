"""One page template for the app's three HTML pages (the group Dice report, each session's QC
report, `output_dir/index.html`): the head with one CSS block, the title, the sections, and a footer
with what produced the page (its provenance)."""
from __future__ import annotations

import html
from typing import Iterable

from .. import __version__
from .provenance import provenance_html

INDEX_LINK = "../index.html"    # from a report in output_dir/reports back to output_dir/index.html

# every class a page uses: grades (Dice), QC status and colour swatches, the synthetic-only warning
CSS = """body{font-family:sans-serif;max-width:1400px;margin:1.5em auto;padding:0 1em}
p,ul,ol{max-width:70em}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:2px 8px}
.excellent{background:#d9f0d3} .good{background:#eef7e0} .pass{background:#fff7d6} .fail{background:#fbe0dc}
.absent{background:#eeeeee}
.warn{background:#fbe0dc;border:2px solid #d73027;padding:8px;font-size:1.15em}
.status{font-size:1.3em;padding:6px 12px;display:inline-block}
.swatch{display:inline-block;width:1.4em;height:0.9em;border:1px solid #333;background:#000}
footer{margin-top:2em;border-top:1px solid #ccc}"""


def section(heading: str | None, *parts: str) -> str:
    """A section's HTML: its <h2> heading (escaped; none with None), then its parts as given."""
    return (f"<h2>{html.escape(heading)}</h2>" if heading else "") + "".join(parts)


def html_page(title: str, heading: str, sections: Iterable[str], *, provenance: dict | None = None,
              back: str | None = INDEX_LINK) -> str:
    """The page: head (title, the CSS), a link `back` (to the index; None: none), the heading,
    each non-empty section (HTML) in a <section>, and the footer: the provenance (what produced
    the page, methods, citations) or, without one, the app's name and version."""
    esc = html.escape
    body = "\n".join(f"<section>{s}</section>" for s in sections if s)
    link = f"<p><a href='{esc(back)}'>&larr; all outputs</a></p>" if back else ""
    footer = provenance_html(provenance) or f"<p>bibsnet-trainer {esc(__version__)}</p>"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>\n"
            f"<style>{CSS}</style></head>\n<body>{link}<h1>{esc(heading)}</h1>\n{body}\n"
            f"<footer>{footer}</footer>\n</body></html>\n")
