"""`python -m dnahnet_cli ...` runs the `dnahnet` command."""

from dnahnet_cli.cli import main

main()
