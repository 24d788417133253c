"""Environment registry: agentrl envs live in gymnasium's own registry.

``register_env`` records a one-line description beside gymnasium's ``register`` (when
none is given, ``list_envs`` shows the env class's ``description`` attribute, importing
its module then); ``make`` is ``gymnasium.make`` with an error that suggests the nearest
registered ids.
After ``import agentrl``, ``gymnasium.make("agentrl/Calculator-v0")`` works; without
any import, ``gymnasium.make("agentrl:agentrl/Calculator-v0")`` imports the package
through gymnasium's module-prefix syntax.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from agentrl.errors import AgentRLError, ConfigError, EnvNotFoundError

__all__ = ["EnvInfo", "register_env", "list_envs", "make", "suggest_ids"]

_ID = re.compile(r"^(?:[\w.-]+/)?[A-Za-z][\w.-]*-v\d+$")


@dataclass(frozen=True)
class EnvInfo:
    """A registered environment, as ``agentrl envs`` lists it."""

    id: str
    """Gymnasium id, e.g. ``agentrl/Calculator-v0``."""
    description: str
    """One line saying what the environment is."""
    entry_point: str
    """``module:Class`` that gymnasium instantiates."""


_DESCRIPTIONS: dict[str, str | None] = {}


def register_env(
    env_id: str,
    entry_point: str,
    *,
    description: str | None = None,
    kwargs: dict[str, Any] | None = None,
    nondeterministic: bool = False,
) -> None:
    """Register an environment in gymnasium's registry (ids look like ``ns/Name-vN``).

    Re-registering the same id with the same entry point is a no-op, so modules that
    register at import time can be imported again safely. ``description`` defaults to
    the env class's ``description`` attribute. Raises :class:`~agentrl.errors.ConfigError`
    for a malformed id or an id already registered to another entry point.
    """
    if not isinstance(env_id, str) or not _ID.match(env_id):
        raise ConfigError(f"invalid env id {env_id!r}: use the form 'namespace/Name-vN'")
    if not isinstance(entry_point, str) or ":" not in entry_point:
        raise ConfigError(f"entry_point must be a 'module:Class' string, got {entry_point!r}")
    existing = gym.registry.get(env_id)
    if existing is not None:
        if existing.entry_point == entry_point:
            return
        raise ConfigError(
            f"env id {env_id!r} is already registered to {existing.entry_point}; "
            "bump the version (-vN) for a different environment"
        )
    gym.register(
        id=env_id,
        entry_point=entry_point,
        kwargs=dict(kwargs or {}),
        nondeterministic=nondeterministic,
    )
    _DESCRIPTIONS[env_id] = description


#: Registered ids that are not environments of their own: ``agentrl/Remote-v0`` is the
#: client of an env server (it needs ``url`` and ``env_id``), so it is not listed.
UNLISTED = frozenset({"agentrl/Remote-v0"})


def list_envs(namespace: str | None = "agentrl") -> list[EnvInfo]:
    """Registered envs in ``namespace`` (all agentrl-registered envs when None); the
    remote-env client (:data:`UNLISTED`) is not an env of its own and is left out."""
    out = []
    for env_id, spec in sorted(gym.registry.items()):
        if env_id in UNLISTED:
            continue
        if namespace is None and env_id not in _DESCRIPTIONS:
            continue
        if namespace is not None and spec.namespace != namespace:
            continue
        out.append(EnvInfo(env_id, _description(env_id, spec), str(spec.entry_point)))
    return out


def _description(env_id: str, spec: gym.envs.registration.EnvSpec) -> str:
    """The registered description, else the class's ``description`` (imports its module)."""
    text = _DESCRIPTIONS.get(env_id)
    if text is None and isinstance(spec.entry_point, str):
        try:
            cls = gym.envs.registration.load_env_creator(spec.entry_point)
        except (ImportError, AttributeError) as exc:
            return f"(cannot import {spec.entry_point}: {exc})"
        text = getattr(cls, "description", "") or ""
    return text or ""


def suggest_ids(env_id: str, n: int = 3) -> list[str]:
    """The registered ids closest to ``env_id`` (case-insensitive)."""
    ids = list(gym.registry)
    lowered = {i.lower(): i for i in ids}
    close = difflib.get_close_matches(env_id.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[c] for c in close]


def make(env_id: str, *, remote: str | None = None, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with an :class:`EnvNotFoundError` that names the nearest ids.

    With ``remote="http://HOST:PORT"``, the env runs on that ``agentrl serve`` server and a
    :class:`~agentrl.remote.RemoteEnv` is returned (``kwargs``: its settings such as
    ``token``, and the env's constructor arguments).

    Raises:
        EnvNotFoundError: no such id. ConfigError: ``env_id`` is not a string, or the env
            does not take the given arguments (or refuses their values).
    """
    if not isinstance(env_id, str):
        raise ConfigError(f"an env id is a string such as 'agentrl/Calculator-v0', got {env_id!r}")
    if remote is not None:
        return gym.make("agentrl/Remote-v0", url=remote, env_id=env_id, **kwargs)
    if env_id not in gym.registry and ":" not in env_id:
        hints = suggest_ids(env_id)
        hint = f" Did you mean: {', '.join(hints)}?" if hints else ""
        raise EnvNotFoundError(
            f"no environment registered as {env_id!r}.{hint} Run `agentrl envs` to list them."
        )
    try:
        return gym.make(env_id, **kwargs)
    except TypeError as exc:
        # Arguments the env's constructor does not take are the caller's mistake.
        if isinstance(exc, AgentRLError) or not _SIGNATURE_ERROR.search(str(exc)):
            raise
        raise ConfigError(f"{env_id}: {exc}") from exc


# What Python says when a call does not fit the signature.
_SIGNATURE_ERROR = re.compile(
    r"unexpected keyword argument|missing \d+ required|takes \d+ positional|"
    r"got multiple values for argument|takes no arguments"
)
