"""Weight sync helpers shared by the vLLM backends (in-process engine and HTTP server).

Both push new weights the same way: the learner's module or state dict becomes a dict of
tensors under the checkpoint's names (a tied ``lm_head.weight`` included, names and shapes
checked against the checkpoint folder), written as one safetensors file into a scratch
folder that vLLM's workers read with ``reload_weights(weights_path=...)``; then the
engine's logprobs on a fixed probe text are compared with a forward pass of the weights.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentrl.errors import ConfigError, PolicyError

__all__ = ["PROBE_TEXT", "WeightFiles", "default_atol"]

#: A fixed text whose prompt logprobs are compared after a weight sync.
PROBE_TEXT = "Probe 17 + 25 = 42. <tool_call> The weather is fine; print(x) </tool_call>"


def default_atol(fp32: bool) -> float:
    """Default allowed max abs logprob difference of a sync check: 1e-3 in fp32, 5e-2 otherwise."""
    return 1e-3 if fp32 else 5e-2


class WeightFiles:
    """Turns new weights into a safetensors folder vLLM can ``reload_weights`` from.

    Args:
        model_path: The checkpoint folder (or hub id) the engine was started from.
        hf_config: Its ``transformers`` config.
        sync_dir: Scratch folder for the file; ``None`` makes one under ``/dev/shm``
            (memory, no disk writes) on first use. A folder made here is removed by
            :meth:`cleanup`; a given one is left alone.
    """

    def __init__(
        self, model_path: str, hf_config: Any, sync_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.model_path = model_path
        self.hf_config = hf_config
        text_config = hf_config.get_text_config()
        self.tied = bool(
            getattr(text_config, "tie_word_embeddings", False)
            or getattr(hf_config, "tie_word_embeddings", False)
        )
        self._given_dir = Path(sync_dir) if sync_dir is not None else None
        self._made_dir: Path | None = None
        self._shapes: dict[str, tuple[int, ...]] | None = None

    @property
    def folder(self) -> Path:
        """The folder holding ``model.safetensors`` (made on first use)."""
        if self._given_dir is not None:
            self._given_dir.mkdir(parents=True, exist_ok=True)
            return self._given_dir
        if self._made_dir is None:
            base = "/dev/shm" if os.path.isdir("/dev/shm") else None
            self._made_dir = Path(tempfile.mkdtemp(prefix="agentrl-weights-", dir=base))
        return self._made_dir

    def split(self, weights: Any) -> tuple[Any, dict[str, Any]]:
        """``(module or None, checkpoint-named tensors)`` of a module or a state dict.

        Raises:
            ConfigError: not a module or mapping; names or shapes unlike the checkpoint's.
        """
        import torch

        module = weights if isinstance(weights, torch.nn.Module) else None
        state = module.state_dict() if module is not None else weights
        if not isinstance(state, Mapping):
            raise ConfigError(
                f"weights must be a torch.nn.Module or a state dict, got {type(weights).__name__}"
            )
        return module, self.checkpoint_tensors(state)

    def write(self, tensors: Mapping[str, Any]) -> Path:
        """Write ``tensors`` as ``model.safetensors`` in :attr:`folder`; returns the folder."""
        from safetensors.torch import save_file

        folder = self.folder
        tmp = folder / "model.safetensors.tmp"
        # safetensors refuses tensors sharing memory (tied weights): store copies.
        save_file(
            {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(tmp)
        )
        os.replace(tmp, folder / "model.safetensors")  # readers never see half a file
        return folder

    def checkpoint_tensors(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The state dict under checkpoint names, tied ``lm_head.weight`` included."""
        tensors = dict(state)
        # vLLM keeps a tied lm_head as its own parameter: leaving it out silently keeps
        # the old output layer, so always send it.
        if (
            self.tied
            and "lm_head.weight" not in tensors
            and "model.embed_tokens.weight" in tensors
        ):
            tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
        shapes = self.checkpoint_shapes()
        if shapes is not None:
            expected = set(shapes) | ({"lm_head.weight"} if self.tied else set())
            missing, extra = sorted(expected - tensors.keys()), sorted(tensors.keys() - expected)
            if missing or extra:
                raise ConfigError(
                    f"state dict does not match the checkpoint {self.model_path}: missing "
                    f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                    f"{extra[:5]}{'...' if len(extra) > 5 else ''} (pass the transformers model "
                    "or its unwrapped state_dict())"
                )
            # A wrong shape would fail inside the engine's reload and leave it broken.
            wrong = [k for k, shape in shapes.items() if tuple(tensors[k].shape) != shape]
            if wrong:
                k = wrong[0]
                raise ConfigError(
                    f"{len(wrong)} tensor(s) have the wrong shape, e.g. {k}: "
                    f"{tuple(tensors[k].shape)} != checkpoint {shapes[k]}"
                )
        return tensors

    def checkpoint_shapes(self) -> dict[str, tuple[int, ...]] | None:
        """Name -> shape of every tensor in the checkpoint folder (``None``: not a local folder)."""
        if self._shapes is None:
            files = sorted(Path(self.model_path).glob("*.safetensors"))
            if not files:
                return None
            from safetensors import safe_open

            shapes: dict[str, tuple[int, ...]] = {}
            for f in files:
                with safe_open(str(f), framework="pt") as handle:
                    for name in handle.keys():
                        shapes[name] = tuple(handle.get_slice(name).get_shape())
            self._shapes = shapes
        return self._shapes

    def reference_logprobs(self, module: Any, tensors: Mapping[str, Any], ids: list[int]) -> Any:
        """``log p(ids[t] | ids[:t])`` for t >= 1 under the new weights (float64 CPU tensor).

        Uses ``module`` when given; for a state dict, a CPU float32 copy of the model built
        from the checkpoint config (costly for big models).
        """
        import torch

        from agentrl.models.logprobs import token_logprobs

        if module is None:
            from transformers import AutoModelForCausalLM

            module = AutoModelForCausalLM.from_config(self.hf_config, dtype=torch.float32)
            module.load_state_dict(
                {k: v.detach().to("cpu", torch.float32) for k, v in tensors.items()}, strict=False
            )
        device = next(module.parameters()).device
        with torch.no_grad():
            ref = token_logprobs(module, torch.tensor([ids], device=device))[0, 1:]
        return ref.double().cpu()

    @staticmethod
    def check(diff: float, tol: float, where: str) -> float:
        """Raise :class:`PolicyError` when a sync check's ``diff`` exceeds ``tol``."""
        if not diff <= tol:
            raise PolicyError(
                f"weight sync check failed: {where} logprobs differ from the new weights by "
                f"{diff:.3g} (> {tol:g}); it may still hold the old weights"
            )
        return diff

    def cleanup(self) -> None:
        """Remove the scratch folder made here (a given ``sync_dir`` only loses the file)."""
        if self._made_dir is not None:
            shutil.rmtree(self._made_dir, ignore_errors=True)
            self._made_dir = None
        elif self._given_dir is not None:
            for name in ("model.safetensors", "model.safetensors.tmp"):
                (self._given_dir / name).unlink(missing_ok=True)
