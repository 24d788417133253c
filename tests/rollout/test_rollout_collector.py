"""The async collector with a scripted fake policy (fast): TITO layout, limits, failures, groups."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from agentrl.errors import ChatTemplateError, ConfigError, EnvNotFoundError, PolicyServerError
from agentrl.policy.base import Generation, Policy, SamplingParams
from agentrl.rollout import RolloutConfig, collect, collect_sync
from agentrl.trajectory import Trajectory, load_jsonl, save_jsonl

CALL = '<tool_call>\n{"name": "double", "arguments": {"x": %d}}\n</tool_call>'


def fake_logprob(position: int) -> float:
    """Logprob the fake policy reports for the token at absolute ``position``."""
    return -((position % 97) + 1) / 100.0


class FakeScriptedPolicy(Policy):
    """Says ``reply(prompt_text)``; ``<|im_end|>`` unless ``max_tokens`` cuts it (``length``).

    Logprobs encode each token's absolute position (:func:`fake_logprob`), so alignment
    errors show up as wrong values.
    """

    def __init__(self, tokenizer: Any, reply: Callable[[str], str], delay: float = 0.0) -> None:
        self.tokenizer = tokenizer
        self.reply = reply
        self.delay = delay
        self.calls: list[tuple[list[int], SamplingParams, list[int]]] = []
        self.im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> list[Generation]:
        await asyncio.sleep(self.delay)
        prompt_text = self.tokenizer.decode(list(prompt_ids))
        ids = self.tokenizer.encode(self.reply(prompt_text), add_special_tokens=False)
        finish = "stop"
        if len(ids) + 1 > params.max_tokens:
            ids, finish = ids[: params.max_tokens], "length"
        else:
            ids.append(self.im_end)
        logprobs = [fake_logprob(len(prompt_ids) + i) for i in range(len(ids))]
        self.calls.append((list(prompt_ids), params, ids))
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return [Generation(ids, text, logprobs, finish)]


def solver(prompt: str) -> str:
    """Turn 1: call the tool on the task's number; turn 2: answer with the tool's result."""
    seed = int(re.search(r"Task (\d+)", prompt).group(1))
    results = re.findall(r"<tool_response>\n(-?\d+)", prompt)
    return f"<answer>{results[-1]}</answer>" if results else CALL % seed


class FakeDoubleEnv:
    """Task: double the seed. A ``double`` tool; reward 0.1 per tool call, 1 for the answer.

    ``sleep`` delays reset and step (a slow tool); ``fail`` = (seed, turn) raises there;
    ``never_end`` ignores answers (only limits end the episode); ``pad`` lengthens tool
    results by that many words.
    """

    def __init__(self, sleep: float = 0.0, fail: tuple[int, int] | None = None,
                 never_end: bool = False, truncate_at: int | None = None, pad: int = 0,
                 hook: Callable[[FakeDoubleEnv], None] | None = None) -> None:
        self.sleep, self.fail, self.never_end = sleep, fail, never_end
        self.truncate_at, self.pad, self.hook = truncate_at, pad, hook
        self.closed = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[list[dict[str, str]], dict[str, Any]]:
        time.sleep(self.sleep)
        if self.fail == (seed, 0):
            raise OSError("cannot start the tool sandbox")
        self.seed, self.turn = seed, 0
        return [
            {"role": "system", "content": "Use the double tool. Answer in <answer></answer>."},
            {"role": "user", "content": f"Task {seed}: what is {seed} doubled? ✓ ünï"},
        ], {"success": None}

    def step(self, action: str) -> tuple[list[dict[str, Any]], float, bool, bool, dict[str, Any]]:
        time.sleep(self.sleep)
        self.turn += 1
        if self.hook is not None:
            self.hook(self)
        if self.fail == (self.seed, self.turn):
            raise RuntimeError(f"tool crashed on turn {self.turn}")
        answer = re.search(r"<answer>(-?\d+)</answer>", action)
        if answer and not self.never_end:
            ok = int(answer.group(1)) == 2 * self.seed
            return ([{"role": "user", "content": "Correct." if ok else "Wrong."}],
                    1.0 if ok else 0.0, True, False, {"success": ok, "parsed": True})
        call = re.search(r'"x": (-?\d+)', action)
        result = str(2 * int(call.group(1))) if call else "error: no tool call"
        result += " pad" * self.pad
        truncated = self.truncate_at is not None and self.turn >= self.truncate_at
        return ([{"role": "tool", "content": result, "name": "double"}], 0.1, False, truncated,
                {"success": False if truncated else None, "parsed": bool(call),
                 "not_json": object()})

    def close(self) -> None:
        self.closed = True


def fresh_render(tok: Any, messages: list[dict[str, Any]], gen: bool) -> list[int]:
    return list(tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen,
                                        return_dict=False))


def check_tito(traj: Trajectory, policy: FakeScriptedPolicy) -> None:
    """Every turn holds exactly the ids the policy generated for that prompt, mask and logprobs aligned."""
    generated = {tuple(prompt): ids for prompt, _, ids in policy.calls}
    mask = [0] * len(traj.token_ids)
    for turn in traj.turns:
        assert traj.token_ids[turn.start:turn.end] == generated[tuple(traj.token_ids[:turn.start])]
        mask[turn.start:turn.end] = [1] * (turn.end - turn.start)
    assert traj.loss_mask == mask
    assert traj.logprobs == [fake_logprob(p) if m else 0.0 for p, m in enumerate(mask)]


def test_trajectories_are_token_in_token_out(tiny_tokenizer: Any) -> None:
    policy = FakeScriptedPolicy(tiny_tokenizer, solver)
    trajs = collect_sync(FakeDoubleEnv, policy, [3, 14], RolloutConfig(max_turns=4))
    assert len(trajs) == 2
    for traj, seed in zip(trajs, [3, 14], strict=True):
        check_tito(traj, policy)
        assert traj.token_ids == fresh_render(tiny_tokenizer, traj.messages, False)
        assert traj.prompt_len == len(fresh_render(tiny_tokenizer, traj.messages[:2], True))
        assert [m["role"] for m in traj.messages] == [
            "system", "user", "assistant", "tool", "assistant", "user"]
        assert traj.messages[3]["content"] == str(2 * seed)
        assert traj.messages[4]["content"] == f"<answer>{2 * seed}</answer>"
        # Per-turn rewards: 0.1 for the tool call, 1 for the right answer.
        assert traj.rewards == [0.1, 1.0] and traj.total_reward == pytest.approx(1.1)
        assert traj.success is True and traj.terminated and not traj.truncated
        assert traj.end_reason == "terminated" and traj.error is None
        assert traj.turns[0].info == {"success": None, "parsed": True}  # object() dropped
        assert traj.seed == seed and traj.env_id == "FakeDoubleEnv"


def test_env_steps_run_concurrently_and_concurrency_is_bounded(tiny_tokenizer: Any) -> None:
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    class Counting(FakeDoubleEnv):
        def step(self, action: str) -> Any:
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            try:
                return super().step(action)
            finally:
                with lock:
                    state["now"] -= 1

    policy = FakeScriptedPolicy(tiny_tokenizer, solver)
    trajs = collect_sync(lambda: Counting(sleep=0.1), policy, range(12),
                         RolloutConfig(concurrency=12))
    # 12 envs sleeping 0.1 s per step, submitted together: all 12 in a step at once.
    assert state["max"] == 12 and all(t.success for t in trajs)
    state["max"] = 0
    collect_sync(lambda: Counting(sleep=0.05), policy, range(12), RolloutConfig(concurrency=3))
    assert state["max"] == 3


def test_slow_env_step_does_not_block_generation(tiny_tokenizer: Any) -> None:
    # Episode 0's first step waits until the policy has served 10 more generations of the
    # other episodes; if env steps blocked the event loop they never would (timeout).
    served = threading.Event()

    class Counting(FakeScriptedPolicy):
        async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> Any:
            out = await super().generate(prompt_ids, params)
            if len(self.calls) >= 11:
                served.set()
            return out

    def hook(env: FakeDoubleEnv) -> None:
        if env.seed == 0 and env.turn == 1 and not served.wait(timeout=20):
            raise TimeoutError("generation was blocked while an env step ran")

    policy = Counting(tiny_tokenizer, solver, delay=0.001)
    trajs = collect_sync(lambda: FakeDoubleEnv(hook=hook), policy, range(8))
    assert [t.end_reason for t in trajs] == ["terminated"] * 8, trajs[0].error


def test_max_turns(tiny_tokenizer: Any) -> None:
    policy = FakeScriptedPolicy(tiny_tokenizer, lambda p: CALL % 2)
    (traj,) = collect_sync(lambda: FakeDoubleEnv(never_end=True), policy, [1],
                           RolloutConfig(max_turns=3))
    assert traj.num_turns == 3 and traj.end_reason == "max_turns"
    assert traj.truncated and not traj.terminated and traj.success is None
    # The last tool result is kept, closed without a generation prompt.
    assert traj.messages[-1] == {"role": "tool", "content": "4", "name": "double"}
    assert traj.token_ids == fresh_render(tiny_tokenizer, traj.messages, False)
    check_tito(traj, policy)


def test_max_new_tokens(tiny_tokenizer: Any) -> None:
    long = "word " * 50
    policy = FakeScriptedPolicy(tiny_tokenizer, lambda p: long)
    cfg = RolloutConfig(max_new_tokens=7, max_turns=3)
    (traj,) = collect_sync(FakeDoubleEnv, policy, [1], cfg)
    assert traj.end_reason == "max_new_tokens" and traj.truncated and not traj.terminated
    assert traj.num_turns == 1 and traj.turns[0].finish_reason == "length"
    assert traj.turns[0].end - traj.turns[0].start == 7
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    newline = tiny_tokenizer.encode("\n", add_special_tokens=False)
    # The cut turn is closed with <|im_end|>\n as non-model tokens.
    assert traj.token_ids[traj.turns[0].end:] == [im_end, *newline]
    assert traj.loss_mask[traj.turns[0].end:] == [0, 0]
    check_tito(traj, policy)
    # truncate_on_length=False: the cut text goes to the env and the episode goes on.
    cfg = RolloutConfig(max_new_tokens=7, max_turns=3, truncate_on_length=False)
    (traj,) = collect_sync(FakeDoubleEnv, policy, [1], cfg)
    assert traj.end_reason == "max_turns" and traj.num_turns == 3
    assert [t.finish_reason for t in traj.turns] == ["length"] * 3
    assert traj.messages[3]["content"] == "error: no tool call"
    check_tito(traj, policy)


def test_max_context(tiny_tokenizer: Any) -> None:
    policy = FakeScriptedPolicy(tiny_tokenizer, lambda p: CALL % 2)
    cfg = RolloutConfig(max_context=300, max_new_tokens=64, max_turns=50)
    (traj,) = collect_sync(lambda: FakeDoubleEnv(never_end=True, pad=20), policy, [1], cfg)
    assert traj.end_reason == "max_context" and traj.truncated
    assert 1 <= traj.num_turns < 50 and len(traj.token_ids) <= 300
    # The env messages that did not fit were dropped (and counted), not cut.
    assert traj.metadata["dropped_messages"] == 1
    assert traj.token_ids == fresh_render(tiny_tokenizer, traj.messages, False)
    check_tito(traj, policy)
    # A prompt that does not fit at all: no turn is generated.
    calls = len(policy.calls)
    (traj,) = collect_sync(FakeDoubleEnv, policy, [1], RolloutConfig(max_context=20, max_new_tokens=8))
    assert traj.end_reason == "max_context" and traj.num_turns == 0 and traj.truncated
    assert traj.prompt_len == len(traj.token_ids) > 20 - 2 and len(policy.calls) == calls


def test_max_context_cuts_a_turn(tiny_tokenizer: Any) -> None:
    policy = FakeScriptedPolicy(tiny_tokenizer, lambda p: "word " * 500)
    (traj,) = collect_sync(FakeDoubleEnv, policy, [1],
                           RolloutConfig(max_context=80, max_new_tokens=64))
    prompt_len = traj.prompt_len
    # Room for 80 - prompt - 2 closing tokens; the turn hit it, so the context limit ended it.
    assert traj.turns[0].end - traj.turns[0].start == 80 - prompt_len - 2 < 64
    assert traj.end_reason == "max_context" and len(traj.token_ids) == 80


def test_env_truncation(tiny_tokenizer: Any) -> None:
    policy = FakeScriptedPolicy(tiny_tokenizer, lambda p: CALL % 2)
    (traj,) = collect_sync(lambda: FakeDoubleEnv(truncate_at=2), policy, [1])
    assert traj.end_reason == "env_truncated" and traj.truncated and traj.num_turns == 2
    assert traj.success is False


def test_env_raising_fails_only_its_episode(tiny_tokenizer: Any) -> None:
    envs: list[FakeDoubleEnv] = []

    def make() -> FakeDoubleEnv:
        envs.append(FakeDoubleEnv(fail=(2, 1)))
        return envs[-1]

    policy = FakeScriptedPolicy(tiny_tokenizer, lambda p: CALL % 2)
    cfg = RolloutConfig(max_turns=3)
    trajs = collect_sync(lambda: FakeDoubleEnv(fail=(2, 2), never_end=True), policy, [1, 2, 3], cfg)
    bad = trajs[1]
    assert bad.end_reason == "error" and bad.success is False and not bad.truncated
    assert bad.error == "env.step (turn 2) raised RuntimeError: tool crashed on turn 2"
    # Turn 1 (and its reward) and the failing turn's tokens are kept.
    assert bad.num_turns == 2 and bad.rewards == [0.1, 0.0]
    assert [t.end_reason for t in (trajs[0], trajs[2])] == ["max_turns", "max_turns"]
    # A failing reset: no tokens at all.
    trajs = collect_sync(lambda: FakeDoubleEnv(fail=(5, 0)), policy, [4, 5], cfg)
    assert trajs[1].end_reason == "error" and trajs[1].token_ids == [] and trajs[1].num_turns == 0
    assert trajs[1].error == "env.reset raised OSError: cannot start the tool sandbox"
    assert trajs[0].end_reason == "max_turns"
    # Every env is closed, failed ones included.
    trajs = collect_sync(make, policy, [1, 2], cfg)
    assert [t.end_reason for t in trajs] == ["max_turns", "error"]
    assert len(envs) == 2 and all(e.closed for e in envs)


def test_env_breaking_the_contract_is_an_error(tiny_tokenizer: Any) -> None:
    class BadMessages(FakeDoubleEnv):
        def step(self, action: str) -> Any:
            return "not a list", 0.0, False, False, {}

    class NanReward(FakeDoubleEnv):
        def step(self, action: str) -> Any:
            return [], float("nan"), False, False, {}

    class Silent(FakeDoubleEnv):
        def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
            return [], {}

    policy = FakeScriptedPolicy(tiny_tokenizer, lambda p: "hi")
    (traj,) = collect_sync(Silent, policy, [0])
    assert traj.end_reason == "error" and "reset returned no messages" in traj.error
    (traj,) = collect_sync(BadMessages, policy, [0])
    assert traj.end_reason == "error" and "not a list of" in traj.error
    (traj,) = collect_sync(NanReward, policy, [0])
    assert traj.end_reason == "error" and "non-finite reward" in traj.error


def test_policy_error_fails_only_its_episode(tiny_tokenizer: Any) -> None:
    class Flaky(FakeScriptedPolicy):
        async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> Any:
            if "Task 7" in self.tokenizer.decode(list(prompt_ids)):
                raise PolicyServerError("server at http://127.0.0.1:1 is unreachable")
            return await super().generate(prompt_ids, params)

    trajs = collect_sync(FakeDoubleEnv, Flaky(tiny_tokenizer, solver), [6, 7])
    assert trajs[0].success is True
    assert trajs[1].end_reason == "error" and "unreachable" in trajs[1].error


def test_non_prefix_preserving_template_stops_collection(tiny_tokenizer: Any) -> None:
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{%- for m in messages %}{%- set c = m.content | trim if m.role == 'assistant' else m.content %}"
        "{{- '<|im_start|>' + m.role + '\\n' + c + '<|im_end|>\\n' }}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )
    policy = FakeScriptedPolicy(tok, lambda p: "  padded answer  ")
    with pytest.raises(ChatTemplateError, match="rewrites assistant content"):
        collect_sync(FakeDoubleEnv, policy, range(4))


def test_groups_and_sampling_seeds(tiny_tokenizer: Any) -> None:
    policy = FakeScriptedPolicy(tiny_tokenizer, solver)
    cfg = RolloutConfig(group_size=3, seed=100, max_turns=4)
    trajs = collect_sync(FakeDoubleEnv, policy, [5, 6], cfg)
    assert [t.seed for t in trajs] == [5, 5, 5, 6, 6, 6]
    ids = [t.group_id for t in trajs]
    assert len(set(ids[:3])) == 1 and len(set(ids[3:])) == 1 and ids[0] != ids[3]
    assert [t.metadata["episode"] for t in trajs] == list(range(6))
    # Turn t of episode k samples with seed 100 + 4 k + t.
    seeds = sorted(params.seed for _, params, _ in policy.calls)
    assert seeds == sorted(100 + 4 * k + t for k in range(6) for t in range(2))
    again = collect_sync(FakeDoubleEnv, policy, [5], cfg)
    assert again[0].group_id != ids[0]  # a new run never merges into old groups


def test_progress_and_async_api(tiny_tokenizer: Any, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Trajectory] = []
    policy = FakeScriptedPolicy(tiny_tokenizer, solver)
    trajs = asyncio.run(collect(FakeDoubleEnv, policy, range(5), progress=seen.append))
    assert sorted(t.seed for t in seen) == [0, 1, 2, 3, 4] and len(trajs) == 5
    collect_sync(FakeDoubleEnv, policy, range(3), progress=True)
    assert "3/3" in capsys.readouterr().err


def test_bad_arguments(tiny_tokenizer: Any) -> None:
    with pytest.raises(ConfigError, match="max_turns must be an int >= 1"):
        RolloutConfig(max_turns=0)
    with pytest.raises(ConfigError, match="smaller than max_context"):
        RolloutConfig(max_new_tokens=512, max_context=512)
    with pytest.raises(ConfigError, match="temperature"):
        RolloutConfig(temperature=-1.0)
    policy = FakeScriptedPolicy(tiny_tokenizer, solver)
    with pytest.raises(ConfigError, match="specs must be a sequence"):
        collect_sync(FakeDoubleEnv, policy, 5)  # type: ignore[arg-type]
    assert collect_sync(FakeDoubleEnv, policy, []) == []
    with pytest.raises(EnvNotFoundError, match="Did you mean: agentrl/GuessNumber-v0"):
        collect_sync("agentrl/GuesNumber-v0", policy, [0])


def test_registered_env_with_fake_policy(tiny_tokenizer: Any) -> None:
    # The lead's calculator env by id, and the policy package's FakePolicy: a tool call,
    # then an answer.
    from agentrl.policy import FakePolicy
    from agentrl.policy.fake import FAKE_LOGPROB

    def reply(prompt: str) -> str:
        if "<tool_response>" in prompt:
            return "<answer>4</answer>"
        return '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2 + 2"}}\n</tool_call>'

    policy = FakePolicy(tiny_tokenizer, reply)
    trajs = collect_sync("agentrl/Calculator-v0", policy, [0, 1], RolloutConfig(max_turns=4))
    for traj in trajs:
        assert traj.env_id == "agentrl/Calculator-v0", traj.error
        assert traj.end_reason == "terminated" and traj.num_turns == 2
        assert "4" in traj.messages[3]["content"]
        assert traj.messages[4]["content"] == "<answer>4</answer>"
        assert traj.logprobs == [FAKE_LOGPROB if m else 0.0 for m in traj.loss_mask]
        assert traj.token_ids == fresh_render(tiny_tokenizer, traj.messages, False)


def test_collected_trajectories_roundtrip_jsonl(tmp_path: Path, tiny_tokenizer: Any) -> None:
    policy = FakeScriptedPolicy(tiny_tokenizer, solver)
    trajs = collect_sync(lambda: FakeDoubleEnv(fail=(2, 2)), policy, [1, 2, 3],
                         RolloutConfig(group_size=2))
    path = tmp_path / "rollouts.jsonl"
    save_jsonl(trajs, path)
    assert load_jsonl(path) == trajs
    assert {t.end_reason for t in trajs} == {"terminated", "error"}
