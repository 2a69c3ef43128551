"""The ``microsr`` command line: :mod:`~microsr.cli.main` (the top-level commands and :func:`main`),
:mod:`~microsr.cli.sim` (``sim``, ``srrf``) and :mod:`~microsr.cli.smlm` (``smlm``), with the options
they share in :mod:`~microsr.cli.options`.
"""

from microsr.cli.main import app, main

__all__ = ["app", "main"]
