"""``python -m cemap`` (and ``torchrun -m cemap``) runs the CLI."""

from .cli import main

if __name__ == "__main__":  # worker processes (spawn) import this module without running the CLI again
    main()
