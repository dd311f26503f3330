"""Results of a run: verdicts.json, the verdict table, (later) Allure wiring and the witness report."""
