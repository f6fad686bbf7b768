"""The nightly job's persistent state in one SQLite file, in three parts (state.py opens them):

facts_store.py     `FactsStore`: per-patient facts, kept as `facts.extract` keeps each
                   resource (never the resource itself), so a night's changes (a Bulk `_since`
                   export, or a full reload) are applied without re-reading the whole record
decision_cache.py  `DecisionCache`: each patient's last decision and its horizon, so a night
                   re-evaluates only the patients who need it
ledger.py          `RunLedger`: every run, and each patient's decision digest after the last
database.py        the file, its connection, transactions and meta table
rows.py            how resources become rows and rows become facts
"""

from ips_screen.store.facts_store import ApplyStats, FactsStore, ruleset_fingerprint
from ips_screen.store.state import StateStore

__all__ = ["ApplyStats", "FactsStore", "StateStore", "ruleset_fingerprint"]
