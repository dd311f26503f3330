"""The verdict table printed at the end of a run."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

_STYLE = {
    "pass": "green",
    "marginal": "yellow",
    "fail": "bold red",
    "not_covered": "magenta",
    "error": "bold red",
}


def _value(v: dict[str, Any]) -> str:
    if v["value"] is None:
        return "-"
    return f"{v['value']:.4g} {v['unit']}"


def _outside(v: dict[str, Any]) -> bool:
    return bool((v.get("details") or {}).get("out_of_scope"))


def print_verdicts(run: dict[str, Any], verdicts: list[dict[str, Any]], console: Console) -> None:
    """The clauses the run judged; those outside its campaign only counted (verdicts.json and
    the witness report list them)."""
    outside = [v for v in verdicts if _outside(v)]
    verdicts = [v for v in verdicts if not _outside(v)]
    table = Table(title=f"Contract clauses: {run.get('contract', '')}", show_lines=False)
    for col in ("clause", "title", "node", "measured", "limit", "verdict"):
        table.add_column(col)
    for v in verdicts:
        style = _STYLE.get(v["verdict"], "")
        table.add_row(
            v["clause"],
            v["title"],
            v["node"] or "site",
            _value(v),
            v["limit"],
            f"[{style}]{v['verdict']}[/{style}]",
        )
    console.print(table)
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v["verdict"]] = counts.get(v["verdict"], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    if outside:
        summary += f"; {len(outside)} outside the '{run.get('campaign')}' campaign"
    console.print(
        f"{summary}; simulated {run['simulated_seconds']:.1f} s in {run['wall_seconds']:.1f} s wall"
    )
    for v in verdicts:
        if v["verdict"] in ("fail", "error"):
            node = f" [{v['node']}]" if v["node"] else ""
            console.print(
                f"[bold red]{v['verdict'].upper()}[/bold red] clause {v['clause']}{node} "
                f"{v['quantity']} = {_value(v)} (limit {v['limit']}) {v.get('note') or ''}"
            )
