from ips_screen.cli.main import entry_point

entry_point()
