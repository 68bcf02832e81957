"""One report of every reproduction: ``OUT/REPORT.md`` and ``OUT/index.html``.

``python -m experiments report [--out results]`` (and the end of ``run all``)
reads the latest complete run of every registered experiment,
``OUT/NAME/metrics.json``, and writes, for each paper: the paper-vs-ours
table — the paper's published number, the theory's prediction and ours in
separate columns — with each row's mark (agree / differs / not comparable,
computed by `results.comparison` under the rule the row states), the figures, the data
used (the paper's or an offline stand-in), the configuration, the size, the
package versions, the device, the git commit and the wall time of each part.
An experiment without a run in OUT is listed as not run.

``REPORT.md`` links the figures relatively (``NAME/fig.png``), so it renders
beside the run directories; ``index.html`` embeds them as base64 PNGs and
has no external asset (no script, stylesheet or font), so it opens offline
and can be sent as one file. Both are written atomically.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Mapping, Optional

from experiments import registry, results

_COLUMNS_NOTE = (
    "**paper** is the paper's published number (or its stated claim where it "
    "prints none), **theory** the theory's prediction (— if the row has none), "
    "**ours** the value this run computed; **rule** is the condition for the "
    "row's mark."
)

_SYMBOL = {"agree": "✓ agree", "differs": "✗ differs", "not comparable": "– not comparable"}


def collect(out_root) -> dict[str, Optional[dict]]:
    """``{name: payload of OUT/NAME/metrics.json, or None if never run}``, every
    registered experiment, in name order."""
    out = {}
    for name in registry.names():
        path = Path(out_root) / name / "metrics.json"
        try:
            out[name] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            out[name] = None
    return out


def mark_counts(payload: Mapping) -> dict[str, int]:
    """How many rows of the payload's table carry each mark (rows written
    before marks existed count as ``unmarked``)."""
    counts = {m: 0 for m in results.MARKS}
    for row in payload.get("paper_vs_ours", []):
        key = row.get("mark", "unmarked")
        counts[key] = counts.get(key, 0) + 1
    return counts


def _figures(payload: Mapping, out_root: Path) -> tuple[list[str], list[str]]:
    """(figures present in OUT/NAME/, figures listed but missing)."""
    name = payload["experiment"]
    listed = [str(f) for f in payload.get("figures", [])]
    present = [f for f in listed if (out_root / name / f).is_file()]
    return present, [f for f in listed if f not in present]


def _cell(value) -> str:
    return results.format_value(value).replace("|", "\\|").replace("\n", " ")


def _summary(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {m}" for m, n in counts.items() if n)


def _versions(payload: Mapping) -> str:
    return ", ".join(f"{k} {v}" for k, v in payload.get("versions", {}).items() if v)


def _device(payload: Mapping) -> str:
    d = payload.get("device", {})
    return (
        f"{d.get('platform', '?')} ({d.get('device_kind', '?')}) × "
        f"{d.get('device_count', '?')}, x64={d.get('x64')}, {d.get('host', '')}, "
        f"{d.get('cpu_count', '?')} CPUs"
    )


def _data(payload: Mapping) -> str:
    """The data the parts used, each distinct note once."""
    notes = list(dict.fromkeys(payload.get("data_used", {}).values()))
    return "; ".join(notes) or "not recorded"


def _config(payload: Mapping) -> str:
    """One ``field = value`` line per config field."""
    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in payload.get("config", {}).items())


def _row_cells(row: Mapping) -> list:
    """The cells of a paper-vs-ours row in `results.COLUMNS` order: the paper's
    number, the theory's prediction and ours in their own columns."""
    cells = results.table_cells(row)
    return [cells.get(c, "") for c in results.COLUMNS]


def _parts(payload: Mapping) -> str:
    return "; ".join(f"{p['name']} {p['seconds']:.1f} s" for p in payload.get("parts", []))


# ------------------------------------------------------------------ markdown


