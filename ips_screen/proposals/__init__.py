"""Proposals: the FHIR resources written for each `propose` decision (build.py), their plain
words (text.py), and the resources for a clinician's accept or decline (review.py)."""

from ips_screen.proposals.build import (
    build_patient_transaction,
    build_proposal,
    build_transaction,
    proposal_identifier,
)
from ips_screen.proposals.review import accept_resources, decline_resources

__all__ = [
    "accept_resources",
    "build_patient_transaction",
    "build_proposal",
    "build_transaction",
    "decline_resources",
    "proposal_identifier",
]
