"""ips-screen: find people with chronic pain who are out of work and may want IPS.

Data flows one way through the sub-packages:

    sources -> facts -> engine (decisions) -> proposals -> outputs / fhir (server)

`ruleset` holds the rules-as-data model and the codelists; `cli` wires the commands.
"""

__version__ = "0.1.0"
