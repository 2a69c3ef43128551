"""Where and how a model runs on this machine: the device (:mod:`~microsr.runtime.device`), the
precision measured fastest here (:mod:`~microsr.runtime.precision`), the allocator setting that
keeps tiles from page-faulting (:mod:`~microsr.runtime.allocator`) and, for training under
``torchrun``, the ranks and their process group (:mod:`~microsr.runtime.distributed`).

Used by training and prediction alike; imports only torch and :mod:`microsr.errors`.
"""
