"""Command-line interface: `main.py` wires arguments, `commands.py` holds the commands."""
