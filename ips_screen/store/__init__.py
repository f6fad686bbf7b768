"""The persistent facts store of the nightly job: per-patient facts in SQLite, updated in place.

`facts_store.FactsStore` keeps what `facts.extract` keeps of each resource (never the resource
itself), so a night's changes (a Bulk `_since` export, or a full reload) are applied without
re-reading the whole record, and every patient is re-evaluated from the store.
"""

from ips_screen.store.facts_store import ApplyStats, FactsStore, ruleset_fingerprint

__all__ = ["ApplyStats", "FactsStore", "ruleset_fingerprint"]
