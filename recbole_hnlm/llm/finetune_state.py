"""Resume state of the contrastive fine-tuning (``finetune.py``; paper §4.3).

An interrupted fine-tuning goes on from its last saved step when the same settings fine-tune the same adapter again
(the same weights, bit for bit on the CPU, as an uninterrupted one), and starts afresh when they changed. The state is
one safetensors file in ``<adapter>.work/``: the trainable weights (LoRA, soft-token MLPs and norms, ``MLP_t``), AdamW's
moments and the random streams of LoRA dropout and of the explicit negatives, with a JSON header holding the adapter
identity, the next batch and the losses so far. The batch order needs no state: it is drawn from ``hnlm_seed`` before
the first step. The folder goes once the adapter is written.
"""
import json
import logging
import os
import shutil
from typing import Dict, List, NamedTuple, Optional

import torch

from recbole_hnlm.files import atomic_path

__all__ = ["SAVE_EVERY_SECONDS", "FineTuneProgress", "STATE_FILE", "save_finetune_state", "load_finetune_state",
           "discard_finetune_state"]

#: Longest stretch of fine-tuning an interruption loses: the resume state is saved at most this often.
SAVE_EVERY_SECONDS = 300.0

logger = logging.getLogger(__name__)

STATE_FILE = "finetune_state.safetensors"
_FORMAT = "hnlm-finetune-state/1"


class FineTuneProgress(NamedTuple):
    """Where a resumed fine-tuning goes on: the index of its next batch and the losses of the steps before it."""
    next_batch: int
    losses: List[float]


def _trainable(encoder) -> Dict[str, torch.nn.Parameter]:
    return {name: p for name, p in encoder.named_parameters() if p.requires_grad}


def save_finetune_state(work_dir: str, identity: Dict, encoder, optimizer: torch.optim.Optimizer,
                        draw: torch.Generator, progress: FineTuneProgress, num_batches: int) -> None:
    """Atomically write the state after ``progress.next_batch`` of ``num_batches`` batches."""
    from safetensors.torch import save_file

    params = _trainable(encoder)
    tensors = {f"param.{name}": p.detach().cpu().contiguous() for name, p in params.items()}
    position = {id(p): name for name, p in params.items()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():  # AdamW: step, exp_avg, exp_avg_sq
                tensors[f"optim.{position[id(p)]}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.draw"] = draw.get_state()
    device = encoder.device
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    header = dict(format=_FORMAT, identity=identity, next_batch=progress.next_batch, losses=progress.losses,
                  num_batches=num_batches)
    os.makedirs(work_dir, exist_ok=True)
    path = os.path.join(work_dir, STATE_FILE)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"state": json.dumps(header, sort_keys=True)})


def load_finetune_state(work_dir: str, identity: Dict, encoder, optimizer: torch.optim.Optimizer,
                        draw: torch.Generator, num_batches: int) -> Optional[FineTuneProgress]:
    """Put a saved state back into ``encoder``, ``optimizer``, ``draw`` and torch's generator; the progress to go on
    from, or None (nothing saved, or saved by a fine-tuning of other settings or data: the folder is then removed)."""
    from safetensors import SafetensorError, safe_open

    path = os.path.join(work_dir, STATE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with safe_open(path, framework="pt") as handle:
            header = json.loads((handle.metadata() or {}).get("state", "null"))
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:  # a state cut by a full disk, or edited
        return _start_afresh(work_dir, f"its state {path} cannot be read ({type(error).__name__}: {error})")
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        return _start_afresh(work_dir, f"{path} is not a fine-tuning state of this version")
    wanted, saved = json.loads(json.dumps(identity)), header.get("identity")  # tuples read back as lists
    saved = saved if isinstance(saved, dict) else {}  # none (or not a mapping): every key differs
    changed = sorted(key for key in set(wanted) | set(saved) if wanted.get(key) != saved.get(key))
    if changed or header.get("num_batches") != num_batches:
        return _start_afresh(work_dir, f"it had other settings or data ({', '.join(changed) or 'num_batches'})")
    params = _trainable(encoder)
    missing = sorted(set(params) - {key[len("param."):] for key in tensors if key.startswith("param.")})
    if missing:
        return _start_afresh(work_dir, f"{path} lacks trainable weights ({missing[0]})")
    unlike = next((name for name, p in params.items() if tensors[f"param.{name}"].shape != p.shape), None)
    if unlike is not None:  # the same settings, another model behind the generator's name
        return _start_afresh(work_dir, f"its weight {unlike} has shape {tuple(tensors['param.' + unlike].shape)}, "
                                       f"this model's {tuple(params[unlike].shape)}")
    if not _is_position(header.get("next_batch"), header.get("losses"), num_batches) or \
            not {"rng.torch", "rng.draw"} <= set(tensors):
        return _start_afresh(work_dir, f"{path} lacks its position or random streams")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[f"param.{name}"])
    names = {id(p): name for name, p in params.items()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            prefix = f"optim.{names[id(p)]}."
            state = {key[len(prefix):]: value for key, value in tensors.items()
                     if key.startswith(prefix) and "." not in key[len(prefix):]}
            if state:
                optimizer.state[p] = {key: value if key == "step" else value.to(p.device)
                                      for key, value in state.items()}
    torch.set_rng_state(tensors["rng.torch"])
    draw.set_state(tensors["rng.draw"])
    if "rng.cuda" in tensors and encoder.device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], encoder.device)
    progress = FineTuneProgress(int(header["next_batch"]), [float(v) for v in header["losses"]])
    logger.info("fine-tuning: resuming from %s at batch %d/%d", path, progress.next_batch + 1, num_batches)
    return progress


def _is_position(next_batch, losses, num_batches: int) -> bool:
    """A batch index in ``[0, num_batches]`` and a list of losses (numbers; an edited state may hold anything)."""
    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    return (isinstance(next_batch, int) and not isinstance(next_batch, bool) and 0 <= next_batch <= num_batches
            and isinstance(losses, list) and all(number(v) for v in losses))


def _start_afresh(work_dir: str, why: str) -> None:
    logger.warning("fine-tuning: the interrupted fine-tuning in %s is not continued: %s; fine-tuning afresh",
                   work_dir, why)
    discard_finetune_state(work_dir)
    return None


def discard_finetune_state(work_dir: str) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)
