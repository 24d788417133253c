"""Config: YAML + overrides merge, resolved config round trip, one test per refused combination."""

from __future__ import annotations

import pytest

from agentrl.errors import ConfigError
from agentrl.train.config import TrainConfig, config_to_yaml, load_config, save_config


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("trainer:\n  lr: 0.001\n  steps: 7\nrollout:\n  group_size: 4\n")
    cfg = load_config(path, ["trainer.lr=1e-5", "algo.advantage=rloo"])
    assert isinstance(cfg, TrainConfig)
    assert cfg.trainer.lr == 1e-5 and cfg.trainer.steps == 7  # override beats file beats default
    assert cfg.rollout.group_size == 4 and cfg.algo.advantage == "rloo"
    assert cfg.algo.clip_low == 0.2  # untouched default


def test_resolved_config_round_trip(tmp_path):
    cfg = load_config(overrides=["algo.advantage=gae", "algo.critic=head", "rollout.env_kwargs.high=9",
                                 "algo.is_band=[0.5,2.0]"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert "critic: head" in config_to_yaml(cfg)


@pytest.mark.parametrize(("overrides", "message"), [
    (["trainer.lr=abc"], "trainer.lr"),                      # wrong type, named by its key
    (["trainer.learning_rate=1e-5"], "learning_rate"),       # unknown key
    (["trainer.lr"], "key=value"),                            # not an override
])
def test_bad_keys_and_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/run.yaml")


# ---------------------------------------------------------------- refused combinations
def _refused(overrides: list[str], *needles: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_gae_without_a_critic():
    _refused(["algo.advantage=gae"], "needs a critic", "algo.critic=head")


def test_bilevel_gae_without_a_critic():
    _refused(["algo.advantage=bilevel_gae"], "needs a critic")


def test_critic_with_a_critic_free_estimator():
    _refused(["algo.critic=head"], "does not use values", "algo.critic=none")


@pytest.mark.parametrize("name", ["grpo", "rloo", "dr_grpo"])
def test_group_estimator_with_group_size_one(name):
    _refused([f"algo.advantage={name}", "rollout.group_size=1"], "rollout.group_size >= 2")


def test_gigpo_with_single_turn_episodes():
    _refused(["algo.advantage=gigpo", "rollout.max_turns=1"], "rollout.max_turns >= 2")


def test_unknown_estimator():
    _refused(["algo.advantage=ppo2"], "not a registered estimator", "grpo")


def test_minibatches_must_divide_the_batch():
    _refused(["rollout.tasks_per_step=3", "rollout.group_size=2", "trainer.minibatches=4"],
             "divide")


def test_more_minibatches_than_episodes():
    _refused(["rollout.tasks_per_step=1", "rollout.group_size=2", "trainer.minibatches=3"],
             "exceeds")


def test_kl_in_reward_without_coefficient():
    _refused(["algo.kl_in_reward=true"], "kl_coef > 0")


def test_critic_path_without_critic_model():
    _refused(["algo.advantage=gae", "algo.critic=head", "algo.critic_path=/x"], "critic=model")


def test_greedy_training_refused():
    _refused(["rollout.temperature=0"], "temperature")


def test_generation_budget_above_context():
    _refused(["rollout.max_new_tokens=512", "rollout.max_context=512"], "max_context")


def test_backend_without_weight_sync():
    _refused(["rollout.backend=tgi"], "vllm, hf, openai")
    _refused(["rollout.backend=openai"], "rollout.server_url")  # a vLLM server in dev mode


@pytest.mark.parametrize(("overrides", "key"), [
    (["algo.ratio=seq"], "algo.ratio"),
    (["algo.aggregation=mean"], "algo.aggregation"),
    (["algo.kl_estimator=k4"], "algo.kl_estimator"),
    (["algo.is_correction=both"], "algo.is_correction"),
    (["algo.dual_clip=0.5"], "algo.dual_clip"),
    (["algo.is_band=[2.0,1.0]"], "algo.is_band"),
    (["checkpoint.keep=0"], "checkpoint.keep"),
    (["trainer.min_lr_ratio=2"], "min_lr_ratio"),
])
def test_bad_single_values(overrides, key):
    _refused(overrides, key)


def test_gigpo_on_a_single_turn_env_refused_before_any_model_loads(tmp_path):
    from agentrl.train.loop import train

    cfg = load_config(overrides=[
        "algo.advantage=gigpo", "rollout.env=agentrl/GuessNumber-v0",
        "rollout.env_kwargs.max_turns=1", f"logging.run_dir={tmp_path / 'run'}",
    ])
    with pytest.raises(ConfigError, match="one turn"):
        train(cfg)
    assert not (tmp_path / "run").exists()  # refused before the run folder was made
