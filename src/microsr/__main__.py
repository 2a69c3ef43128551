"""``python -m microsr`` runs the command line."""

from microsr.cli import main

if __name__ == "__main__":
    main()
