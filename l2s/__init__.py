"""l2s — long2short: derive token-efficient short-CoT models from a long-CoT reasoning model.

Importing `l2s` is cheap on purpose: torch, transformers, TRL and vLLM are imported inside the
functions that need them, so `l2s --help` and the server start fast.
"""

__version__ = "0.1.0"
