"""Site, contract and profile files: pydantic schemas and YAML loaders.

Every error names the file, the line and the field, and says what was expected (STYLE.md).
"""

from harness.config.errors import ConfigError, ConfigErrors

__all__ = ["ConfigError", "ConfigErrors"]
