"""Every shipped YAML in configs/ loads into its typed config (torchtune's habit: a test loads every
config), and the configs that must agree do."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from l2s.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# File name (relative to configs/) -> "module:ConfigClass". A new YAML must be added here.
TYPED: dict[str, str] = {
    "derive_merge.yaml": "l2s.methods.merge:MergeConfig",
    "derive_shortest_rs.yaml": "l2s.methods.shortest_rs:ShortestRSConfig",
    "derive_dpo.yaml": "l2s.methods.dpo:DPOMethodConfig",
    "derive_rl.yaml": "l2s.methods.rl:RLMethodConfig",
    "derive_budget.yaml": "l2s.methods.budget:BudgetConfig",
    "rl_full.yaml": "l2s.rl.config:RLConfig",
    "rl_long2short.yaml": "l2s.rl.config:RLConfig",
    "serve.yaml": "l2s.server.settings:ServeSettings",
}
# accelerate's own config files (launcher settings for DeepSpeed / FSDP / DDP), parsed by accelerate.
ACCELERATE = "accelerate/"


def shipped() -> list[str]:
    return sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.y*ml"))


def config_class(name: str):
    module, cls = TYPED[name].split(":")
    return getattr(importlib.import_module(module), cls)


def test_every_shipped_yaml_is_mapped():
    unmapped = [n for n in shipped() if n not in TYPED and not n.startswith(ACCELERATE)]
    assert not unmapped, f"map {unmapped} to its config class in tests/test_configs.py TYPED"
    missing = [n for n in TYPED if not (CONFIGS / n).is_file()]
    assert not missing, f"TYPED names files that are not shipped: {missing}"


@pytest.mark.parametrize("name", [n for n in shipped() if not n.startswith(ACCELERATE)])
def test_yaml_loads_into_its_config(name):
    cls = config_class(name)
    cfg = load_config(cls, CONFIGS / name)
    data = yaml.safe_load((CONFIGS / name).read_text()) or {}
    for key, value in data.items():  # every key in the file reached the config unchanged
        assert getattr(cfg, key) == value or (getattr(cfg, key) is None and value is None), key


@pytest.mark.parametrize("name", [n for n in shipped() if n.startswith(ACCELERATE)])
def test_accelerate_yaml_parses(name):
    from accelerate.commands.config.config_args import load_config_from_file

    assert load_config_from_file(str(CONFIGS / name)).distributed_type


def test_derive_configs_use_the_embedded_family():
    names = ("derive_merge.yaml", "derive_shortest_rs.yaml", "derive_dpo.yaml", "derive_rl.yaml")
    for name in (*names, "derive_budget.yaml"):
        cfg = load_config(config_class(name), CONFIGS / name)
        assert cfg.long == "~/.cache/l2s/embedded/long"


def test_derive_merge_sweeps_alpha():
    cfg = load_config(config_class("derive_merge.yaml"), CONFIGS / "derive_merge.yaml")
    assert cfg.sweep and len(cfg.sweep) >= 3 and all(0 <= a <= 1 for a in cfg.sweep)


def test_derive_rl_is_rl_long2short_plus_the_long_model():
    """derive_rl.yaml mirrors configs/rl_long2short.yaml, and so do RLMethodConfig's defaults, so
    `l2s derive --method rl` means the same with, without, or with either config."""
    from l2s.methods.rl import RLMethodConfig

    rl = yaml.safe_load((CONFIGS / "rl_long2short.yaml").read_text())
    derive = yaml.safe_load((CONFIGS / "derive_rl.yaml").read_text())
    assert derive.pop("long") == "~/.cache/l2s/embedded/long"
    assert derive == rl
    defaults = RLMethodConfig()
    drift = {k: (getattr(defaults, k), v) for k, v in rl.items() if getattr(defaults, k) != v}
    assert not drift, f"RLMethodConfig defaults differ from rl_long2short.yaml: {drift}"


def test_derive_budget_is_budget_configs_defaults():
    """derive_budget.yaml holds BudgetConfig's defaults (plus the long model), so `l2s derive --method
    budget` means the same with or without it; the budget range is on and Kimi's length reward off."""
    from l2s.methods.budget import BudgetConfig

    derive = yaml.safe_load((CONFIGS / "derive_budget.yaml").read_text())
    assert derive.pop("long") == "~/.cache/l2s/embedded/long"
    defaults = BudgetConfig()
    drift = {k: (getattr(defaults, k), v) for k, v in derive.items() if getattr(defaults, k) != v}
    assert not drift, f"BudgetConfig defaults differ from derive_budget.yaml: {drift}"
    assert derive["length_penalty_weight"] == 0 and derive["budget_min"] <= derive["budget_max"]
