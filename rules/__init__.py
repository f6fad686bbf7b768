"""The default ruleset, its codelists and the project's CodeSystems.

This folder is installed inside the package as ``ips_screen._rules`` (see pyproject.toml) and read
with importlib.resources (``ips_screen.ruleset.loader.DEFAULT_RULESET``); it holds no code.
"""
