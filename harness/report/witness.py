"""witness.html: the self-contained, printable report two companies sign (images inline)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jinja2

from harness.report import duts
from harness.report.plots import trace_png

WITNESS = "witness.html"


def _value_text(v: dict[str, Any]) -> str:
    if v["value"] is None:
        return "-"
    return f"{v['value']:.4g} {v['unit']}"


def _plots(out: Path, verdicts: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One plot per evidence trace and quantity, every node's measured instant marked on it: a
    site's nodes share one capture, and a plot per node would repeat the same picture."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for v in verdicts:
        if v["unit"] != "s" or v["value"] is None:
            continue
        for ev in v.get("evidence", []):
            path = Path(ev) if Path(ev).is_absolute() else out / ev
            if path.suffix == ".csv" and path.is_file():
                group = groups.setdefault((str(path), v["quantity"]), [])
                if all(g["node"] != v["node"] for g in group):
                    group.append(v)
    plots = []
    for (path_text, quantity), group in groups.items():
        path, first = Path(path_text), group[0]
        values = ", ".join(f"{v['node'] or 'site'} {_value_text(v)}" for v in group)
        title = f"{quantity}: {values}; limit {first['limit']}"
        try:
            png = trace_png(
                path,
                title,
                since=first.get("details", {}).get("since"),
                measured=[v["value"] for v in group],
                limit=first.get("limit_max"),
            )
        except (ValueError, IndexError, OSError) as exc:
            plots.append({"title": f"{title}: evidence {path.name} unreadable ({exc})", "png": ""})
            continue
        plots.append({"title": title, "png": base64.b64encode(png).decode("ascii")})
    return plots


def render(
    out: Path,
    run: dict[str, Any],
    verdicts: list[dict[str, Any]],
    contract_info: dict[str, Any],
    site_name: str,
    operator: str | None = None,
    witness: str | None = None,
    target: Path | None = None,
) -> Path:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v["verdict"]] = counts.get(v["verdict"], 0) + 1
        v["value_text"] = _value_text(v)
    html = env.get_template("witness.html.j2").render(
        contract=contract_info,
        run=run,
        result=run.get("result", "error"),
        counts=counts,
        duts=duts.read(out),
        verdicts=verdicts,
        not_covered=[v for v in verdicts if v["verdict"] == "not_covered"],
        plots=_plots(out, verdicts),
        site_name=site_name,
        operator=operator,
        witness=witness,
    )
    path = target or out / WITNESS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
