"""Independent cross-check against TRL's own GRPOTrainer code on random batches.

TRL computes GRPO advantages, the vLLM importance-sampling correction and the loss
inside ``GRPOTrainer._generate_and_score_completions`` and ``GRPOTrainer._compute_loss``.
We run those real methods on a probe object whose constructor is bypassed and whose
model-facing hooks (generation, reward functions, the forward pass) return prepared
tensors, then compare with agentrl's functions composed the way a learner would.

Needs ``pip install --no-deps trl==1.16.0 accelerate datasets pandas pyarrow multiprocess
xxhash tzdata`` (TRL imports accelerate, datasets and pandas at module level).
"""

import types
import warnings
import zlib
from collections import defaultdict

import pytest
import torch

from agentrl.credit import dr_grpo_advantages, grpo_advantages
from agentrl.losses import (
    constant_normalizer,
    kl_k3,
    ppo_clip_loss,
    seq_mean_token_mean,
    seq_mean_token_sum,
    sequence_is_correction,
    sequence_ratio,
    token_is_correction,
    token_mean,
    token_ratio,
)

pytestmark = [pytest.mark.trl, pytest.mark.slow]

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # TRL warns about the vLLM version it finds
    grpo_trainer = pytest.importorskip("trl.trainer.grpo_trainer")


class _Accelerator:
    """Single-process stand-in for accelerate.Accelerator (gathers are identities)."""

    device = torch.device("cpu")
    process_index = 0
    num_processes = 1
    sync_gradients = True

    def gather(self, x):
        return x

    def reduce(self, x, reduction="sum"):
        return x

    def gather_for_metrics(self, x):
        return x

    def unwrap_model(self, model):
        return model


class _Probe(grpo_trainer.GRPOTrainer):
    def __init__(self, **attrs):  # bypass the real constructor: no model, no dataset
        self.__dict__.update(attrs)


def _probe(batch_size: int, num_generations: int, **overrides) -> _Probe:
    attrs = dict(
        accelerator=_Accelerator(),
        model=types.SimpleNamespace(training=True, is_gradient_checkpointing=False),
        args=types.SimpleNamespace(
            per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
            steps_per_generation=1, gradient_accumulation_steps=1, gradient_checkpointing_kwargs=None,
            delta=None, use_bias_correction_kl=False,
        ),
        environment_factories=None, tools=None, environments=[],
        _tokenizer=types.SimpleNamespace(pad_token_id=0), pad_to_multiple_of=None,
        mask_truncated_completions=False, num_iterations=1, use_vllm=False,
        vllm_importance_sampling_correction=False, beta=0.0, ref_model=None,
        num_generations=num_generations, multi_objective_aggregation="sum_then_normalize",
        reward_weights=torch.ones(1), scale_rewards="group", reward_func_names=["r"],
        _metrics=defaultdict(lambda: defaultdict(list)),
        _logs={"prompt": [], "completion": [], "rewards": defaultdict(list), "advantages": [],
               "extra": defaultdict(list), "images": []},
        _pending_extra_logs={}, _pending_metrics={}, log_multimodal=False, _is_vlm=False,
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False, aux_loss_enabled=False,
    )
    attrs.update(overrides)
    return _Probe(**attrs)


