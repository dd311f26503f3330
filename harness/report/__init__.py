"""Results of a run: verdicts.json, the verdict table and progress."""
