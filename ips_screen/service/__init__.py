"""The GP-workflow plugin (`ips-screen serve`): the CDS Hooks 2.0 service (discovery, the
patient-view hook, feedback; cds.py, cards.py, prefetch.py, feedback.py), EHR authentication
(ehr_auth.py, with ehr_auth_config.py and replay_cache.py), the clinicians' review page
(review_page.py, pages.py, signin.py, sessions.py, templates/), its configuration (config.py,
passwords.py), the state every worker shares (store.py: SQLite in state_dir; state.py) and the
app that wires them (app.py)."""