def _score(probe: _Probe, rewards: torch.Tensor, lengths: list[int], learner_logp=None, sampler_logp=None) -> dict:
    """Run TRL's _generate_and_score_completions with generation and rewards stubbed out."""
    b = len(lengths)
    sampled = None if sampler_logp is None else [row[:n].tolist() for row, n in zip(sampler_logp, lengths, strict=True)]
    probe._generate = lambda prompts: ([[5, 6]] * b, [[1] * n for n in lengths], None, ["c"] * b, sampled, {}, None, None)
    probe._calculate_rewards = lambda inputs, prompts, completions, ids: rewards[:, None].clone()
    probe._get_per_token_logps_and_entropies = lambda *a, **k: (learner_logp, None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return probe._generate_and_score_completions([{"prompt": "q"}] * b)


def _mask(lengths: list[int]) -> torch.Tensor:
    width = max(lengths)
    return torch.tensor([[1.0] * n + [0.0] * (width - n) for n in lengths])


@pytest.mark.parametrize("num_generations", [1, 2, 4])
def test_grpo_advantages_match_trl(num_generations):
    gen = torch.Generator().manual_seed(num_generations)
    for trial in range(5):
        n_groups = 3
        b = n_groups * num_generations
        # Binary rewards make all-equal groups common (the degenerate case); trial 0 uses floats.
        rewards = torch.rand(b, generator=gen) if trial == 0 else torch.randint(0, 2, (b,), generator=gen).float()
        lengths = torch.randint(1, 6, (b,), generator=gen).tolist()
        group_ids = torch.arange(n_groups).repeat_interleave(num_generations)
        mask = _mask(lengths)
        out = _score(_probe(b, num_generations, scale_rewards="group"), rewards, lengths)
        torch.testing.assert_close(out["completion_mask"].float(), mask)
        # TRL: (r - mean_g) / (std_g + 1e-4) with Bessel's std -> ours with eps = 1e-4
        ours = grpo_advantages(rewards, group_ids, mask, eps=1e-4)
        torch.testing.assert_close(ours, out["advantages"][:, None] * mask)
        out = _score(_probe(b, num_generations, scale_rewards="none"), rewards, lengths)
        torch.testing.assert_close(dr_grpo_advantages(rewards, group_ids, mask), out["advantages"][:, None] * mask)


@pytest.mark.parametrize(
    ("mode", "clip_min", "clip_max"),
    [("token_truncate", None, 2.0), ("token_mask", 0.5, 2.0), ("sequence_truncate", None, 2.0),
     ("sequence_mask", 0.5, 3.0)],
)
def test_vllm_importance_weights_match_trl(mode, clip_min, clip_max):
    gen = torch.Generator().manual_seed(7)
    lengths = [3, 5, 1, 4]
    mask = _mask(lengths)
    learner = -torch.rand(4, 5, generator=gen, dtype=torch.float64) * 2
    sampler = learner + 0.6 * torch.randn(4, 5, generator=gen, dtype=torch.float64)  # large mismatch
    # Push whole sequences out of range too: row 1 ratio ~ e^+2.5, row 3 ~ e^-2 (times the noise).
    sampler[1] -= 0.5
    sampler[3] += 0.5
    probe = _probe(4, 2, use_vllm=True, vllm_importance_sampling_correction=True,
                   vllm_importance_sampling_mode=mode, vllm_importance_sampling_clip_min=clip_min,
                   vllm_importance_sampling_clip_max=clip_max)
    out = _score(probe, torch.tensor([1.0, 0.0, 1.0, 1.0]), lengths, learner_logp=learner, sampler_logp=sampler)
    trl_w = out["importance_sampling_ratio"].expand(4, 5) * mask
    band = None if clip_min is None else (clip_min, clip_max)
    cap = clip_max if band is None else None  # TRL's *_mask modes mask without truncating
    correct = token_is_correction if mode.startswith("token") else sequence_is_correction
    ours = correct(learner, sampler, mask, cap=cap, band=band)
    torch.testing.assert_close(ours.weights, trl_w)
    assert 0.0 < ours.stats["masked_frac"] + ours.stats["truncated_frac"]  # the case exercises the clipping


CASES = [
    # (TRL loss_type, importance_sampling_level, our aggregation)
    pytest.param("grpo", "token", seq_mean_token_mean, id="grpo-token"),
    pytest.param("bnpo", "token", token_mean, id="bnpo-token"),
    pytest.param("dapo", "token", lambda x, m: token_mean(x, m, num_tokens=m.sum()), id="dapo-token"),
    pytest.param("dr_grpo", "token", lambda x, m: constant_normalizer(x, m, max_tokens=8), id="dr_grpo-token"),
    pytest.param("grpo", "sequence", seq_mean_token_mean, id="gspo-sequence"),
    pytest.param("luspo", "sequence", seq_mean_token_sum, id="luspo-sequence"),
]


@pytest.mark.parametrize(("loss_type", "level", "agg"), CASES)
@pytest.mark.parametrize("beta", [0.0, 0.05], ids=["no-kl", "k3-kl"])
@pytest.mark.parametrize("with_is", [False, True], ids=["no-is", "vllm-is"])
def test_grpo_loss_and_gradient_match_trl(loss_type, level, agg, beta, with_is):
    gen = torch.Generator().manual_seed(zlib.crc32(f"{loss_type}{level}{beta}{with_is}".encode()))
    b, width = 6, 7
    lengths = torch.randint(1, width + 1, (b,), generator=gen).tolist()
    mask = _mask(lengths)[:, :width]
    mask = torch.nn.functional.pad(mask, (0, width - mask.shape[1]))
    rewards = torch.randint(0, 3, (b,), generator=gen).double()
    adv = grpo_advantages(rewards, torch.arange(3).repeat_interleave(2), mask, eps=1e-4)[:, :1]  # [B, 1]
    old = -torch.rand(b, width, generator=gen, dtype=torch.float64) * 3
    ref = old + 0.2 * torch.randn(b, width, generator=gen, dtype=torch.float64)
    # ratios spread over [0.6, 1.6] so both clip sides (0.2 low, 0.28 high) are hit
    base = old + torch.empty(b, width, dtype=torch.float64).uniform_(-0.5, 0.5, generator=gen)
    is_w = torch.exp(0.3 * torch.randn(b, width, generator=gen, dtype=torch.float64)).clamp(max=2.0)

    logp_trl = base.clone().requires_grad_(True)
    probe = _probe(b, 2, loss_type=loss_type, importance_sampling_level=level, epsilon_low=0.2,
                   epsilon_high=0.28, beta=beta, max_completion_length=8, use_vllm=with_is,
                   vllm_importance_sampling_correction=with_is)
    probe._get_per_token_logps_and_entropies = lambda *a, **k: (logp_trl, torch.zeros_like(logp_trl), None)
    inputs = {
        "prompt_ids": torch.ones(b, 2, dtype=torch.long), "prompt_mask": torch.ones(b, 2, dtype=torch.long),
        "completion_ids": torch.ones(b, width, dtype=torch.long), "completion_mask": mask.long(),
        "advantages": adv[:, 0], "num_items_in_batch": mask.sum(), "old_per_token_logps": old,
        "ref_per_token_logps": ref, "importance_sampling_ratio": is_w,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trl_loss = probe._compute_loss(None, inputs)
    trl_loss.backward()

    logp = base.clone().requires_grad_(True)
    ratio = token_ratio(logp, old) if level == "token" else sequence_ratio(logp, old, mask)
    per_token = ppo_clip_loss(ratio, adv.expand(b, width), clip_low=0.2, clip_high=0.28).loss
    if with_is:
        per_token = per_token * is_w
    if beta:
        per_token = per_token + beta * kl_k3(logp, ref)
    ours = agg(per_token, mask)
    ours.backward()

    torch.testing.assert_close(ours, trl_loss)
    torch.testing.assert_close(logp.grad, logp_trl.grad)
