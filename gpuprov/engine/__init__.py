"""The engine: pyinfra as a library. connect -> plan (dry run) / apply -> results.

No click here: the CLI (gpuprov.cli) maps the typed errors to messages and exit codes.
"""
