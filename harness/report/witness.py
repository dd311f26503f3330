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
    plots, seen = [], set()
    for v in verdicts:
        if v["unit"] != "s" or v["value"] is None:
            continue
        for ev in v.get("evidence", []):
            path = Path(ev)
            if not path.is_absolute():
                path = out / path
            key = (str(path), v["node"], v["quantity"])
            if path.suffix != ".csv" or not path.is_file() or key in seen:
                continue
            seen.add(key)
            title = f"{v['quantity']} ({v['node'] or 'site'}): {_value_text(v)}, limit {v['limit']}"
            try:
                png = trace_png(
                    path,
                    title,
                    since=v.get("details", {}).get("since"),
                    measured=v["value"],
                    limit=v.get("limit_max"),
                )
            except (ValueError, IndexError, OSError) as exc:
                plots.append(
                    {"title": f"{title}: evidence {path.name} unreadable ({exc})", "png": ""}
                )
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
