"""Train the MixGCF teacher of HNLMRec's fine-tuned variant when its file is missing (paper §4.2).

The fine-tuned variant needs pre-trained CF embeddings and MixGCF hard negatives (``teacher.py``). Inside a run
(``--sampler=HNLMRec --hnlm_variant=finetuned``) the teacher is trained here on the run's own training split:
backbone ``hnlm_teacher_model`` with the MixGCF sampler, for a fixed ``hnlm_teacher_epochs`` and no validation
data (so no split other than training is ever seen), then exported with :func:`export_teacher`. The RNG state is
restored afterwards (Python, NumPy, torch and the dataloader's shuffling generator), so the HNLMRec run itself is the
same whether the teacher was trained now or found on disk.

Training writes its resume state after every epoch to ``<teacher file>.work/``: an interrupted teacher goes on from
its last finished epoch when the same settings train it again (the same weights, bit for bit on the CPU, as an
uninterrupted one), and starts afresh when they changed; so does an interrupted ``teacher --overwrite``, whose old
teacher file stays in use until the new one is written. The folder goes once the teacher file is written.
"""
import functools
import glob
import logging
import os
import random
import shutil
from typing import Optional

import numpy as np
import torch

from recbole_hnlm.files import check_writable, discard_stale_work, exclusive_lock, lock_file, work_folder
from recbole_hnlm.rng_state import torch_streams_forked
from .config import LLMConfig
from .pipeline import llm_threads
from .teacher import check_replaceable_teacher, export_teacher, training_settings
from .throughput import rough_duration

__all__ = ["ensure_teacher", "train_teacher", "teacher_config", "teacher_settings"]

logger = logging.getLogger(__name__)

# Keys of the run that must not leak into the teacher's config: its own model/sampler choice, the run's
# training length and schedule (the teacher has hnlm_teacher_epochs, MixGCF from the start) and the run's own weights
# files.
_RUN_ONLY_KEYS = ("model", "sampler", "epochs", "stopping_step", "checkpoint_dir", "init_from", "resume_from",
                  "eval_only", "negative_warmup_epochs")
#: Options a teacher trained without validation data never reads (evaluation, early stopping; ``gpu_id``: the
#: ``device`` option is compared): a resume state differing in them only is taken.
_NOT_TEACHER = frozenset({"topk", "metrics", "valid_metric", "valid_metric_bigger", "eval_step", "stopping_step",
                          "metric_decimal_place", "gpu_id"})
#: Options of the teacher's Config that change what it learns: recorded in the teacher file, compared on reuse. Not the
#: seed: a grid over training seeds on one split shares its teacher by design (the file's ``seed`` records it).
_TRAINING_KEYS = ("learning_rate", "reg_weight", "embedding_size", "n_layers", "train_batch_size",
                  "mixgcf_candidates", "layers_dtype")
#: The run's backbone hyper-parameters: a teacher of another backbone (an NGCF run's LightGCN teacher) takes its own
#: model's defaults instead (NGCF's ``--reg_weight=1e-5`` trained the LightGCN teacher with it, and a run that typed a
#: backbone default got another teacher than one that did not).
_BACKBONE_KEYS = ("learning_rate", "reg_weight", "embedding_size", "n_layers", "train_batch_size")


def teacher_config(config, model: str, epochs: int, work_dir: Optional[str] = None):
    """The teacher's plugin Config: the run's external settings (dataset, split, seed, device...), the teacher's
    backbone and the MixGCF sampler with its yaml defaults. The run's backbone hyper-parameters (:data:`_BACKBONE_KEYS`)
    are the teacher's only when it is the run's backbone. The command line is not re-read. ``work_dir``: where its
    trainer writes its per-epoch resume state."""
    from recbole_hnlm.config import Config

    dropped = _RUN_ONLY_KEYS + (() if model == config["model"] else _BACKBONE_KEYS)
    external = {k: v for k, v in config.external_config_dict.items()
                if k not in dropped and not k.startswith("hnlm_")}
    external.update(sampler="MixGCF", epochs=int(epochs), show_progress=config["show_progress"])
    if work_dir is not None:
        external.update(checkpoint_dir=work_dir, save_resume_state=True)
    return Config(model=model, dataset=config["dataset"], config_dict=external, command_line=False)


def ensure_teacher(config, train_data, path: str, overwrite: bool = False) -> str:
    """The teacher file at ``path``: reused when it exists (the fine-tuned adapter and store are keyed by its hash, so
    a new teacher makes them be built again), else trained by :func:`train_teacher`. Returns ``path``."""
    if os.path.isdir(path) or overwrite:  # before the training, which could not be written there
        check_replaceable_teacher(path)
    if os.path.exists(path):
        # a run stopped between writing the teacher and removing its resume state: with --overwrite too, that state
        # is the file's own training, not one to resume (an interrupted --overwrite training's is newer and stays)
        discard_stale_work(path)
    if os.path.exists(path) and not overwrite:
        _warn_if_trained_otherwise(config, path)
        logger.info("HNLMRec teacher: %s exists and is reused if it was trained on this run's training split (checked "
                    "next; python -m recbole_hnlm.llm teacher --overwrite trains it again; a new teacher makes the "
                    "fine-tuned adapter and store be built again)", path)
        return path
    return train_teacher(config, train_data, path, fresh=overwrite)


