"""Rules as data: the ruleset file model, its loader and the codelists it names."""
