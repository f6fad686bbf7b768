"""The output formats, one module each, registered by name (`outputs.registry`).

    decisions_ndjson  decisions.ndjson: every decision, one JSON object per line
    proposals_json    proposals.json: one FHIR transaction Bundle of every proposal
    worklist_csv      worklist.csv: the proposed patients, early priority first
    report_html       report.html: the practice's report
    summary_json      summary.json: counts, attrition and data quality (moved into place last)

A module added here is a new format: see `outputs.writers.OutputWriter` and the README.
"""
