"""Outputs of a screen: the summary, the worklist, the HTML report, and writing them to disk.

    summary.py  decisions -> summary.json content (counts, attrition, data quality) and the
                worklist of proposed patients (a pandas frame / CSV)
    report.py   summary + decisions -> a self-contained HTML page for the practice
    write.py    everything -> an output folder, atomically and byte-reproducibly

Nothing here reads patient identity: decisions carry only resource references, reasons and flags.
"""
