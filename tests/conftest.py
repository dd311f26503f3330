"""Fixtures shared by the tests of the harness."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness_runner import SITE, site_with

DefectSite = Callable[..., Path]
"""``defect_site(defects_yaml, base=SITE)``: a copy of a site file with those defects."""


@pytest.fixture
def defect_site(tmp_path: Path) -> Iterator[DefectSite]:
    """Copies of a virtual site with defects injected, removed after the test.

    ``defects_yaml`` is the indented list under ``defects:``, e.g.
    ``"  - {device: home-1.inverter, kind: anti_islanding_delay, value: 2 s}"``.
    """
    made: list[Path] = []

    def make(defects_yaml: str, base: Path = SITE) -> Path:
        path = site_with(tmp_path, f"defects:\n{defects_yaml}", f"d{len(made)}.yaml", base)
        made.append(path)
        return path

    yield make
    for path in made:
        path.unlink(missing_ok=True)
