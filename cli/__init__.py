"""The batch-lifecycle command-line tool (docs/cli.md)."""
