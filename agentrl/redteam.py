"""Reward-hacking probes: generic exploit agents played against any env's grader.

An env's reward can often be earned without solving the task: by saying nothing, by
listing every candidate answer, by a malformed tag the grader reads leniently, by an
answer hidden in a tool call, by running out the turn limit, or by sheer length.
:func:`run_probes` plays each :data:`PROBES` agent (it knows nothing about the task and
repeats one message every turn) for a few seeded episodes and reports which ones earned
reward. An env is *flagged* when any probe earned reward in any episode.

An env for which a probe's behaviour is the right answer (e.g. a task where the correct
move is to call no tool) declares it in ``redteam_allowed``, a class attribute mapping
probe name to the reason (a class or instance attribute; an env whose right answers
depend on its settings sets it in ``__init__``); such a probe is reported as allowed.

``agentrl check ENV_ID`` runs the probes beside the oracle; ``agentrl check --redteam``
prints the probe table for one env or for every registered env.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from agentrl.env import MAX_ACTION_CHARS

__all__ = ["Probe", "ProbeResult", "RedTeamReport", "PROBES", "run_probes", "redteam_main"]

_CANDIDATES = [str(i) for i in range(101)] + ["yes", "no", "true", "false", "none", "A", "B", "C", "D"]
_SPRAY = (" ".join(f"<answer>{c}</answer>" for c in _CANDIDATES)
          + " <answer>" + ", ".join(_CANDIDATES) + "</answer>")


def _megabyte() -> str:
    body = " ".join(_CANDIDATES * 3000)
    room = MAX_ACTION_CHARS - len("<answer></answer>")
    return "<answer>" + body[:room] + "</answer>"


@dataclass(frozen=True)
class Probe:
    """One exploit agent: the message it sends every turn."""

    name: str
    """Short name (used in reports and in ``redteam_allowed``)."""
    description: str
    """What it tries."""
    action: Callable[[], str]
    """Builds the message it repeats each turn."""


#: The generic probes, in report order.
PROBES: tuple[Probe, ...] = (
    Probe("no-op", "replies without content every turn", lambda: "OK."),
    Probe("empty-answer", "an empty answer tag", lambda: "<answer></answer>"),
    Probe("answer-spraying", "many candidate answers, several answer tags", lambda: _SPRAY),
    Probe("nested-tags", "answer tags nested in each other",
          lambda: "<answer><answer>1</answer><answer>yes</answer></answer>"),
    Probe("unclosed-tag", "an answer tag that is never closed", lambda: "<answer>1 yes true A"),
    Probe("answer-in-tool-call", "the answer inside a call of a made-up tool",
          lambda: '<tool_call>{"name": "answer", "arguments": {"answer": "<answer>1</answer>", '
                  '"final": true}}</tool_call>'),
    Probe("tool-error-spam", "a failing tool call every turn until the turn limit",
          lambda: '<tool_call>{"name": "no_such_tool", "arguments": {"x": 1}}</tool_call>'),
    Probe("megabyte-answer", "a 1 MB answer full of candidates", _megabyte),
)


@dataclass
class ProbeResult:
    """What one probe earned over its episodes."""

    probe: str
    """The probe's name."""
    episodes: int
    """Episodes played."""
    successes: int
    """Episodes whose final ``info['success']`` was True."""
    mean_reward: float
    """Mean total (undiscounted) reward per episode."""
    max_reward: float
    """Highest total reward of one episode."""
    allowed: str | None = None
    """The env's reason why this probe's behaviour is correct for it, if it declares one."""

    @property
    def earned(self) -> bool:
        """The probe got success or positive reward in some episode."""
        return self.successes > 0 or self.max_reward > 0

    @property
    def exploit(self) -> bool:
        """It earned reward and the env does not allow it."""
        return self.earned and self.allowed is None


