"""Rules as data: the ruleset file model (its criterion kinds come from `ips_screen.kinds`), its
loader, the codelists it names and the words it gives the outputs (`texts`)."""
