"""`agentrl check` verifies the info keys of the env contract; registry and parser mistakes
raise agentrl errors; `agentrl envs` shows each env's own description."""

from __future__ import annotations

from typing import Any

import pytest

from agentrl.checker import check_agent_env
from agentrl.cli import main
from agentrl.envs.guess_number import GuessNumberEnv
from agentrl.errors import AgentRLError, ConfigError, ToolFormatError
from agentrl.parsers import get_parser
from agentrl.registry import list_envs, register_env


class NoParsedKey(GuessNumberEnv):
    """Forgets the ``parsed`` key of the step info."""

    def _step(self, action: str) -> Any:
        messages, reward, terminated, truncated, info = super()._step(action)
        del info["parsed"]
        return messages, reward, terminated, truncated, info


class SuccessNeverSet(GuessNumberEnv):
    """Ends episodes with success still None."""

    def _step(self, action: str) -> Any:
        messages, reward, terminated, truncated, info = super()._step(action)
        info["success"] = None
        return messages, reward, terminated, truncated, info


register_env("tests/NoParsedKey-v0", f"{__name__}:NoParsedKey", description="broken")
register_env("tests/SuccessNeverSet-v0", f"{__name__}:SuccessNeverSet", description="broken")


def _item(report: Any, name: str) -> Any:
    return next(i for i in report.items if i.name == name)


def test_check_fails_an_env_missing_an_info_key():
    report = check_agent_env("tests/NoParsedKey-v0", episodes=1)
    assert not report.passed
    item = _item(report, "info keys of the env contract")
    assert not item.passed and "info lacks parsed" in item.detail


def test_check_fails_an_env_that_never_reports_success():
    report = check_agent_env("tests/SuccessNeverSet-v0", episodes=1)
    item = _item(report, "info keys of the env contract")
    assert not item.passed and "must be a bool when the episode ends" in item.detail


def test_check_passes_the_contract_keys_of_a_good_env():
    report = check_agent_env("agentrl/GuessNumber-v0", episodes=1)
    item = _item(report, "info keys of the env contract")
    assert item.passed and "turn, success, parsed, tool_calls" in item.detail


def test_registry_mistakes_are_config_errors():
    with pytest.raises(ConfigError, match="namespace/Name-vN"):
        register_env("no version", "x:Y")
    with pytest.raises(ConfigError, match="module:Class"):
        register_env("tests/Thing-v0", "not_an_entry_point")
    with pytest.raises(ConfigError, match="already registered"):
        register_env("tests/NoParsedKey-v0", f"{__name__}:SuccessNeverSet")
    register_env("tests/NoParsedKey-v0", f"{__name__}:NoParsedKey")  # same again: a no-op


def test_unknown_tool_format_is_an_agentrl_error():
    for bad in ("yaml", ["hermes"]):
        with pytest.raises(ToolFormatError, match="hermes, json, pythonic") as err:
            get_parser(bad)  # type: ignore[arg-type]
        assert isinstance(err.value, AgentRLError) and isinstance(err.value, ValueError)


def test_envs_shows_each_class_description(capsys):
    from gymnasium.envs.registration import load_env_creator

    infos = {i.id: i for i in list_envs()}
    for env_id in ("agentrl/Calculator-v0", "agentrl/GuessNumber-v0",
                   "agentrl/PythonInterpreter-v0", "agentrl/HumanEval-v0"):
        cls = load_env_creator(infos[env_id].entry_point)
        assert cls.description and infos[env_id].description == cls.description
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("agentrl/GuessNumber-v0 "))
    assert line.split(None, 1)[1] == GuessNumberEnv.description
