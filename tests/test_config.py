"""YAML configs with key=value overrides: types, unknown keys, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mem1_agent.config import Config, ConfigError, load_config, save_config

PRESETS = Path(__file__).resolve().parents[1] / "examples" / "configs"


@pytest.mark.parametrize("name", ["qa2_tiny.yaml", "qa2_smollm.yaml"])
def test_presets_load(name):
    cfg = load_config(PRESETS / name)
    assert isinstance(cfg, Config)
    assert cfg.env.kwargs["n_objectives"] == 2


def test_overrides_are_typed_and_nested():
    cfg = load_config(PRESETS / "qa2_tiny.yaml", ["ppo.lr=1e-5", "train.iterations=7", "eval.sizes=[2, 4, 8]",
                                                  "env.kwargs.topk=3", "ppo.kl_in_reward=false", "env.max_turns=null"])
    assert cfg.ppo.lr == 1e-5 and cfg.train.iterations == 7 and cfg.eval.sizes == [2, 4, 8]
    assert cfg.env.kwargs["topk"] == 3 and cfg.ppo.kl_in_reward is False and cfg.env.max_turns is None
    assert load_config(None, ["ppo.lr=1"]).ppo.lr == 1.0  # ints widen to floats


def test_defaults_without_a_file():
    assert load_config().ppo.kl_coef == 0.001
    assert load_config().ppo.gamma == 1.0 and load_config().ppo.lam == 1.0


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match=r"unknown key ppo\.lrr.*valid keys of ppo: lr"):
        load_config(PRESETS / "qa2_tiny.yaml", ["ppo.lrr=1"])
    with pytest.raises(ConfigError, match="unknown key optimiser"):
        load_config(None, ["optimiser.lr=1"])


def test_bad_types_are_named():
    with pytest.raises(ConfigError, match=r"ppo\.lr: expected float, got 'fast'"):
        load_config(None, ["ppo.lr=fast"])
    with pytest.raises(ConfigError, match=r"train\.iterations: expected int, got 2\.5"):
        load_config(None, ["train.iterations=2.5"])
    with pytest.raises(ConfigError, match=r"eval\.sizes\[1\]: expected int"):
        load_config(None, ["eval.sizes=[2, x]"])
    with pytest.raises(ConfigError, match="train.resume: expected bool"):
        load_config(None, ["train.resume=1"])


def test_bad_values_and_syntax():
    with pytest.raises(ConfigError, match="algorithm must be one of"):
        load_config(None, ["train.algorithm=dqn"])
    with pytest.raises(ConfigError, match="kl_estimator"):
        load_config(None, ["ppo.kl_estimator=k9"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(None, ["ppo.lr"])


def test_file_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  iterations: 3\n ppo: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml line \d+: invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(top)


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(PRESETS / "qa2_tiny.yaml", ["grpo.group_size=3"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_critic_only_with_ppo():
    assert load_config(None, ["train.algorithm=sft+ppo", "model.critic=tiny"]).model.critic == "tiny"
    assert load_config(None, []).model.critic is None
    with pytest.raises(ConfigError, match="model.critic is PPO's value model"):
        load_config(None, ["train.algorithm=grpo", "model.critic=tiny"])


def test_lora_and_gradient_checkpointing_keys_and_override_syntax(tmp_path):
    from mem1_agent.config import LoraSettings

    cfg = load_config(PRESETS / "qa2_tiny.yaml", ["model.lora={r: 8, alpha: 16}", "model.gradient_checkpointing=true"])
    assert cfg.model.lora == LoraSettings(r=8, alpha=16.0) and cfg.model.gradient_checkpointing is True
    assert load_config(None, ["model.lora.r=4", "model.lora.target_modules=[q_proj, o_proj]"]).model.lora == LoraSettings(r=4, target_modules=["q_proj", "o_proj"])
    assert load_config(None, ["model.lora={r: 4}", "model.lora=null"]).model.lora is None
    assert load_config().model.lora is None and load_config().model.gradient_checkpointing is False
    save_config(cfg, tmp_path / "c.yaml")  # written and read back as a nested mapping
    assert load_config(tmp_path / "c.yaml").model.lora == cfg.model.lora
    with pytest.raises(ConfigError, match="unknown key model.lora.alfa; valid keys of model.lora: r, alpha"):
        load_config(None, ["model.lora={r: 8, alfa: 16}"])
    with pytest.raises(ConfigError, match="model.lora: expected a mapping"):
        load_config(None, ["model.lora=8"])
    with pytest.raises(ConfigError, match="model.lora.r must be >= 1"):
        load_config(None, ["model.lora.r=0"])
