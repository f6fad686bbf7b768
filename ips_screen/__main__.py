from ips_screen.cli.launch import entry_point

entry_point()
