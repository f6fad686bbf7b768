"""FHIR I/O for a clinician's review of proposals: list the open reviews, show one, accept or
decline it. The resources written are built by `ips_screen.proposals.review` (pure builders).

Reading lives in `review_read` (open_reviews, review_detail, load_review and their data classes),
the decisions in `review_actions` (accept, decline); this module gathers them under one name for
the CLI, the service and the tests.

Writes are one transaction each, with If-Match on the review Task and on the proposal, so a
concurrent change to either makes the whole transaction fail (`ConflictError`, nothing changed).
A Task id is given as ``ID`` or ``Task/ID``. A Task the server does not have is a `UserError`
(exit 2: a bad argument), as is a Task that is not the review of this tool's IPS proposal for the
Patient it is `for` (`NotThisReview`), or is already decided.
Logs name resource ids only.
"""

from ips_screen.writeback.review_actions import AcceptResult, DeclineResult, accept, decline
from ips_screen.writeback.review_read import (
    Evidence,
    Loaded,
    NotThisReview,
    ReviewDetail,
    ReviewItem,
    load_review,
    open_reviews,
    review_detail,
    task_id_of,
)

__all__ = [
    "AcceptResult",
    "DeclineResult",
    "Evidence",
    "Loaded",
    "NotThisReview",
    "ReviewDetail",
    "ReviewItem",
    "accept",
    "decline",
    "load_review",
    "open_reviews",
    "review_detail",
    "task_id_of",
]
