"""Small masked and grouped tensor operations shared by the estimators.

All functions are pure: they never modify their inputs. Group statistics are computed
with ``index_add`` over the ids returned by ``torch.unique``, so group ids need not be
contiguous or sorted.
"""

from __future__ import annotations

import torch

from agentrl.errors import BatchShapeError

__all__ = [
    "check_shape",
    "row_valid",
    "group_stats",
    "group_normalize",
    "masked_mean",
    "masked_whiten",
    "broadcast_to_tokens",
    "broadcast_turns",
    "masked_backward_scan",
    "reverse_discounted_cumsum",
    "turn_bounds",
]


def check_shape(name: str, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Raise :class:`BatchShapeError` unless ``x.shape == shape``."""
    if tuple(x.shape) != tuple(shape):
        raise BatchShapeError(
            f"{name} must have shape {list(shape)}, got {list(x.shape)}; "
            "see the tensor conventions in agentrl.credit"
        )


def row_valid(valid: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """[n] bool: ``valid`` checked and cast, or all True when None."""
    if valid is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    check_shape("valid", valid, (n,))
    return valid.to(torch.bool)


def group_stats(
    x: torch.Tensor,
    group_ids: torch.Tensor,
    unbiased: bool = True,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-element mean, std and size of the element's group, over its valid members.

    x, group_ids, valid: [N] (``valid`` bool, None = all valid). Returns (mean [N],
    std [N], count [N]): the statistics of the valid members of each element's group,
    whatever the element's own validity. Invalid entries never enter a statistic (their
    ``x`` may even be NaN). The std of a group with fewer than two valid members is 0
    (not NaN), whatever ``unbiased`` says; the mean of a group with none is 0.
    """
    if x.dim() != 1 or group_ids.shape != x.shape:
        raise BatchShapeError(
            f"group statistics need 1-D values and ids of equal length, got {list(x.shape)} "
            f"and {list(group_ids.shape)}"
        )
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    ok = row_valid(valid, x.shape[0], x.device)
    w = ok.to(x.dtype)
    xv = torch.where(ok, x, torch.zeros_like(x))  # invalid values (even NaN) never enter a sum
    _, inv = torch.unique(group_ids, return_inverse=True)  # [N] dense group index
    n_groups = int(inv.max().item()) + 1 if inv.numel() else 0
    count = torch.zeros(n_groups, dtype=x.dtype, device=x.device).index_add_(0, inv, w)
    total = torch.zeros(n_groups, dtype=x.dtype, device=x.device).index_add_(0, inv, xv)
    mean = (total / count.clamp(min=1.0))[inv]  # [N]
    sq = torch.zeros(n_groups, dtype=x.dtype, device=x.device).index_add_(0, inv, w * (xv - mean) ** 2)
    denom = (count - 1.0) if unbiased else count
    var = torch.where(count > 1, sq / denom.clamp(min=1.0), torch.zeros_like(sq))
    return mean, var.sqrt()[inv], count[inv]


def group_normalize(
    x: torch.Tensor,
    group_ids: torch.Tensor,
    scale_by_std: bool = True,
    eps: float = 1e-6,
    unbiased: bool = True,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """(x - mean_g) / (std_g + eps), or x - mean_g without std scaling. [N] -> [N].

    Statistics are over the valid members of each group (``valid`` [N] bool, None = all);
    invalid entries get exactly 0. A group with one valid member, or whose valid values
    are all equal, gets exactly 0.
    """
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    ok = row_valid(valid, x.shape[0], x.device)
    mean, std, _ = group_stats(x, group_ids, unbiased=unbiased, valid=ok)
    centered = torch.where(ok, x - mean, torch.zeros_like(x))
    if not scale_by_std:
        return centered
    denom = std + eps
    # A degenerate group has centered == 0; keep it 0 even with eps == 0 (no 0/0 NaN).
    return torch.where(denom > 0, centered / denom.clamp(min=torch.finfo(x.dtype).tiny), torch.zeros_like(x))


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over entries where ``mask`` is 1 (0 when the mask is empty)."""
    m = mask.to(x.dtype)
    if dim is None:
        return (x * m).sum() / m.sum().clamp(min=1.0)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / (std + eps) over the masked entries of the whole batch; 0 off the mask.

    The std is the unbiased one (n - 1), 0 when fewer than two entries are masked.
    """
    m = mask.to(x.dtype)
    n = m.sum()
    mean = (x * m).sum() / n.clamp(min=1.0)
    var = (((x - mean) * m) ** 2).sum() / (n - 1.0).clamp(min=1.0)
    denom = var.sqrt() + eps
    if float(denom) == 0.0:  # all masked entries equal (or none): centred values are 0
        return torch.zeros_like(x)
    return (x - mean) / denom * m


def broadcast_to_tokens(per_episode: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, L]: each episode's scalar on its model tokens, 0 elsewhere."""
    return per_episode[:, None].to(torch.result_type(per_episode, 1.0)) * mask.to(per_episode.dtype)


def broadcast_turns(per_turn: torch.Tensor, turn_index: torch.Tensor) -> torch.Tensor:
    """[B, T] -> [B, L]: each model token gets the value of its turn; 0 where turn_index is -1."""
    b, t = per_turn.shape
    if turn_index.shape[0] != b:
        raise BatchShapeError(
            f"turn_index has {turn_index.shape[0]} rows but the per-turn tensor has {b}"
        )
    if turn_index.numel() and int(turn_index.max().item()) >= t:
        raise BatchShapeError(
            f"turn_index refers to turn {int(turn_index.max().item())} but only {t} turns are given"
        )
    idx = turn_index.clamp(min=0)
    out = torch.gather(per_turn, 1, idx.long()) if t > 0 else torch.zeros(turn_index.shape, dtype=per_turn.dtype)
    return torch.where(turn_index >= 0, out, torch.zeros_like(out))


@torch.no_grad()
def masked_backward_scan(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float = 1.0,
    values: torch.Tensor | None = None,
    bootstrap: torch.Tensor | None = None,
    cut: torch.Tensor | None = None,
) -> torch.Tensor:
    """The one backward scan of the estimators (GAE form), over the masked positions of each row.

    Going backwards over positions t with mask 1, t' the next masked position::

        delta_t = r_t + gamma * c_t * V_{t'} - V_t
        A_t     = delta_t + gamma * lam * c_t * A_{t'}

    with c_t = 1 - cut_t (``cut`` [B, N]: 1 where the chain restarts, so nothing after t
    flows into t), V = ``values`` [B, N] (0 when None), and after a row's last masked
    position V_{t'} = ``bootstrap`` [B] (0 when None) and A_{t'} = 0. Unmasked positions
    carry A and V_{t'} unchanged and undiscounted, and their values are never read.

    * token GAE: ``values`` given;
    * discounted returns: ``values=None, lam=1`` gives G_t = r_t + gamma * G_{t'};
    * bi-level GAE inside turns: ``cut`` on each turn's last token, its reward the turn target.

    Returns A [B, N], 0 off the mask. Callers check shapes and hyperparameters.
    """
    dtype = values.dtype if values is not None else (
        rewards.dtype if rewards.is_floating_point() else torch.get_default_dtype())
    b, n = rewards.shape
    on_all = mask.to(dtype) > 0
    r = rewards.to(dtype)
    next_value = torch.zeros(b, dtype=dtype, device=r.device)
    if bootstrap is not None:
        next_value = bootstrap.to(dtype).clone()
    running = torch.zeros_like(next_value)
    g_next = gamma * (1.0 - cut.to(dtype)) if cut is not None else None  # [B, N]
    gl_next = gamma * lam * (1.0 - cut.to(dtype)) if cut is not None else None
    out = torch.zeros(b, n, dtype=dtype, device=r.device)
    for t in range(n - 1, -1, -1):
        on = on_all[:, t]
        g = g_next[:, t] if g_next is not None else gamma
        gl = gl_next[:, t] if gl_next is not None else gamma * lam
        if values is None:
            delta = r[:, t] + g * next_value
        else:
            delta = r[:, t] + g * next_value - values[:, t]
            next_value = torch.where(on, values[:, t], next_value)
        running = torch.where(on, delta + gl * running, running)
        if values is None:
            next_value = torch.where(on, torch.zeros_like(next_value), next_value)
        out[:, t] = running
    # where(), not a product: off-mask entries may hold anything (even NaN values).
    return torch.where(on_all, out, torch.zeros_like(out))


def reverse_discounted_cumsum(
    x: torch.Tensor, mask: torch.Tensor, gamma: float, bootstrap: torch.Tensor | None = None
) -> torch.Tensor:
    """G_t = x_t + gamma * G_{next masked t}, over the masked positions of each row. [B, N] -> [B, N].

    Unmasked positions are skipped (not discounted), so gaps (environment tokens,
    padding, missing turns) cost no discount step. ``bootstrap`` [B] is the value after
    the last masked position (0 when None). 0 off the mask. A thin view of
    :func:`masked_backward_scan`.
    """
    return masked_backward_scan(x, mask, gamma, lam=1.0, values=None, bootstrap=bootstrap)


def turn_bounds(turn_index: torch.Tensor, num_turns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L] turn_index -> (first, last): [B, T] positions of each turn's first and last
    model token, -1 where the episode has no such turn."""
    b, seq_len = turn_index.shape
    pos = torch.arange(seq_len, device=turn_index.device).expand(b, seq_len)
    # Tokens off any turn go to an extra column T that is dropped afterwards.
    idx = torch.where(turn_index >= 0, turn_index, torch.full_like(turn_index, num_turns))
    init_last = torch.full((b, num_turns + 1), -1, dtype=torch.long, device=turn_index.device)
    last = init_last.scatter_reduce(1, idx, pos, reduce="amax", include_self=True)
    init_first = torch.full((b, num_turns + 1), seq_len, dtype=torch.long, device=turn_index.device)
    first = init_first.scatter_reduce(1, idx, pos, reduce="amin", include_self=True)
    first = torch.where(first == seq_len, torch.full_like(first, -1), first)
    return first[:, :num_turns], last[:, :num_turns]