def teacher_settings(t_config, model: str, epochs: int) -> dict:
    """What a teacher trained with ``t_config`` learns from, as the teacher file records it (``training``)."""
    return dict(hnlm_teacher_model=model, hnlm_teacher_epochs=int(epochs), **{k: t_config[k] for k in _TRAINING_KEYS})


def _teacher_choice(config, model: Optional[str] = None, epochs: Optional[int] = None):
    """The teacher's backbone (its class name, as ``config["model"]`` spells it: ``lightgcn`` is ``LightGCN``) and
    epochs: the arguments, else ``hnlm_teacher_model`` / ``hnlm_teacher_epochs``."""
    from recbole_hnlm.utils import get_model

    return (get_model(model or config["hnlm_teacher_model"] or "LightGCN").__name__,
            int(epochs if epochs is not None else config["hnlm_teacher_epochs"] or 30))


def _warn_if_trained_otherwise(config, path: str) -> None:
    """A reused teacher file keeps what it was trained with: say which of those settings this run would change.
    Files exported without the record (``export_teacher`` after the user's own run) are not compared."""
    recorded = training_settings(path)
    if recorded is None:
        return
    model, epochs = _teacher_choice(config)
    wanted = teacher_settings(teacher_config(config, model, epochs), model, epochs)
    changed = [f"{key}: {recorded.get(key)!r} -> {value!r}" for key, value in wanted.items()
               if recorded.get(key) != value]
    if changed:
        logger.warning("HNLMRec teacher: %s was trained with other settings than this run's (file -> run: %s); it is "
                       "reused as it is. `python -m recbole_hnlm.llm teacher --overwrite` with the run's settings "
                       "trains it again (or move the file away)", path, "; ".join(changed))


def train_teacher(config, train_data, path: str, model: Optional[str] = None, epochs: Optional[int] = None,
                  fresh: bool = False) -> str:
    """Train ``model`` + MixGCF on ``train_data`` and write the teacher file to ``path``. Returns ``path``.

    Args:
        config: the HNLMRec run's Config (read for ``hnlm_teacher_model`` / ``hnlm_teacher_epochs``, the dataset
            settings and the seed).
        train_data: the run's training dataloader (the same split the HNLMRec model trains on).
        path: output teacher file (written atomically).
        fresh: train a new teacher even where a teacher file exists (``--overwrite``): an interrupted training of
            the same settings still goes on from its last epoch (so an interrupted ``--overwrite`` resumes when run
            again; remove the ``.work`` folder to start from the first epoch). Otherwise a teacher file that another
            run wrote since the caller looked for it is taken as it is.

    It trains with ``hnlm_threads`` torch threads, as the rest of the LLM stage (:func:`~.pipeline.llm_threads`).
    """
    from recbole_hnlm.utils import get_model, get_trainer

    model, epochs = _teacher_choice(config, model, epochs)
    check_writable(path, "hnlm_teacher_path")
    loader_generator = getattr(train_data, "generator", None)  # RecBole's shuffling generator
    states = (random.getstate(), np.random.get_state(),
              loader_generator.get_state() if loader_generator is not None else None)
    device = config["device"] if "device" in config and config["device"] is not None else "cpu"
    work = work_folder(path)
    try:  # torch's streams: the CPU's, and the GPU's the teacher trains on, go on as before for the caller
        with torch_streams_forked(device), \
                exclusive_lock(lock_file(work), f"the teacher {path} (the run that holds it trains it)"), \
                llm_threads(LLMConfig.from_config(config)):
            if os.path.exists(path) and not fresh:  # written by a run that held the lock before this one
                logger.info("HNLMRec teacher: %s was written meanwhile and is reused", path)
                return path
            t_config = teacher_config(config, model, epochs, work)
            torch.manual_seed(t_config["seed"])
            dataset = train_data._dataset
            net = get_model(model)(t_config, dataset).to(t_config["device"])
            trainer = get_trainer(t_config["MODEL_TYPE"], model)(t_config, net)
            trainer.saves_best_checkpoints = False  # only the resume state is read back
            losses = {}  # epoch -> total loss, of the epochs this process trains
            trainer.on_epoch_trained = functools.partial(_say_teacher_epoch, epochs=epochs, losses=losses)
            resume_file = _resume_state(work, t_config, net)
            if resume_file is not None:
                trainer.resume_checkpoint(resume_file)
            if resume_file is not None and trainer.start_epoch >= epochs:
                trainer.close()
                logger.info("HNLMRec teacher: its training had finished (%s); exporting it -> %s", resume_file, path)
            else:
                logger.info("HNLMRec teacher: %s %s + MixGCF for %d epochs -> %s%s",
                            f"resuming at epoch {trainer.start_epoch}" if resume_file else "training", model,
                            epochs, path, f" (remove {work} to train from the first epoch)" if resume_file else "")
                trainer.fit(train_data, valid_data=None, saved=True, show_progress=t_config["show_progress"])
                _warn_if_loss_stood_still(losses, t_config)
            net.eval()
            export_teacher(net, dataset, dataset, path, seed=t_config["seed"],
                           training=teacher_settings(t_config, model, epochs))
            shutil.rmtree(work, ignore_errors=True)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        if loader_generator is not None:
            loader_generator.set_state(states[2])
    return path


