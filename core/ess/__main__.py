"""``python -m ess``: the same command line as the ``ess`` console script."""

from .cli import main

if __name__ == "__main__":
    main()
