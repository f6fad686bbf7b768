"""ips-screen: find people with chronic pain who are out of work and may want IPS.

Data flows one way through the sub-packages:

    sources -> facts -> engine (decisions) -> proposals -> outputs / writeback (server)

`ruleset` holds the rules-as-data model and the codelists; `fhir` is the HTTP transport alone
(below `sources` and `writeback`); `cli` wires the commands. The layers are import-linter
contracts in pyproject.toml (README "Layout").
"""

__version__ = "0.1.0"
