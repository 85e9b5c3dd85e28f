from pathlib import Path

import pytest
from pydantic import Field

from l2s.config import Config, load_config
from l2s.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class Demo(Config):
    n: int = Field(8, description="samples per prompt")
    tau: float = Field(0.1, description="KL weight")
    name: str = Field("x", description="a name")


def test_defaults_yaml_flags_order(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("n: 4\ntau: 0.5\n")
    cfg = load_config(Demo, y, {"tau": 0.2, "name": None})
    assert (cfg.n, cfg.tau, cfg.name) == (4, 0.2, "x")


def test_unknown_key_in_yaml_names_key_and_valid_ones(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("n: 4\nbogus: 1\n")
    with pytest.raises(UserError, match=r"unknown config key 'bogus' in .*c.yaml; valid keys: n, name, tau"):
        load_config(Demo, y)


def test_bad_yaml_is_one_line(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("n: [1, 2\n")
    with pytest.raises(UserError) as e:
        load_config(Demo, y)
    assert "not valid YAML" in str(e.value) and "\n" not in str(e.value)


def test_wrong_type_and_missing_file(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("n: many\n")
    with pytest.raises(UserError, match="bad value for 'n'"):
        load_config(Demo, y)
    with pytest.raises(UserError, match="config file not found"):
        load_config(Demo, tmp_path / "missing.yaml")
    y.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_config(Demo, y)
