"""The catalogue of quantities: every entry is measured by a scenario that exists, and the
documented copy (docs/quantities.md) is the catalogue as it is."""

from __future__ import annotations

import ast
import re

import pytest

from harness.commands.quantities import markdown
from harness.config.quantities import catalogue
from tests.harness_runner import ROOT, harness


def _scenario_functions(module: str) -> set[str]:
    tree = ast.parse((ROOT / module).read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("name", sorted(catalogue()))
def test_every_quantity_names_a_scenario_that_exists(name: str):
    for module, function in catalogue()[name].scenarios:
        assert (ROOT / module).is_file(), f"{name}: {module} does not exist"
        assert function in _scenario_functions(module), f"{name}: no {function}"


def _names_in(module: str) -> list[re.Pattern[str]]:
    """Every string the module spells, as a pattern: an f-string's fields match any name part."""
    patterns = []
    for node in ast.walk(ast.parse((ROOT / module).read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            patterns.append(re.compile(re.escape(node.value)))
        elif isinstance(node, ast.JoinedStr):
            parts = [
                re.escape(v.value) if isinstance(v, ast.Constant) else "[a-z0-9_]+"
                for v in node.values
            ]
            patterns.append(re.compile("".join(parts)))
    return patterns


def test_every_quantity_is_named_by_its_scenario():
    """The scenario that claims a quantity spells its name (literally or as an f-string)."""
    missing = []
    for name, q in catalogue().items():
        patterns = [p for m, _ in q.scenarios for p in _names_in(m)]
        if not any(p.fullmatch(name) for p in patterns):
            missing.append(f"{name} ({q.measured_by})")
    assert not missing, missing


def test_the_documented_catalogue_is_up_to_date():
    doc = ROOT / "docs/quantities.md"
    assert doc.read_text() == markdown(), (
        "docs/quantities.md is stale: run `uv run harness quantities --markdown docs/quantities.md`"
    )


def test_the_command_lists_the_catalogue():
    proc = harness("quantities")
    assert proc.returncode == 0, proc.stderr
    assert "islanding.clearing_time" in proc.stdout
