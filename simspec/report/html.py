"""One self-contained HTML page: Markdown text (headings, lists, tables, code) as HTML and
figures embedded as base64 PNG, with no external asset, so the file can be mailed or
archived alone.

Only the Markdown that simspec writes is understood: `#`/`##` headings, `- ` items,
`|`-tables whose second line is the `|---|` rule, ``` fences, paragraphs, `code` and **bold**.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .2rem .6rem; white-space: nowrap; }
th { background: #f3f3f3; } td { font-variant-numeric: tabular-nums; }
code, pre { font: 13px ui-monospace, monospace; background: #f6f6f6; }
pre { padding: .6rem; overflow-x: auto; } figure { margin: 1.5rem 0; } img { max-width: 100%; }
figcaption { color: #555; font-size: .9rem; }
"""


def _inline(text: str) -> str:
    s = html.escape(text, quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> list[str]:
    head, body = _cells(lines[0]), [_cells(x) for x in lines[2:]]
    out = ["<table>", "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in body]
    return out + ["</table>"]


def markdown(text: str) -> str:
    """simspec's Markdown as HTML."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j]), quote=False) + "</code></pre>")
            i = j + 1
        elif m := re.match(r"(#{1,3}) (.*)", line):
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
            i += 1
        elif line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out += _table(lines[i:j])
            i = j
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out += ["<ul>", *items, "</ul>"]
        elif line.strip():
            para = [_inline(line)]
            i += 1
            while i < len(lines) and lines[i].strip() and not re.match(r"(#{1,3} |- |\||```)", lines[i]):
                para.append(_inline(lines[i]))
                i += 1
            out.append("<p>" + "\n".join(para) + "</p>")
        else:
            i += 1
    return "\n".join(out)


def figure(png: Path, caption: str) -> str:
    """The PNG at `png`, embedded (base64), with its caption."""
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_inline(caption)}</figcaption></figure>")


def page(title: str, body_markdown: str, figures: list[tuple[Path, str]]) -> str:
    """A whole HTML document: the Markdown, then a Figures section embedding each (PNG, caption)."""
    body = markdown(body_markdown)
    if figures:
        body += "\n<h2>Figures</h2>\n" + "\n".join(figure(p, c) for p, c in figures)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")
