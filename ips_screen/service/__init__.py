"""The GP-workflow plugin (`ips-screen serve`): the CDS Hooks 2.0 service (discovery, the
patient-view hook, feedback; cds.py, cards.py, prefetch.py, feedback.py), EHR authentication
(ehr_auth.py, with ehr_auth_config.py and replay_cache.py), the clinicians' review page
(review_page.py, pages.py, signin.py, templates/), its configuration (config.py, passwords.py) and
the app that wires them (app.py)."""
