"""Trainers with safetensors checkpoints and per-epoch sampler hooks.

RecBole 1.2.1 pickles its ``Config`` into ``torch.save`` checkpoints and reloads them with ``torch.load``, which torch
>= 2.6 refuses (``weights_only``). :class:`SafeCheckpointMixin` stores checkpoints with :mod:`recbole_hnlm.checkpoint`
instead (no pickle) and works on top of any RecBole trainer class (:func:`make_safe_trainer`).
"""
import os
import warnings

from recbole.trainer import Trainer
from recbole.utils import get_local_time, set_color

from recbole_hnlm.checkpoint import load_checkpoint, save_checkpoint


class SafeCheckpointMixin:
    """Checkpoint save/load without pickle, and an ``on_epoch_start`` hook for models that need one."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.saved_model_file = os.path.join(self.checkpoint_dir, f"{config['model']}-{get_local_time()}.safetensors")

    def _trainer_state(self, epoch):
        return {
            "model": self.config["model"],
            "sampler": self.config["sampler"],
            "dataset": self.config["dataset"],
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
        }

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        save_checkpoint(saved_model_file, self.model, self.optimizer, self._trainer_state(epoch))
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def resume_checkpoint(self, resume_file):
        state = load_checkpoint(str(resume_file), self.model, self.optimizer, device=self.device)
        self.saved_model_file = str(resume_file)
        self.start_epoch = state["epoch"] + 1
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            checkpoint_file = model_file or self.saved_model_file
            load_checkpoint(checkpoint_file, self.model, device=self.device)
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        hook = getattr(self.model, "on_epoch_start", None)
        if hook is not None:
            hook(epoch_idx)
        with warnings.catch_warnings():  # RecBole builds torch.cuda.amp.GradScaler every epoch (deprecated alias)
            warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.GradScaler", category=FutureWarning)
            return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)


def make_safe_trainer(trainer_class):
    """Return ``trainer_class`` with :class:`SafeCheckpointMixin` in front of it."""
    if issubclass(trainer_class, SafeCheckpointMixin):
        return trainer_class
    return type(f"Safe{trainer_class.__name__}", (SafeCheckpointMixin, trainer_class), {})


HNLMTrainer = make_safe_trainer(Trainer)
