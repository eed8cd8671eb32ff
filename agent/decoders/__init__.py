"""Decoders: one module per input format; each registers itself (``agent.registry`` finds them)."""
