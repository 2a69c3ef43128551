"""Single-molecule localization microscopy: localization tables (:mod:`~microsr.smlm.table`),
finding emitters in network outputs (:mod:`~microsr.smlm.localize`), scoring them against ground
truth (:mod:`~microsr.smlm.score`), rendering (:mod:`~microsr.smlm.render`), and reconstructing a
stack with a trained model (:mod:`~microsr.smlm.reconstruct`).
"""
