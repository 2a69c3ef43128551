"""Sharing models with the bioimage ecosystem: bioimage.io model packages out and in.

:func:`export` writes a microsr model as a bioimage.io package (:mod:`microsr.share.bioimageio`);
:func:`load_model` loads a microsr model or any bioimage.io package (``.zip``) as a
:class:`~microsr.predict.restorer.Restorer` (:mod:`microsr.share.package`). Both need the
optional extra ``microsr[bioimageio]``; nothing in microsr imports this package except the
command line and the top-level ``microsr.export`` / ``microsr.load_model``.
"""
