"""Allure wiring: labels, steps, a link per judged clause, evidence attachments, environment.

allure-pytest writes allure-results/ when ``--alluredir`` is given; every call here is a no-op
otherwise, so scenarios never depend on it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import allure
import pytest

from harness.config.contract import Contract
from harness.report.plots import trace_png
from harness.verdicts.evaluate import judge_value
from harness.verdicts.model import Measurement, Verdict

_ATTACH_TYPES = {
    ".csv": allure.attachment_type.CSV,
    ".json": allure.attachment_type.JSON,
    ".png": allure.attachment_type.PNG,
    ".txt": allure.attachment_type.TEXT,
    ".asc": allure.attachment_type.TEXT,
}


def label_item(item: pytest.Item) -> None:
    """Campaign, family (the testplan module) and scenario (the function) as Allure labels."""
    marker = item.get_closest_marker("campaign")
    campaigns = list(marker.args) if marker else []
    module = getattr(item, "module", None)
    family = module.__name__.rsplit(".", 1)[-1].removeprefix("test_") if module else "harness"
    allure.dynamic.parent_suite("acceptance")
    allure.dynamic.feature(family)
    allure.dynamic.story(getattr(item, "originalname", item.name))
    for campaign in campaigns:
        allure.dynamic.label("campaign", campaign)
        allure.dynamic.tag(campaign)
    if item.get_closest_marker("switching"):
        allure.dynamic.tag("switching")


def link_clauses(contract: Contract, measurements: Iterable[Measurement]) -> None:
    """One link per clause a measurement of this test was judged on, named with its verdict."""
    for m in measurements:
        for clause in contract.clauses_for(m.quantity):
            if m.value is None:
                verdict = Verdict.ERROR
                shown = m.error or "no value"
            else:
                verdict = judge_value(clause, m.value, m.uncertainty)
                shown = f"{m.value:.4g} {m.unit}"
            node = f" [{m.node}]" if m.node else ""
            allure.dynamic.link(
                f"witness.html#clause-{clause.id}",
                name=f"{clause.id}{node}: {verdict.value} ({shown}, limit {clause.limit_text})",
            )


def attach_evidence(
    paths: Iterable[Path],
    contract: Contract | None = None,
    measurements: Iterable[Measurement] = (),
) -> None:
    """Every evidence file of the test; a trace CSV also as a plot, with the start event, the
    contract's limit and each measured instant drawn when a timed measurement came from it."""
    timed = [m for m in measurements if m.unit == "s" and m.value is not None]
    for path in sorted(paths):
        if not path.is_file():
            continue
        kind = _ATTACH_TYPES.get(path.suffix.lower())
        if kind is None:
            allure.attach.file(str(path), name=path.name, extension=path.suffix.lstrip("."))
            continue
        allure.attach.file(str(path), name=path.name, attachment_type=kind)
        if path.suffix.lower() == ".csv" and _is_trace(path):
            from_here = [m for m in timed if any(Path(e) == path for e in m.evidence)]
            try:
                png = trace_png(path, path.stem, **_markers(contract, from_here))
            except (ValueError, IndexError):
                continue
            allure.attach(png, name=f"{path.stem}.png", attachment_type=allure.attachment_type.PNG)


def _markers(contract: Contract | None, timed: list[Measurement]) -> dict[str, Any]:
    """trace_png's event markers for the timed measurements taken from one capture."""
    since = next(
        (m.details.get("since") for m in timed if m.details.get("since") is not None), None
    )
    if since is None:
        return {}
    limits = [
        c.max
        for m in timed
        for c in (contract.clauses_for(m.quantity) if contract else [])
        if c.max is not None
    ]
    return {
        "since": since,
        "measured": [m.value for m in timed if m.value is not None],
        "limit": min(limits) if limits else None,
    }


def _is_trace(path: Path) -> bool:
    with path.open(encoding="utf-8") as fh:
        return fh.readline().startswith("t [s]")


class Stepped:
    """Wraps a device so every public method call is an Allure step (what a witness would log)."""

    def __init__(self, device: Any) -> None:
        self._device = device

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._device, name)
        if name.startswith("_") or not callable(attr):
            return attr
        return _step(f"{getattr(self._device, 'name', type(self._device).__name__)}.{name}", attr)

    def __repr__(self) -> str:
        return f"Stepped({self._device!r})"


def _step(title: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        shown = ", ".join(
            [*(_short(a) for a in args), *(f"{k}={_short(v)}" for k, v in kwargs.items())]
        )
        with allure.step(f"{title}({shown})"):
            return fn(*args, **kwargs)

    return call


def _short(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def write_environment(alluredir: Path, values: dict[str, str]) -> None:
    """allure-results/environment.properties: DUT identities, input hashes, harness version."""
    alluredir.mkdir(parents=True, exist_ok=True)
    lines = []
    for key, value in sorted(values.items()):
        clean = str(value).replace("\\", "\\\\").replace("\n", " ")
        lines.append(f"{key.replace(' ', '_').replace(':', '_').replace('=', '_')}={clean}")
    (alluredir / "environment.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")
