"""Contract evaluation: measured quantities + clauses -> verdicts, with coverage."""
