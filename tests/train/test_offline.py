"""Offline preference training: pairs from groups, DPO/IPO/KTO on a toy preference set
(loss falls, the chosen/rejected margin grows), resume, and the ``agentrl train --algo`` CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from agentrl.errors import ConfigError
from agentrl.train.config import load_config
from agentrl.train.offline import preference_pairs, run_offline
from agentrl.trajectory import Trajectory, Turn, save_jsonl


def _traj(tok: Any, group: str, prompt: str, reply: str, reward: float, end: str = "terminated") -> Trajectory:
    p = tok.encode(prompt, add_special_tokens=False)
    r = tok.encode(reply, add_special_tokens=False)
    ids = p + r
    return Trajectory(env_id="toy", token_ids=ids, loss_mask=[0] * len(p) + [1] * len(r),
                      logprobs=[0.0] * len(ids), prompt_len=len(p),
                      turns=[Turn(len(p), len(ids), reward)], group_id=group, end_reason=end)


@pytest.fixture(scope="module")
def toy_file(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Groups of 4 answers to one question: 'yes' answers are rewarded, 'no' answers not."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    trajs = []
    for g in range(6):
        q = f"Question {g}: is the sky blue?"
        trajs += [_traj(tok, f"g{g}", q, " yes it is", 1.0), _traj(tok, f"g{g}", q, " yes", 0.7),
                  _traj(tok, f"g{g}", q, " no it is not", 0.0), _traj(tok, f"g{g}", q, " broken", 0.0, "error")]
    path = tmp_path_factory.mktemp("prefs") / "toy.jsonl"
    save_jsonl(trajs, path)
    return path


def _cfg(model: Path, data: Path, run_dir: Path, **extra: str) -> Any:
    o = {"model.path": str(model), "offline.data": str(data), "trainer.steps": "12", "trainer.lr": "3e-3",
         "trainer.min_lr_ratio": "1.0", "trainer.micro_batch_size": "8", "offline.pairs_per_step": "4",
         "offline.beta": "0.5", "checkpoint.every": "6", "logging.tensorboard": "false",
         "logging.progress": "false", "logging.run_dir": str(run_dir), **extra}
    return load_config(overrides=[f"{k}={v}" for k, v in o.items()])


def test_pairs_best_worst_and_threshold(toy_file: Path) -> None:
    from agentrl.trajectory import load_jsonl

    trajs = load_jsonl(toy_file)
    bw = preference_pairs(trajs, "best_worst")
    assert len(bw.pairs) == 6  # one per group; the errored episode never takes part
    for c, r in bw.pairs:
        assert bw.trajectories[c].total_reward == 1.0 and bw.trajectories[r].total_reward == 0.0
    th = preference_pairs(trajs, "threshold", threshold=0.5)
    assert len(th.pairs) == 12  # two good x one bad per group
    assert sum(th.desirable) == 12 and len(th.trajectories) == 18
    assert all(t.end_reason != "error" for t in th.trajectories)
    flat = [_flat(t) for t in trajs[:3]]
    assert not preference_pairs([_flat(t) for t in flat]).pairs  # equal rewards: no preference


def _flat(t: Trajectory) -> Trajectory:
    return Trajectory.from_dict({**t.to_dict(), "turns": [{**t.to_dict()["turns"][0], "reward": 0.5}],
                                 "group_id": "same"})


@pytest.mark.parametrize("loss", ["dpo", "ipo", "kto"])
def test_preference_loss_falls_and_margin_grows(loss: str, tiny_model_path: Path, toy_file: Path,
                                                tmp_path: Path) -> None:
    result = run_offline(_cfg(tiny_model_path, toy_file, tmp_path / "run", **{"offline.loss": loss}))
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(1, 13))
    first = recs[0]
    assert abs(first["pref/margin"]) < 1e-4  # step 1: the policy is the reference
    last3 = recs[-3:]
    assert sum(r["loss/preference"] for r in last3) / 3 < first["loss/preference"] - 0.05, [
        r["loss/preference"] for r in recs]
    assert min(r["pref/margin"] for r in last3) > 0.5, [r["pref/margin"] for r in recs]
    assert all(r["pref/accuracy"] == 1.0 for r in last3)
    # the chosen answer became likelier than the rejected one, relative to the reference
    assert last3[-1]["pref/chosen_reward"] > last3[-1]["pref/rejected_reward"]
    assert result.checkpoint is not None and (result.checkpoint / "model.safetensors").is_file()


def test_offline_resume_equals_uninterrupted_with_lora(tiny_model_path: Path, toy_file: Path,
                                                      tmp_path: Path) -> None:
    from safetensors.torch import load_file

    extra = {"lora.r": "4", "trainer.steps": "8", "checkpoint.every": "4", "trainer.lr": "1e-2"}
    full = run_offline(_cfg(tiny_model_path, toy_file, tmp_path / "full", **extra))
    cfg = _cfg(tiny_model_path, toy_file, tmp_path / "part", **extra)
    assert run_offline(cfg, stop_after=6).checkpoint.name == "step_4"
    resumed = run_offline(cfg, resume=True)
    a = load_file(str(full.checkpoint / "adapter_model.safetensors"))
    b = load_file(str(resumed.checkpoint / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_cli_algo_data(tiny_model_path: Path, toy_file: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    from agentrl.cli import main

    run = tmp_path / "cli"
    rc = main(["train", "--algo", "ipo", "--data", str(toy_file), f"model.path={tiny_model_path}",
               "trainer.steps=2", f"logging.run_dir={run}", "logging.progress=false",
               "logging.tensorboard=false"])
    assert rc == 0
    assert "loss: ipo" in (run / "config.yaml").read_text()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    with pytest.raises(ConfigError, match="no preference pair"):
        run_offline(_cfg(tiny_model_path, toy_file, tmp_path / "none", **{"offline.pairs": "threshold",
                                                                             "offline.threshold": "5"}))
