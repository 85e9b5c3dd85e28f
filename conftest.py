"""Root pytest config: doctests run over the package; modules needing an absent optional backend are skipped."""

import importlib.util

collect_ignore_glob = ["benchmarks/*"]
if importlib.util.find_spec("vllm") is None:
    collect_ignore_glob.append("l2s/engines/vllm.py")
