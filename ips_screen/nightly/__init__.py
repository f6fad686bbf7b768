"""The nightly job: keep a practice's facts store up to date, re-screen, write, report.

config.py    the practice config file (TOML), strict and documented
sync.py      bring the store up to date (Bulk `_since` export, REST, files)
run.py       one run: lock, ledger, sync, screen, write, outputs (`run_nightly`)
steps.py     the client, proposal counts, trends, run folders
progress.py  tqdm bars on a terminal, log lines otherwise
"""
