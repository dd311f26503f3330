"""What makes a contract ambiguous, beyond what its schema refuses.

The schema already refuses a clause whose quantity nobody can measure and a limit without a unit.
What it cannot see is a term the contract leaves undefined: "usable energy" without a depth of
discharge, "SoC stays in band" without the band. Two companies sign the same words and read them
two ways; `harness check` names each such gap before anyone tests against it. The terms a
contract must define are data (contract_terms.yaml), not code.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from harness.config.contract import Contract, Definitions
from harness.config.errors import ConfigError
from harness.config.yamlsrc import load_yaml


@lru_cache(maxsize=1)
def required_terms() -> dict[str, str]:
    """definitions field -> what the contract must say there."""
    text = resources.files("harness.config").joinpath("contract_terms.yaml").read_text("utf-8")
    terms: dict[str, str] = yaml.safe_load(text)["required"]
    unknown = set(terms) - set(Definitions.model_fields)
    if unknown:
        raise ValueError(f"contract_terms.yaml names terms Definitions lacks: {sorted(unknown)}")
    return terms


def ambiguities(contract: Contract, path: Path) -> list[ConfigError]:
    """Each required term ``contract`` (loaded from ``path``, profiles merged) leaves undefined,
    and each pair of definitions that contradict each other."""
    _, lines = load_yaml(path)
    line = lines.line(("definitions",)) or lines.line(("contract",)) or 1
    defs = contract.definitions or Definitions()
    errors = [
        ConfigError(
            path,
            line,
            f"definitions.{term}",
            f"not defined; expected {meaning} (without it the contract is ambiguous)",
        )
        for term, meaning in required_terms().items()
        if getattr(defs, term) is None
    ]
    band, dod = defs.soc_band, defs.depth_of_discharge
    if band is not None and dod is not None and dod > band.max - band.min + 1e-9:
        errors.append(
            ConfigError(
                path,
                lines.line(("definitions", "depth_of_discharge")) or line,
                "definitions.depth_of_discharge",
                f"{dod:g} % is deeper than the SoC band allows ({band.min:g} % .. "
                f"{band.max:g} %: at most {band.max - band.min:g} %); expected the two to agree",
            )
        )
    errors += _unscored(contract, path, lines.line(("scorecard",)) or line)
    return errors


def _unscored(contract: Contract, path: Path, line: int) -> list[ConfigError]:
    """With a scorecard, each clause counts in exactly one of its measured categories: in none,
    a vendor's result on it never reaches the comparison; in two, it counts twice."""
    card = contract.scorecard
    if card is None:
        return []
    errors = []
    for clause in contract.clauses:
        owners = [
            k for k, c in card.categories.items() if not c.external and c.covers(clause.quantity)
        ]
        if len(owners) != 1:
            where = (
                "no category" if not owners else f"{len(owners)} categories ({', '.join(owners)})"
            )
            errors.append(
                ConfigError(
                    path,
                    line,
                    "scorecard.categories",
                    f"clause {clause.id} ({clause.quantity}) falls in {where}; expected exactly "
                    "one category's quantity patterns to match it",
                )
            )
    return errors
