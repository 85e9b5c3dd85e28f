"""The embedded workload: a generated arithmetic task's tokenizer and a tiny Llama family trained on it."""

import os

# Where `l2s init` builds the family and where every command looks for it; L2S_CACHE moves it.
DEFAULT_CACHE = os.path.expanduser(os.environ.get("L2S_CACHE", "~/.cache/l2s/embedded"))
