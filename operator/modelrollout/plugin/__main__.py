"""``python -m modelrollout.plugin``: the same as the ``kubectl-modelrollout`` console script."""

from . import main

main()
