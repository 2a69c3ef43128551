"""``python -m microsr`` runs the command line."""

from microsr.cli import main

main()
