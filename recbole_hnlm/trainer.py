"""Trainers with safetensors checkpoints and per-epoch sampler hooks.

RecBole 1.2.1 pickles its ``Config`` into ``torch.save`` checkpoints and reloads them with ``torch.load``, which torch
>= 2.6 refuses (``weights_only``). :class:`SafeCheckpointMixin` stores checkpoints with :mod:`recbole_hnlm.checkpoint`
instead (no pickle) and works on top of any RecBole trainer class (:func:`make_safe_trainer`).
"""
import os
import shutil
import time
import warnings
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import torch

from recbole.trainer import Trainer
from recbole.utils import get_local_time, set_color

from recbole_hnlm.compat import EvalCollector
from recbole_hnlm.checkpoint import load_checkpoint, read_rng_state, read_trainer_state, save_checkpoint
from recbole_hnlm.config import split_seed
from recbole_hnlm.errors import ConcurrentWriterError
from recbole_hnlm.files import (atomic_path, held_by_another, lock_open_file, pid_alive, remove_dead_writers_files,
                                temporary_name)
from recbole_hnlm.resume import best_checkpoint_of, json_value, training_options
from recbole_hnlm.rng_state import capture_rng_state, restore_rng_state
from recbole_hnlm.warm_start import data_digests


def _loader_generators(train_data):
    """The training dataloader's own generator (RecBole shuffles with it), by the name a resume state stores it."""
    generator = getattr(train_data, "generator", None)
    return {"train_data": generator} if isinstance(generator, torch.Generator) else {}


def _run_settings(config):
    """The settings the run was started with (its config files, dict and command line) for
    :func:`recbole_hnlm.load.load_data_and_model`: NumPy scalars as Python numbers, ``data_path`` absolute; a value
    JSON cannot hold is left out (the checkpoint's ``options`` still record every final value, and loading compares
    against them)."""
    settings = {}
    for key, value in config.external_config_dict.items():
        if key == "data_path" and isinstance(value, str):
            value = os.path.abspath(value)
        try:
            settings[key] = json_value(value)
        except (TypeError, ValueError):
            continue
    return settings


def _reserve_stem(stem):
    """``(stem, marker)``: ``stem``, or ``stem-2``, ``stem-3`` ... when another run took that name, and the hidden
    file (holding the run's pid, and locked by it) that reserves it until the run has written its own files.

    RecBole names checkpoints by the second, so runs started together (seeds launched side by side, or a warm start
    right after its source) would otherwise write over each other's checkpoints. A name is taken when its files exist
    or when another live run holds its marker (created atomically, so two processes never get the same name); the
    marker of a run that no longer runs (hard-killed) is removed, and its name is free again.
    """
    _remove_dead_markers(os.path.dirname(stem) or ".")
    candidate, n = stem, 1
    while True:
        if not (os.path.exists(f"{candidate}.safetensors") or os.path.exists(f"{candidate}.resume.safetensors")):
            marker = _marker_of(candidate)
            if _create_marker(marker):
                return candidate, marker
            if _remove_if_dead(marker):  # a hard-killed run's: the name is free again
                continue
        n += 1
        candidate = f"{stem}-{n}"


#: Open name markers of this process, each holding a ``flock`` that tells other processes it runs: process ids
#: alone did not (a run in another container sharing the folder saw no such pid, removed the marker and took the name).
_HELD_MARKERS = {}


def _create_marker(marker):
    """Create ``marker`` holding this process's pid, locked by this process until the name is released or it ends;
    False when it exists already. It is written and locked under a temporary name, then linked into place (which
    never replaces an existing marker), so no other process sees it empty or unlocked."""
    tmp = temporary_name(marker)
    handle = open(tmp, "x", encoding="utf-8")  # 0666 & umask, not 0755
    try:
        locked = _sign(handle)
        try:
            os.link(tmp, marker)
        except FileExistsError:
            handle.close()
            return False
        except OSError:  # a file system without hard links: created in place (a reader may see it empty a moment)
            handle.close()
            return _create_marker_in_place(marker)
    finally:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
    _keep(marker, handle, locked)
    return True


def _create_marker_in_place(marker):
    """:func:`_create_marker` where no hard link can be made: ``O_EXCL`` creation, then the lock and the pid."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    handle = os.fdopen(fd, "w", encoding="utf-8")
    _keep(marker, handle, _sign(handle))
    return True


def _sign(handle):
    """Lock a new marker's open file ``handle`` for this process and write its pid; whether a lock was taken."""
    locked = lock_open_file(handle)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return locked


