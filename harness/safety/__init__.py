"""Safety on real equipment (DESIGN section 9): audit of every write, dry run, the switching gate,
the safety supervisor and the safe state."""
