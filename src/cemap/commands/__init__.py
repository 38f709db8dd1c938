"""The CLI's subcommands: plain functions whose typer options are their parameters; ``cemap.cli`` registers them."""
