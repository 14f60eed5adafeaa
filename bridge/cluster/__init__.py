"""`hamba render --cluster`: songs rendered on a Ray cluster, one worker per device.

Nothing here imports Ray until a cluster render starts (:mod:`bridge.cluster.session`); the
single-process path (:mod:`bridge.offline`) never does. The parts: :mod:`.plan` (chunks and
their warm-up), :mod:`.worker` (the actor), :mod:`.pool` (the workers and the render loop),
:mod:`.progress` (the one bar), :mod:`.render` (files in, mp4 files out).
"""
