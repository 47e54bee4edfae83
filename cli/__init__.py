"""The ``fraud`` command line: one subcommand per stage."""
