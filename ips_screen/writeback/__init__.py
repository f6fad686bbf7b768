"""Workflow on the practice's FHIR server, above `proposals` and below the commands and services.

- `writer`: write proposals (one transaction per patient), one writer at a time (`lock`: a file
  lock per server on this machine; `lease`: a lease resource on the server itself), and the
  duplicate sweep after each write (`sweep`).
- `review`: a clinician's review of proposals: list, show, accept, decline (`review_read`,
  `review_actions`); `followup`: the accepted referrals the IPS service has not answered.

The resources written are built by `ips_screen.proposals` (pure builders); the HTTP is
`ips_screen.fhir` (the transport, which knows nothing of proposals or rulesets).
"""
