"""Outputs of a screen: what goes into the output folder, for the screen and the nightly job.

    summary.py   decisions -> summary.json content (counts, attrition, data quality) and the
                 worklist rows of proposed patients (a pandas frame for analysts)
    report.py    summary + decisions -> a self-contained HTML page for the practice
    writers.py   the interface of an output format: begin / add (one patient) / finish
    formats/     one module per format (decisions.ndjson, proposals.json, worklist.csv,
                 report.html, summary.json), each registered by name
    registry.py  the formats by name: the default ones, or those named
    folder.py    `OutputFolder`: decisions in, one patient at a time, to the chosen writers; the
                 summary counted on the way; the files moved into place at the end
    staging.py   the temporary sibling folder that makes writing atomic, with 0600 files

Nothing here reads patient identity: decisions carry only resource references, reasons and flags.
"""
