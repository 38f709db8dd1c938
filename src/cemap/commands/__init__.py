"""CLI subcommands; every module here registers its commands on ``cemap.cli.app`` when imported."""
