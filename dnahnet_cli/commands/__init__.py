"""Subcommands of the dnahnet CLI; each module exposes register(app)."""
