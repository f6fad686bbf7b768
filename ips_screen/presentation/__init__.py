"""Words for people: every sentence the tool writes about a decision is rendered here, from the
trace steps' typed evidence (`ips_screen.kinds.evidence`) and the ruleset.

    trace      one line per trace step (`explain`, decisions.ndjson)
    notes      the clinician note, the one-line reasons of the report and worklist, the review
               Task's line, the patient's explanation
    labels     plain words for reason and flag names
"""