def _keep(marker, handle, locked):
    """Hold ``marker`` open, its lock held until :func:`_drop_marker` or the end of this process; where no lock could
    be taken the file is closed, and its pid alone tells."""
    if locked:
        _HELD_MARKERS[os.path.abspath(marker)] = handle
    else:
        handle.close()


def _drop_marker(marker):
    """Remove this process's ``marker`` and release its lock."""
    try:
        os.remove(marker)
    except FileNotFoundError:
        pass
    handle = _HELD_MARKERS.pop(os.path.abspath(marker), None)
    if handle is not None:
        handle.close()


def _holder_of(marker):
    """``marker``'s content: the pid of the run that holds it as text ("" for markers of versions before session 25),
    or None when it cannot be read (gone meanwhile)."""
    try:
        with open(marker, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _live_holder(marker):
    """The pid of another process that holds ``marker`` and runs, else None. Where liveness cannot be told (Windows:
    ``pid_alive`` is always True there) a marker never counts as live: a resume is not refused for good."""
    text = _holder_of(marker)
    if text is None or os.path.abspath(marker) in _HELD_MARKERS:  # gone, or this process's own
        return None
    if held_by_another(marker):  # its run holds the lock: alive, even where its pid means nothing here, or is ours
        return int(text) if text.isdigit() else "unknown"  # (a process of another container with the same pid)
    if os.name != "nt" and text and text.isdigit() and int(text) != os.getpid() and pid_alive(int(text)):
        return int(text)
    return None


def check_resume_not_in_use(resume_file):
    """Raise :class:`ConcurrentWriterError` when a live process holds the name marker of the run whose resume state
    ``resume_file`` is (that run, or another resume of it, still writes its files). Called before the sampler's
    preparation (HNLMRec's LLM stage), and again when the trainer takes the marker over."""
    if not str(resume_file).endswith(".resume.safetensors"):
        return
    marker = _marker_of(str(resume_file)[:-len(".resume.safetensors")])
    holder = _live_holder(marker)
    if holder is not None:
        raise _in_use(resume_file, marker, holder)


def _in_use(resume_file, marker, holder):
    return ConcurrentWriterError(
        f"resume_from: {resume_file}: another process (pid {holder}) is still writing this run's files (it holds "
        f"{marker}); resume it once that process has ended. If no process of this run is left (a process id reused "
        "since), delete that file and resume again.")


def _claim_marker(marker):
    """Hold ``marker`` (write this process's pid into it) for a run that goes on writing an earlier run's files
    (``resume_from``). Returns None, or the pid of the live process that holds it (that run is still writing)."""
    while not _create_marker(marker):
        with _removals_in_turn(marker), _opened_file_id(marker) as judged:
            if judged is None:  # removed meanwhile (its run ended): create it again, never remove another's
                continue
            holder = _live_holder(marker)
            if holder is not None:
                return holder
            if _file_id(marker) == judged:  # the marker judged: a dead run's, one without a pid (older versions) or
                _remove_dead_writes(marker)  # this process's own; the dead run's half-written checkpoint goes too
                _drop_marker(marker)
    return None


def _file_id(path):
    """``(device, inode)`` of ``path``, or None when it is not there."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


@contextmanager
def _opened_file_id(path):
    """``(device, inode)`` of the file at ``path`` (None when it is not there), kept open for the block: a file
    removed meanwhile frees its inode number, which the next file created (a new run's marker) takes at once on ext4
    and tmpfs, so only an open file's identity tells it from its replacement. On Windows (where an open file cannot
    be removed) its identity is only read."""
    if os.name == "nt":
        yield _file_id(path)
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        yield None
        return
    try:
        status = os.fstat(fd)
        yield status.st_dev, status.st_ino
    finally:
        os.close(fd)


@contextmanager
def _removals_in_turn(marker):
    """Hold an exclusive ``flock`` on the folder of ``marker`` itself (no file of its own) while a marker there is
    judged no longer held and removed. Two resumes of a hard-killed run both found its marker stale and removed it by
    name: the slower one removed the marker the faster one had created meanwhile, took the name as well, and both
    wrote the same files. A marker is only created where none is (a link), and only removed in turn (its own run
    aside, which never removes a marker it does not hold), so the file judged here is the one removed. Where the
    folder takes no lock, as before."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(marker)), os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        lock_open_file(fd)  # False (no fcntl, a file system without locks): unlocked, as before
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_dead_markers(folder):
    """Remove the name markers of runs that no longer run (hard-killed runs never resumed left one each)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(".") and name.endswith(".reserved"):
            _remove_if_dead(os.path.join(folder, name))


def _marker_of(stem):
    return os.path.join(os.path.dirname(stem), f".{os.path.basename(stem)}.reserved")


def _remove_if_dead(marker):
    """Remove a name marker whose run no longer runs (no lock on it, and its pid is dead); a marker without a pid
    (written by versions before session 25, which may still run) stays. Whether it was removed."""
    with _removals_in_turn(marker), _opened_file_id(marker) as judged:
        text = _holder_of(marker)
        if text is None or held_by_another(marker):  # a locked marker's run is alive, whatever its pid means here
            return False
        if text.isdigit() and int(text) != os.getpid() and not pid_alive(int(text)) and _file_id(marker) == judged:
            _remove_dead_writes(marker)
            try:
                os.remove(marker)
            except FileNotFoundError:
                pass
            return True
    return False


def _remove_dead_writes(marker):
    """Remove the temporary files (``<stem>.safetensors.tmp-<pid>-<random>``, ``<stem>.resume.safetensors.tmp-...``)
    that the run holding ``marker`` left when it was hard-killed (SIGKILL, power loss) during a checkpoint write, once
    that run certainly ended: its marker names its pid, which runs no process here, and no process holds the marker's
    lock (so it runs in no other container either). The atomic writes themselves remove such a file only when they
    write the same path again and it is older than ``STALE_WRITE_SECONDS``: a resume soon after the kill, or a rerun
    under a new name, left a checkpoint-sized file behind for good."""
    text = _holder_of(marker)
    if not text or not text.isdigit() or int(text) == os.getpid() or pid_alive(int(text)) or \
            held_by_another(marker) is not False:  # no lock to tell (a file system without locks): left as it was
        return
    folder, name = os.path.split(marker)
    stem = os.path.join(folder, name[1:-len(".reserved")])
    for path in (f"{stem}.safetensors", f"{stem}.resume.safetensors"):
        remove_dead_writers_files(path, ended_pid=int(text))


class SafeCheckpointMixin:
    """Checkpoint save/load without pickle, resumable runs, and ``on_epoch_start``/``on_epoch_end`` hooks for models
    that need them.

    Besides the best epoch's checkpoint (``saved_model_file``), a run of a resumable model (the plugin's backbones,
    ``model.resumable``) with ``save_resume_state`` writes the whole training state after every epoch to
    ``resume_state_file`` (``<model>-<time>.resume.safetensors``): weights, optimizer, early-stopping counters, the
    best result so far and every random stream. :meth:`resume_checkpoint` on that file continues the run where it
    stopped; with the same options it reaches the same weights, bit for bit, as a run that was never interrupted
    (on the CPU; on a GPU as far as the run itself is reproducible, see ``use_deterministic_algorithms``).
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        if hasattr(self, "eval_collector"):  # RecBole's, without its crash on the item-count metrics
            self.eval_collector = EvalCollector(config)
        stem, self._name_marker = _reserve_stem(os.path.join(self.checkpoint_dir,
                                                              f"{config['model']}-{get_local_time()}"))
        self.saved_model_file = f"{stem}.safetensors"
        self.resume_state_file = f"{stem}.resume.safetensors"
        self.save_resume_state = bool(getattr(model, "resumable", False) and config["save_resume_state"]
                                      if "save_resume_state" in config else False)
        self._writes_resume_state = False
        self._rng_to_restore = None
        self._stopped_early = False
        self._last_trained_epoch = None
        self._last_valid = None  # (epoch, result) of the latest validation: a best checkpoint stores its result
        self._best_epoch = None  # the epoch of the best checkpoint, recorded in the resume state
        self._train_data = None  # the loader whose generators a resume state captures
        self._resume_state_for = None  # the epoch the resume state on disk trains next
        self._selection_restarted = False  # negative_warmup_epochs: model selection restarted after the warm-up
        #: Called with (epoch index, seconds it trained, its loss as RecBole returns it) after each training epoch:
        #: HNLMRec's teacher says which of its epochs ended and how long the rest takes (its bars read like the run's
        #: own), and whether its loss moved.
        self.on_epoch_trained = None
        init_from = config["init_from"] if "init_from" in config else None
        self.init_from = os.path.abspath(init_from) if init_from else None  # the warm start's origin, recorded

    def _release_name(self):
        """Drop the marker that reserved this run's file names (its own files, once written, keep them taken)."""
        if self._name_marker is not None:
            _drop_marker(self._name_marker)
            self._name_marker = None

    def close(self):
        """Give up the reserved file names: for a trainer that writes no checkpoint (``eval_only``)."""
        self._release_name()

    def _trainer_state(self, epoch):
        state = {
            "model": self.config["model"],
            "sampler": self.config["sampler"],
            "dataset": self.config["dataset"],
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "selection_restarted": self._selection_restarted,
        }
        state.update(data_digests(self.model))  # the plugin's backbones: ids and training split
        if "split_seed" in self.config:
            state["split_seed"] = split_seed(self.config)
        fingerprint = getattr(getattr(self.model, "sampler", None), "parameter_fingerprint", None)
        if fingerprint is not None:  # what the sampler's own parameters were trained on (HNLMRec's store)
            state["sampler_fingerprint"] = fingerprint
        if self.init_from is not None:
            state["init_from"] = self.init_from
        state["run_settings"] = _run_settings(self.config)
        state["options"] = training_options(self.config)
        return state

    #: False for a training without validation whose only use of its files is resuming (HNLMRec's teacher): RecBole
    #: would write a "best" checkpoint after every epoch, which nothing reads.
    saves_best_checkpoints = True

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.saves_best_checkpoints:
            return
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = self._trainer_state(epoch)
        result = self._last_valid[1] if self._last_valid is not None and self._last_valid[0] == epoch else None
        if result is not None:  # RecBole saves a new best before it records it as best_valid_result
            state["best_valid_result"] = _plain_result(result)
        self._best_epoch = int(epoch)
        if self._writes_resume_state and self._train_data is not None:
            # the resume state first: a run stopped between the two writes goes on from this epoch and rewrites the
            # best file from the state's weights (resume_checkpoint). In the other order the best file could hold an
            # epoch the resume state does not cover, and a continuation with fewer epochs tested it as another's.
            self._save_resume_state(epoch + 1, self._train_data, result)
        save_checkpoint(saved_model_file, self.model, self.optimizer, state)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def _save_resume_state(self, next_epoch, train_data, best_valid_result=None):
        """Write everything :meth:`resume_checkpoint` needs to train epoch ``next_epoch`` next (``best_valid_result``:
        a new best's result, which RecBole records only after saving its checkpoint)."""
        best = os.path.abspath(self.saved_model_file) if os.path.exists(self.saved_model_file) else None
        if best is None and self._best_epoch is not None:  # written next (_save_checkpoint)
            best = os.path.abspath(self.saved_model_file)
        state = {**self._trainer_state(next_epoch - 1), "resume_state": True, "stopped_early": self._stopped_early,
                 "best_checkpoint": best, "best_epoch": self._best_epoch,
                 "best_valid_result": _plain_result(best_valid_result or self.best_valid_result)}
        save_checkpoint(self.resume_state_file, self.model, self.optimizer, state,
                        rng_state=capture_rng_state(_loader_generators(train_data)))
        self._resume_state_for = int(next_epoch)

    def resume_checkpoint(self, resume_file):
        """Load ``resume_file`` and continue from it at the next :meth:`fit`.

        A resume-state file (``*.resume.safetensors``) continues the interrupted run exactly, and keeps writing its
        best checkpoint to the run's own best file. Any other checkpoint (a best epoch's file) restores weights,
        optimizer and counters but no random streams; training then goes on from that epoch as RecBole's own
        ``resume_checkpoint`` does, into this run's own pair of files (its best file starts as a copy of the
        checkpoint, which is left unchanged).
        """
        resume_file = str(resume_file)
        state = load_checkpoint(resume_file, self.model, self.optimizer, device=self.device)
        self.start_epoch = state["epoch"] + 1
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        self._selection_restarted = bool(state.get("selection_restarted", False))
        self.init_from = state.get("init_from")  # a resumed warm-started run keeps its origin
        if state.get("resume_state"):
            # the run goes on writing to the files of the run it continues: it holds their marker (that run's, left
            # by a hard kill, is removed), and refuses while that run, or another resume of it, still writes them
            marker = _marker_of(resume_file[:-len(".resume.safetensors")])
            holder = _claim_marker(marker)
            if holder is not None:
                raise _in_use(resume_file, marker, holder)
            self._release_name()
            self._name_marker = marker
            self.resume_state_file = resume_file
            beside = resume_file.replace(".resume.safetensors", ".safetensors")  # no best epoch yet: keep the pair
            # the best file beside the resume state, not the path it was first written to: resuming a copied folder
            # wrote into the original run's best file. A resume state copied without it takes a copy of the original.
            best = best_checkpoint_of(resume_file, state)
            if best is not None and os.path.abspath(best) != os.path.abspath(beside) and beside != resume_file:
                with atomic_path(beside) as tmp:
                    shutil.copyfile(best, tmp)
                self.logger.warning(f"resume_from: {best} (the best checkpoint so far) is not beside the resume "
                                    f"state; this run goes on with a copy of it, {beside}, and leaves it unchanged.")
                best = beside
            self.saved_model_file = best or (beside if beside != resume_file else self.saved_model_file)
            run_folder = os.path.dirname(os.path.abspath(resume_file))
            if run_folder != os.path.abspath(self.config["checkpoint_dir"]):  # a warning when it was set elsewhere
                log = self.logger.info if os.path.normpath(self.config["checkpoint_dir"]) == "saved" else \
                    self.logger.warning
                log(f"resume_from: the run goes on writing its files in {run_folder}, beside its resume state, not "
                    f"in checkpoint_dir={self.config['checkpoint_dir']}.")
            self.best_valid_result = _restored_result(state)
            self._stopped_early = bool(state["stopped_early"])
            self._rng_to_restore = read_rng_state(resume_file)
            self._best_epoch = state.get("best_epoch")
            self._mend_best_checkpoint(state)
        else:  # the best so far is the checkpoint itself: this run's best file starts as its copy
            self.best_valid_result = _restored_result(state)  # None in best checkpoints before session 22
            self._best_epoch = int(state["epoch"])  # its resume states name the tested epoch until a better one
            with atomic_path(self.saved_model_file) as tmp:
                shutil.copyfile(resume_file, tmp)
            self.logger.warning(f"{resume_file} is a best-epoch checkpoint, not a resume state: training goes on "
                                f"from epoch {self.start_epoch} with fresh random streams, so it will not repeat "
                                "an uninterrupted run bit for bit. The checkpoint is left as it is; this run writes "
                                f"{self.saved_model_file} (a copy of it until a better epoch) and "
                                f"{self.resume_state_file}.")
        for group in self.optimizer.param_groups:  # the run's options win over the stored ones (equal if unchanged)
            group["lr"] = self.learning_rate
            if "weight_decay" in group:
                group["weight_decay"] = self.weight_decay
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def _mend_best_checkpoint(self, state):
        """Make the best file agree with a resume state just loaded. A run stopped after the resume state of a new
        best epoch and before its best file: the state's weights are that epoch's, and are written as the best file.
        A best file of an epoch after the state's (written by a version that saved the resume state after the best
        file): the best epoch's weights are gone, so model selection starts afresh from the next validation."""
        best_epoch, last = state.get("best_epoch"), int(state["epoch"])
        stored = read_trainer_state(self.saved_model_file).get("epoch") if os.path.isfile(self.saved_model_file) \
            else None
        if best_epoch is not None and best_epoch == last and stored != best_epoch:
            self._last_valid = (best_epoch, self.best_valid_result)
            self._save_checkpoint(best_epoch, verbose=False)
            self.logger.warning(f"resume_from: the run stopped before it wrote the best checkpoint of epoch "
                                f"{best_epoch}; written now from the resume state: {self.saved_model_file}")
        elif stored is not None and stored > last:
            self._forget_best()
            self.logger.warning(f"resume_from: the best checkpoint {self.saved_model_file} holds epoch {stored}, "
                                f"after the resume state's epoch {last}: the weights of the best epoch before it are "
                                "gone, so model selection starts afresh (and, with no epoch left to train, the test "
                                f"loads epoch {stored}).")

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        if self._stopped_early or self.start_epoch >= self.epochs:
            # RecBole would save the current weights over the best checkpoint here; there is nothing left to train.
            reason = "early stopping ended it" if self._stopped_early else f"all {self.epochs} epochs are done"
            self.logger.warning(f"Nothing to train: {reason}. Best valid score {self.best_valid_score}.")
            self._release_name()
            return self.best_valid_score, self.best_valid_result
        if self._rng_to_restore is not None:
            restore_rng_state(*self._rng_to_restore, generators=_loader_generators(train_data))
            self._rng_to_restore = None
        self._writes_resume_state = saved and self.save_resume_state
        self._last_trained_epoch = None
        try:
            result = super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                                 callback_fn=callback_fn)
            if self._writes_resume_state and self._last_trained_epoch is not None:
                self._stopped_early = self.cur_step > self.stopping_step  # RecBole's early_stopping rule
                self._save_resume_state(self._last_trained_epoch + 1, train_data)
            if saved and valid_data is not None:
                self._warn_if_best_epoch_in_warm_up()
            return result
        finally:
            self._writes_resume_state = False
            self._release_name()

    def _valid_epoch(self, valid_data, show_progress=False):
        """RecBole's validation, with the model selection of a negative warm-up (``negative_warmup_epochs``): early
        stopping never ends a run inside the warm-up, and the first validation after it starts early stopping and
        the best checkpoint afresh, so the tested model is one trained with the sampler (as with a warm start,
        ``init_from``) and the dip that often follows the switch does not stop the run."""
        warm_up = getattr(self.model, "negative_warmup_epochs", 0)
        epoch = self._last_trained_epoch
        if warm_up and epoch is not None:
            if epoch < warm_up:
                self.cur_step = 0
            elif not self._selection_restarted:
                self._start_model_selection_afresh(warm_up)
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self._last_valid = (epoch, result)
        return score, result

    def _forget_best(self):
        """Model selection from scratch: no best score or result, early stopping's counter at 0."""
        self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf
        self.best_valid_result = None
        self.cur_step = 0

    def _start_model_selection_afresh(self, warm_up):
        self._forget_best()
        self._selection_restarted = True
        self.logger.info(f"negative_warmup_epochs={warm_up}: early stopping and the best checkpoint start afresh "
                         f"with {self.config['sampler']}")

    def _warn_if_best_epoch_in_warm_up(self):
        """``negative_warmup_epochs``: say so when the best checkpoint (the one the test loads) never trained with
        the sampler."""
        warm_up = getattr(self.model, "negative_warmup_epochs", 0)
        if not warm_up or not os.path.isfile(self.saved_model_file):
            return
        best = read_trainer_state(self.saved_model_file).get("epoch")
        if best is not None and 0 <= best < warm_up:
            self.logger.warning(set_color(
                f"negative_warmup_epochs={warm_up}: the best validation epoch ({best}) lies inside the warm-up, so "
                f"the checkpoint that is tested was trained with the uniform negative only, never with "
                f"{self.config['sampler']}.", "yellow"))

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model:  # a final test (validation inside fit passes False): this trainer writes no more files
            self._release_name()
        if load_best_model and eval_data:
            checkpoint_file = model_file or self.saved_model_file
            load_checkpoint(checkpoint_file, self.model, device=self.device)
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._train_data = train_data
        if self._writes_resume_state and self._last_trained_epoch is not None and self._resume_state_for != epoch_idx:
            self._save_resume_state(epoch_idx, train_data)  # the previous epoch, validation included, is complete
        self._last_trained_epoch = epoch_idx
        hook = getattr(self.model, "on_epoch_start", None)
        if hook is not None:
            hook(epoch_idx)
        started = time.perf_counter()
        with warnings.catch_warnings():  # RecBole builds torch.cuda.amp.GradScaler every epoch (deprecated alias)
            warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.GradScaler", category=FutureWarning)
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        hook = getattr(self.model, "on_epoch_end", None)
        if hook is not None:
            hook(epoch_idx)
        if self.on_epoch_trained is not None:
            self.on_epoch_trained(epoch_idx, time.perf_counter() - started, loss)
        return loss


def _plain_result(result):
    """A validation result as plain floats for a checkpoint's JSON metadata (``{}`` for none)."""
    return {k: float(v) for k, v in (result or {}).items()}


def _restored_result(state):
    """A stored validation result as RecBole's ``evaluate`` gives it (an ``OrderedDict``), or ``None``."""
    return OrderedDict(state.get("best_valid_result") or {}) or None


def make_safe_trainer(trainer_class):
    """Return ``trainer_class`` with :class:`SafeCheckpointMixin` in front of it."""
    if issubclass(trainer_class, SafeCheckpointMixin):
        return trainer_class
    return type(f"Safe{trainer_class.__name__}", (SafeCheckpointMixin, trainer_class), {})


HNLMTrainer = make_safe_trainer(Trainer)
