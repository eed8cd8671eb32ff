"""Cloud billing exports → hourly cost cells (FOCUS, AWS CUR 2.0 / legacy CUR, Azure EA / MCA).

One module per format — ``focus``, ``cur``, ``azure``, and ``auto`` (``type: billing``, which tells them apart
per file) — on ``base`` (the decoders' shared config, GPU table and
:class:`~agent.decoders.billing.base.BillingDecoder`: normalise, aggregate, observations) and ``arrow`` (the
columnar helpers); ``delivery`` reads a delivery's files into one table. Each format registers itself.
"""
