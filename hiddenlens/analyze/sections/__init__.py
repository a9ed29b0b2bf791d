"""One module per analyzer section of ``hiddenlens analyze``.

Each module has ``run(ctx, cfg, report)``: it reads the run's
:class:`~hiddenlens.analyze.context.Context`, its own section config, and adds one or more
sections to ``report``. ``USES_SAE = True`` marks a section whose output depends on the
trained SAEs (it is recomputed when they change).
"""
