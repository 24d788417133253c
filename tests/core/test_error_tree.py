"""One exception tree: a user's mistake at any main entry point raises an AgentRLError.

Each case calls a public entry point (registry, env construction and use, parsers, tools,
sessions, rollout config and specs, policy loader, spaces) with bad input; every error
raised must come from :mod:`agentrl.errors` (several also subclass ValueError/TypeError
for compatibility, which the last test pins).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

import agentrl  # noqa: F401  (registers the ids)
from agentrl.envs.calculator import CalculatorEnv
from agentrl.envs.guess_number import GuessNumberEnv
from agentrl.errors import AgentRLError, ConfigError, InvalidActionError
from agentrl.parsers import HermesParser, JSONParser, PythonicParser, get_parser
from agentrl.policy.loader import load_policy
from agentrl.registry import make, register_env
from agentrl.rollout.config import RolloutConfig
from agentrl.rollout.spec import EpisodeSpec, as_spec, as_specs, specs_for
from agentrl.sandbox.docker import ContainerPool
from agentrl.sandbox.session import Session, SessionPool
from agentrl.spaces import ChatMessages, FreeText
from agentrl.tool import Tool, tool

# A backend object that is never started (the argument checks come first).
_STUB = SimpleNamespace(name="stub", spawn=None)


def _reset(**kw: Any) -> Callable[[], object]:
    return lambda: CalculatorEnv().reset(**kw)


def _step(action: Any) -> Callable[[], object]:
    def run() -> object:
        env = CalculatorEnv()
        env.reset(seed=0)
        return env.step(action)

    return run


def _bad_tool_env() -> object:
    from agentrl.env import ToolEnv

    class Bad(ToolEnv):
        def sample_task(self, rng, options):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def grade(self, task, answer):  # type: ignore[no-untyped-def]
            return 0.0

    return Bad(tools=[lambda x: x])  # type: ignore[list-item]


CASES: dict[str, Callable[[], object]] = {
    # registry
    "make: unknown id": lambda: make("agentrl/Nope-v0"),
    "make: not a string": lambda: make(123),  # type: ignore[arg-type]
    "make: argument the env does not take": lambda: make("agentrl/Calculator-v0", nonsense=1),
    "make: bad argument value": lambda: make("agentrl/Calculator-v0", difficulty=7),
    "register: malformed id": lambda: register_env("no version", "x:Y"),
    "register: entry point not a string": lambda: register_env("tests/A-v0", 5),  # type: ignore[arg-type]
    # env construction
    "ToolEnv: max_turns 0": lambda: CalculatorEnv(max_turns=0),
    "ToolEnv: max_turns a string": lambda: CalculatorEnv(max_turns="3"),
    "ToolEnv: unknown tool format": lambda: CalculatorEnv(tool_format="xml"),
    "ToolEnv: unknown render mode": lambda: CalculatorEnv(render_mode="rgb"),
    "ToolEnv: tools not Tool objects": _bad_tool_env,
    "GuessNumber: high <= low": lambda: GuessNumberEnv(low=5, high=1),
    "GuessNumber: max_turns a string": lambda: GuessNumberEnv(max_turns="3"),  # type: ignore[arg-type]
    "Calculator: difficulty a string": lambda: CalculatorEnv(difficulty="1"),  # type: ignore[arg-type]
    # reset / step
    "reset: negative seed": _reset(seed=-1),
    "reset: float seed": _reset(seed=1.5),
    "reset: options a string": _reset(options="abc"),
    "reset: options a list": _reset(options=[("task_id", 1)]),
    "reset: unknown task id": _reset(options={"task_id": "x"}),
    "reset: difficulty option out of range": _reset(options={"difficulty": 9}),
    "reset: difficulty option a word": _reset(options={"difficulty": "hard"}),
    "step: before reset": lambda: CalculatorEnv().step("x"),
    "step: action not text": _step(5),
    "step: message with a wrong role": _step({"role": "user", "content": "x"}),
    # parsers
    "get_parser: unknown name": lambda: get_parser("xml"),
    "get_parser: None": lambda: get_parser(None),  # type: ignore[arg-type]
    "hermes: not text": lambda: HermesParser().parse(None),  # type: ignore[arg-type]
    "json: not text": lambda: JSONParser().parse(5),  # type: ignore[arg-type]
    "pythonic: bytes": lambda: PythonicParser().parse(b"[f()]"),  # type: ignore[arg-type]
    # tools
    "tool: not callable": lambda: tool(5),  # type: ignore[call-overload]
    "tool: no docstring": lambda: tool(lambda x: x),
    "tool: bad name": lambda: Tool(lambda: 1, name="bad name", description="d"),
    # sessions (nothing is started: the checks come first)
    "session: code not text": lambda: Session(_STUB).run(5),  # type: ignore[arg-type]
    "session: backend without sessions": lambda: Session(SimpleNamespace(name="stub")),  # type: ignore[arg-type]
    "session pool: negative size": lambda: SessionPool(None, size=-1),  # type: ignore[arg-type]
    "container pool: size 0": lambda: ContainerPool(None, size=0),
    # rollout config and specs
    "RolloutConfig: max_turns 0": lambda: RolloutConfig(max_turns=0),
    "RolloutConfig: negative temperature": lambda: RolloutConfig(temperature=-1),
    "RolloutConfig: top_p a string": lambda: RolloutConfig(top_p="x"),  # type: ignore[arg-type]
    "RolloutConfig: stop a string": lambda: RolloutConfig(stop="</answer>"),  # type: ignore[arg-type]
    "RolloutConfig: env_kwargs a list": lambda: RolloutConfig(env_kwargs=[]),  # type: ignore[arg-type]
    "EpisodeSpec: seed a string": lambda: EpisodeSpec(seed="1"),  # type: ignore[arg-type]
    "as_spec: a float": lambda: as_spec(1.5),  # type: ignore[arg-type]
    "as_specs: an int": lambda: as_specs(5),  # type: ignore[arg-type]
    "specs_for: infinite env without episodes": lambda: specs_for(CalculatorEnv()),
    "specs_for: unknown id": lambda: specs_for("agentrl/Nope-v0", episodes=1),
    # policy loader
    "load_policy: unknown scheme": lambda: load_policy("foo"),
    "load_policy: not a string": lambda: load_policy(5),  # type: ignore[arg-type]
    "load_policy: unknown hf setting": lambda: load_policy("hf:tiny", nonsense=1),
    "load_policy: unknown openai setting": lambda: load_policy("openai:http://127.0.0.1:1", nonsense=1),
    "load_policy: unknown vllm setting": lambda: load_policy("vllm:tiny", nonsense=1),
    # spaces
    "ChatMessages: shared_bytes too small": lambda: ChatMessages(shared_bytes=1),
    "FreeText: max_length 0": lambda: FreeText(0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_user_mistakes_raise_agentrl_errors(name):
    with pytest.raises(Exception) as caught:  # noqa: B017,PT011  (the type is the point)
        CASES[name]()
    assert isinstance(caught.value, AgentRLError), (
        f"{name}: {type(caught.value).__module__}.{type(caught.value).__name__} escaped: "
        f"{caught.value}"
    )


def test_compatible_builtin_bases_are_kept():
    # Code written against the old ValueError/TypeError still catches these.
    with pytest.raises(ValueError):
        RolloutConfig(stop="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        make("agentrl/Calculator-v0", nonsense=1)
    with pytest.raises(TypeError):
        HermesParser().parse(None)  # type: ignore[arg-type]
    err = pytest.raises(ConfigError, load_policy, "hf:tiny", nonsense=1).value
    assert "nonsense" in str(err) and "HFConfig takes" in str(err)
    assert issubclass(InvalidActionError, TypeError)
