"""Errors a person can act on: file, line, field, what was found and what was expected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ConfigError:
    file: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigErrors(Exception):
    """One or more problems in input files; the CLI prints them and exits 2."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))

    @classmethod
    def single(
        cls, file: Path, message: str, line: int | None = None, field: str = ""
    ) -> ConfigErrors:
        return cls([ConfigError(file, line, field, message)])
