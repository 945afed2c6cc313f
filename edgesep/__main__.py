"""``python -m edgesep``: the command line."""

from edgesep.cli import main

main()
