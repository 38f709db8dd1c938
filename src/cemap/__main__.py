"""``python -m cemap`` (and ``torchrun -m cemap``) runs the CLI."""

from .cli import main

main()
