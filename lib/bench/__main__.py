"""`python -m lib.bench ...`: see lib.bench."""

from . import main

main()
