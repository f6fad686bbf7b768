"""Helpers shared by test modules: test modules import from here (or tests/helpers.py,
tests/fhir_support.py), never from each other or from a conftest.

- `paths`: the repository, the fixtures, the shared data and the frozen test clock.
- `tiers`: which marks a test gets from its folder and fixtures (used by tests/conftest.py).
- `hypothesis_profile`: the Hypothesis profile; IPS_SCREEN_HYPOTHESIS_EXAMPLES sets its examples.
- `cds`: CDS Hooks requests, EHR tokens, the service's configuration and card checks.
- `fake_fhir`: an in-memory FHIR server for review and feedback writes.
- `local_server`: a real HTTP server on 127.0.0.1 answering with a handler the test gives.
- `bulk_responses`: a fake Bulk Data exporter made of `responses` set-ups, with a fake clock.
- `paging_server`: a fake practice server for the REST reader, with paging and planned faults.
- `writer_server`: a fake practice server for the proposal writer's transactions.
- `lease_server`: a fake server holding the write lease.
- `fake_bulk`: a fake Bulk exporter for the nightly job (no HTTP at all).
- `generators`: Hypothesis strategies for random small patients.
- `rulesets`: variants of the default ruleset, written and loaded as a user's would be.
- `state_pension`: State Pension dates worked out by hand from the contract.
"""
