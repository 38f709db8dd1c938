"""``python -m cemap`` (and ``torchrun -m cemap``) runs the CLI."""

from .cli import main

if __name__ == "__main__":  # only when run: importing it (as multiprocessing's spawn does) must not start the CLI
    main()