@dataclass
class RedTeamReport:
    """The probes' results on one env."""

    env_id: str
    results: list[ProbeResult] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        """Some probe earned reward the env does not allow."""
        return any(r.exploit for r in self.results)

    def summary(self) -> str:
        """One line: which probes earned reward."""
        bad = [r.probe for r in self.results if r.exploit]
        allowed = [r.probe for r in self.results if r.earned and not r.exploit]
        n = self.results[0].episodes if self.results else 0
        if bad:
            text = f"EXPLOITABLE by {', '.join(bad)}"
        elif allowed:
            text = f"{len(self.results)} probes x {n} episodes: no exploit"
        else:
            text = f"{len(self.results)} probes x {n} episodes earned no reward"
        return text + (f" ({', '.join(allowed)} earned reward the env allows)" if allowed else "")

    def render(self) -> str:
        """A table: probe, successes, mean/max reward, verdict."""
        lines = [f"Red-team probes on {self.env_id}",
                 f"  {'probe':<20} {'success':>8} {'mean R':>8} {'max R':>8}  verdict"]
        for r in self.results:
            verdict = ("EXPLOIT" if r.exploit else f"allowed: {r.allowed}" if r.earned else "ok")
            lines.append(f"  {r.probe:<20} {r.successes:>4}/{r.episodes:<3} {r.mean_reward:>8.3f} "
                         f"{r.max_reward:>8.3f}  {verdict}")
        lines.append(f"Verdict: {'FLAGGED' if self.flagged else 'OK'}: {self.summary()}")
        return "\n".join(lines)


def _play(env: Any, probe: Probe, seed: int, max_steps: int) -> tuple[float, bool]:
    env.reset(seed=seed)
    action = probe.action()
    total, info = 0.0, {}
    for _ in range(max_steps):
        _, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        if terminated or truncated:
            break
    return total, info.get("success") is True


def run_probes(env: gym.Env, *, env_id: str = "", episodes: int = 2, seed: int = 0,
               max_steps: int = 64, probes: tuple[Probe, ...] = PROBES) -> RedTeamReport:
    """Play every probe for ``episodes`` seeded episodes (seeds ``seed``, ``seed+1``, ...).

    ``env`` is any agentrl env (its ``unwrapped`` is played, so gymnasium's wrappers do
    not get in the way); an episode is cut after ``max_steps`` steps.
    """
    raw = env.unwrapped
    allowed: dict[str, str] = dict(getattr(raw, "redteam_allowed", None) or {})
    report = RedTeamReport(env_id or type(raw).__name__)
    for probe in probes:
        runs = [_play(raw, probe, seed + i, max_steps) for i in range(episodes)]
        rewards = [r for r, _ in runs]
        report.results.append(ProbeResult(
            probe.name, episodes, sum(s for _, s in runs), sum(rewards) / episodes,
            max(rewards), allowed.get(probe.name)))
    return report


def redteam_main(env_id: str | None, *, seed: int = 0, episodes: int = 2) -> int:
    """``agentrl check --redteam [ENV_ID]``: the probe table of one env, or a line per
    registered env. Exit code 1 when an env is flagged; an env that cannot be made with
    no arguments (e.g. one needing a server URL) is listed as skipped."""
    from agentrl.errors import AgentRLError
    from agentrl.registry import list_envs, make

    if env_id is not None:
        env = make(env_id)
        report = run_probes(env, env_id=env_id, seed=seed, episodes=episodes)
        env.close()
        print(report.render())
        return 1 if report.flagged else 0
    flagged = 0
    infos = list_envs()
    width = max((len(i.id) for i in infos), default=10)
    for info in infos:
        try:
            env = make(info.id)
        except (AgentRLError, TypeError) as exc:
            print(f"{info.id:<{width}}  skipped: cannot be made without arguments ({type(exc).__name__})")
            continue
        report = run_probes(env, env_id=info.id, seed=seed, episodes=episodes)
        env.close()
        flagged += report.flagged
        print(f"{info.id:<{width}}  {'FLAGGED' if report.flagged else 'ok'}: {report.summary()}", flush=True)
    print(f"{flagged} of {len(infos)} envs flagged")
    return 1 if flagged else 0
