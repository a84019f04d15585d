"""Command line: `fer-annotate` and its subcommands, a thin layer over the Python API."""