def markdown(collected: Mapping[str, Optional[dict]], out_root) -> str:
    """The text of REPORT.md."""
    out_root = Path(out_root)
    lines = [
        "# Reproductions",
        "",
        f"Latest complete run of each experiment in `{out_root}`. Marks:",
        "",
    ]
    lines += [f"- **{m}**: {rule}." for m, rule in results.MARKS.items()]
    lines += ["", f"Columns: {_COLUMNS_NOTE}"]
    lines += [
        "",
        "| experiment | paper | size | marks | wall time | finished |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, p in collected.items():
        if p is None:
            lines.append(f"| {name} | {_cell(registry.get(name).paper)} | not run | | | |")
        else:
            lines.append(
                f"| [{name}](#{name}) | {_cell(p.get('paper', ''))} | {p['size']} | "
                f"{_summary(mark_counts(p))} | {p['wall_time_s']:.0f} s | "
                f"{p.get('finished_at', '')} |"
            )
    for name, p in collected.items():
        lines += ["", f"## {name}", ""]
        if p is None:
            lines.append(f"Not run: `python -m experiments run {name} --out {out_root}`.")
            continue
        present, missing = _figures(p, out_root)
        lines += [
            f"{p.get('paper', '')}: {p.get('description', '')}",
            "",
            f"- size **{p['size']}**, seed {p.get('seed')}, run `{p['run_id']}`, "
            f"finished {p.get('finished_at', '?')}, wall time {p['wall_time_s']:.1f} s "
            f"({_parts(p)})",
            f"- data: {_data(p)}",
            f"- versions: {_versions(p)}",
            f"- device: {_device(p)}; git {p.get('git_commit')}",
            f"- command: `{p.get('command', '')}`",
            "",
            "| " + " | ".join(results.COLUMNS) + " |",
            "| " + " | ".join("---" for _ in results.COLUMNS) + " |",
        ]
        for r in p.get("paper_vs_ours", []):
            cells = [_SYMBOL.get(r.get("mark"), "? unmarked")]
            cells += [_cell(c) for c in _row_cells(r)[1:]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += [f"![{f}]({name}/{f})" for f in present]
        lines += [f"- figure `{f}` is listed but missing from `{name}/`" for f in missing]
        lines += [
            "",
            "<details><summary>configuration</summary>",
            "",
            "```",
            _config(p),
            "```",
            "",
            "</details>",
        ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ html

_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
tr.agree td:first-child{background:#d9f2d9}tr.differs td:first-child{background:#f8d4d4}
tr.not-comparable td:first-child{background:#eee}img{max-width:100%;margin:.5em 0}
code,pre{background:#f6f6f6}"""


def _tag(name: str, body: str, **attrs) -> str:
    attr = "".join(f' {k.rstrip("_")}="{html.escape(str(v))}"' for k, v in attrs.items())
    return f"<{name}{attr}>{body}</{name}>"


def _table(header, rows, classes=None) -> str:
    head = "".join(_tag("th", html.escape(h)) for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(_tag("td", html.escape(results.format_value(c))) for c in row)
        cls = {"class_": classes[i]} if classes else {}
        body.append(_tag("tr", cells, **cls))
    return _tag("table", _tag("tr", head) + "".join(body))


def html_page(collected: Mapping[str, Optional[dict]], out_root) -> str:
    """The text of index.html, with every figure embedded."""
    out_root = Path(out_root)
    parts = [
        _tag("h1", "Reproductions"),
        _tag("p", html.escape(f"Latest complete run of each experiment in {out_root}.")),
        _tag(
            "ul",
            "".join(
                _tag("li", _tag("b", m) + ": " + html.escape(rule))
                for m, rule in results.MARKS.items()
            ),
        ),
        _tag("p", html.escape("Columns: " + _COLUMNS_NOTE.replace("**", ""))),
    ]
    summary = []
    for name, p in collected.items():
        if p is None:
            summary.append([name, registry.get(name).paper, "not run", "", "", ""])
        else:
            summary.append(
                [
                    name,
                    p.get("paper", ""),
                    p["size"],
                    _summary(mark_counts(p)),
                    f"{p['wall_time_s']:.0f} s",
                    p.get("finished_at", ""),
                ]
            )
    parts.append(_table(["experiment", "paper", "size", "marks", "wall time", "finished"], summary))
    for name, p in collected.items():
        parts.append(_tag("h2", html.escape(name), id=name))
        if p is None:
            parts.append(
                _tag(
                    "p", html.escape(f"Not run: python -m experiments run {name} --out {out_root}")
                )
            )
            continue
        present, missing = _figures(p, out_root)
        facts = [
            ("paper", p.get("paper", "")),
            ("what", p.get("description", "")),
            ("size", f"{p['size']} (seed {p.get('seed')}, run {p['run_id']})"),
            ("wall time", f"{p['wall_time_s']:.1f} s ({_parts(p)})"),
            ("finished", p.get("finished_at", "")),
            ("data", _data(p)),
            ("versions", _versions(p)),
            ("device", _device(p)),
            ("git commit", p.get("git_commit")),
            ("command", p.get("command", "")),
        ]
        parts.append(_table(["", ""], facts))
        rows = p.get("paper_vs_ours", [])
        parts.append(
            _table(
                list(results.COLUMNS),
                [[_SYMBOL.get(r.get("mark"), "? unmarked"), *_row_cells(r)[1:]] for r in rows],
                classes=[str(r.get("mark", "unmarked")).replace(" ", "-") for r in rows],
            )
        )
        for f in present:
            data = base64.b64encode((out_root / name / f).read_bytes()).decode("ascii")
            parts.append(
                _tag(
                    "figure",
                    f'<img alt="{html.escape(f)}" '
                    f'src="data:image/png;base64,{data}">' + _tag("figcaption", html.escape(f)),
                )
            )
        for f in missing:
            parts.append(_tag("p", html.escape(f"figure {f} is listed but missing")))
        parts.append(
            _tag("details", _tag("summary", "configuration") + _tag("pre", html.escape(_config(p))))
        )
    head = '<meta charset="utf-8"><title>Reproductions</title>' + _tag("style", _CSS)
    return (
        "<!DOCTYPE html>\n"
        + _tag("html", _tag("head", head) + _tag("body", "".join(parts)), lang="en")
        + "\n"
    )


def write(out_root="results") -> tuple[Path, Path]:
    """Write ``OUT/REPORT.md`` and ``OUT/index.html``; returns their paths."""
    out_root = Path(out_root)
    collected = collect(out_root)
    md = results.atomic_write(
        out_root / "REPORT.md", lambda f: f.write(markdown(collected, out_root))
    )
    page = results.atomic_write(
        out_root / "index.html", lambda f: f.write(html_page(collected, out_root))
    )
    return md, page
