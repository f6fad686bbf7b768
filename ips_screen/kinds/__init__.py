"""Criterion kinds: one module per kind declares its ruleset model, evaluator, nested criteria,
codelists and time windows (`base.KindSpec`); `registry` finds them and builds the union.

Kinds return typed evidence (`evidence`), never prose: `ips_screen.presentation` words it.
"""
