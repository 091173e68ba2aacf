"""Subcommands of the ``vmapsim`` command line (one module each, found automatically)."""
