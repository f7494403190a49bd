"""Entry point for ``python -m geventserve``."""

from .cli import main

if __name__ == "__main__":
    main()