#: A teacher whose loss fell by less than this share over its epochs is announced as barely trained.
STILL_LOSS_SHARE = 0.01


def _warn_if_loss_stood_still(losses: dict, t_config) -> None:
    """Say when the teacher's loss barely moved (a small dataset with the default batch and learning rate: 90 steps
    took a helper's teacher from 1.3863 to 1.3842): its embeddings and MixGCF negatives, which the fine-tuned LLM
    learns to predict, are then close to their random start. A loss that rose by more than the share gets its own
    warning: a learning rate too large for the batch, not too few steps."""
    if len(losses) < 2:
        return
    first, last = losses[min(losses)], losses[max(losses)]
    again = (f"train it again with `python -m recbole_hnlm.llm teacher --overwrite --dataset={t_config['dataset']}` "
             "and the run's other options (--data_path, --config_files ...)")
    if first > 0 and (last - first) / first > STILL_LOSS_SHARE:  # within the share either way: stood still
        logger.warning("HNLMRec teacher: its loss rose from %.4f to %.4f over %d epochs, so its embeddings and MixGCF "
                       "negatives, which the fine-tuned LLM learns to predict, are not trained: give it a smaller "
                       "learning_rate than its %s (or a larger train_batch_size than its %s) and %s", first, last,
                       len(losses), t_config["learning_rate"], t_config["train_batch_size"], again)
    elif first > 0 and (first - last) / first < STILL_LOSS_SHARE:
        logger.warning("HNLMRec teacher: its loss moved from %.4f to %.4f over %d epochs (less than %d%%), so its "
                       "embeddings and MixGCF negatives, which the fine-tuned LLM learns to predict, are close to "
                       "their random start: give it more steps (hnlm_teacher_epochs, or a smaller train_batch_size "
                       "or a larger learning_rate than its %s and %s) and %s", first, last, len(losses),
                       round(STILL_LOSS_SHARE * 100), t_config["train_batch_size"], t_config["learning_rate"], again)


def _say_teacher_epoch(epoch: int, seconds: float, loss=None, epochs: int = 0,
                       losses: Optional[dict] = None) -> None:
    """One line per teacher epoch: its bars and loss lines read like the run's own ("Train 0:", "epoch 0
    training"), and at Yelp2018's size its 30 epochs take hours on a CPU. ``losses`` collects each epoch's total."""
    if losses is not None and loss is not None:
        losses[epoch] = float(sum(loss) if isinstance(loss, tuple) else loss)
    left = epochs - epoch - 1
    logger.info("HNLMRec teacher: epoch %d of %d trained in %.1f s%s", epoch + 1, epochs, seconds,
                f"; {rough_duration(left * seconds)} left at this pace" if left else "")


def _resume_state(work: str, t_config, net) -> Optional[str]:
    """The resume state an interrupted training of this very teacher left in ``work`` (same options, ids and
    training split), else None; a state of other settings is removed (with the folder), with a warning."""
    from recbole_hnlm.checkpoint import read_trainer_state
    from recbole_hnlm.resume import changed_options
    from recbole_hnlm.warm_start import data_digests

    found = sorted(glob.glob(os.path.join(work, "*.resume.safetensors")), key=os.path.getmtime)
    if not found:
        return None
    latest = found[-1]
    try:
        state = read_trainer_state(latest)
        changed = [line for line in changed_options(t_config, latest) if line.split(":", 1)[0] not in _NOT_TEACHER]
    except Exception as error:  # a damaged file: train afresh
        changed = [f"unreadable ({error})"]
        state = {}
    own = data_digests(net)
    changed += [f"{key} (the data)" for key in own if state.get(key) is not None and state.get(key) != own[key]]
    if state and state.get("model") != t_config["model"]:
        changed.append(f"model: {state.get('model')!r} -> {t_config['model']!r}")
    if state.get("epoch", -1) + 1 > t_config["epochs"]:  # it trained past the epochs asked for now
        changed.append(f"epochs: {state.get('epoch') + 1} done, {t_config['epochs']} asked for")
    if not changed:
        return latest
    logger.warning("HNLMRec teacher: the interrupted training in %s had other settings (%s); training afresh", work,
                   "; ".join(changed[:5]))
    shutil.rmtree(work, ignore_errors=True)
    return None
