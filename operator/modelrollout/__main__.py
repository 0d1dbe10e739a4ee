"""``python -m modelrollout`` is the ``modelrollout`` command."""

from .cli import main

main()
