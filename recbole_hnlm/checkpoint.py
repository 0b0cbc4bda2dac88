"""Pickle-free training checkpoints: tensors in safetensors, everything else as JSON metadata.

A checkpoint holds the model ``state_dict``, the model's ``other_parameter()`` tensors, the optimizer state, the
trainer's progress (epoch, step, best validation score) and, for the state that resumes a run, every random stream
(:mod:`recbole_hnlm.rng_state`). Loading never unpickles anything, so a checkpoint received
from someone else is safe to open. Writes go to a temporary file that is renamed into place.
"""
import hashlib
import json

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from recbole_hnlm.errors import DataError
from recbole_hnlm.files import atomic_path

FORMAT = "recbole_hnlm/checkpoint/v1"


def _plain(value):
    """JSON-able copy of optimizer hyper-parameters and trainer scalars (tensors are stored separately)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, torch.Tensor):  # numpy scalar
        return value.item()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's metadata")


def save_checkpoint(path, model, optimizer=None, trainer_state=None, rng_state=None):
    """Write ``model`` (+ optimizer and trainer state) to ``path`` atomically.

    Args:
        path (str): destination ``.safetensors`` file.
        model (torch.nn.Module): a RecBole model (``other_parameter()`` is stored when present).
        optimizer (torch.optim.Optimizer, optional): its state tensors go under ``optimizer.<param>.<key>``.
        trainer_state (dict, optional): plain scalars (epoch, cur_step, best_valid_score, model name, config).
        rng_state (tuple, optional): ``(tensors, meta)`` of :func:`recbole_hnlm.rng_state.capture_rng_state`.
    """
    tensors, meta = {}, {"format": FORMAT, "trainer": _plain(trainer_state or {})}
    for name, value in model.state_dict().items():
        tensors[f"model.{name}"] = value
    other = model.other_parameter() if hasattr(model, "other_parameter") else None
    meta["other_parameter"] = {}
    for name, value in (other or {}).items():
        meta["other_parameter"][name] = value is not None
        if value is not None:
            tensors[f"other.{name}"] = value
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars = {}
        for param_id, param_state in state["state"].items():
            for key, value in param_state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{param_id}.{key}"] = value
                else:
                    scalars.setdefault(str(param_id), {})[key] = _plain(value)
        meta["optimizer"] = {"param_groups": _plain(state["param_groups"]), "scalars": scalars,
                             "param_ids": [str(k) for k in state["state"]]}
    if rng_state is not None:
        rng_tensors, meta["rng"] = rng_state
        tensors.update({f"rng.{name}": value for name, value in rng_tensors.items()})
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta["sha256"] = {name: _tensor_sha256(value) for name, value in tensors.items()}
    with atomic_path(path) as tmp:  # created with the umask's mode (mkstemp's would be 0600)
        save_file(tensors, tmp, metadata={"recbole_hnlm": json.dumps(meta)})


def _tensor_sha256(tensor) -> str:
    """sha256 of a CPU tensor's dtype, shape and bytes: a byte changed on disk after the write is found on reading
    (safetensors checks the layout of a file, not its values)."""
    digest = hashlib.sha256(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy() if tensor.numel() else b"")
    return digest.hexdigest()


def _check_sums(path, meta, tensors):
    """The loaded ``tensors`` against the checksums written with them (files written before they were stored have
    none and are taken as they are)."""
    sums = meta.get("sha256")
    if sums is None:
        return
    if not isinstance(sums, dict):
        raise DataError(f"{path}: damaged checkpoint metadata: 'sha256' is not a mapping (the file was edited or "
                        "damaged)")
    for name, tensor in tensors.items():
        if sums.get(name) != _tensor_sha256(tensor.cpu()):
            raise DataError(f"{path}: tensor {name!r} does not match the checksum written with it: the file was "
                            "damaged after it was written (a disk or copy error, or an edit). Use another copy or "
                            "checkpoint, or train again.")


def _checked_meta(path, header):
    """The recbole_hnlm metadata of a safetensors ``header``, checking that the file is one of ours."""
    header = header or {}
    if "recbole_hnlm" not in header:
        raise ValueError(f"{path} is not a recbole_hnlm checkpoint (no 'recbole_hnlm' metadata)")
    try:
        meta = json.loads(header["recbole_hnlm"])
    except ValueError as error:
        raise ValueError(f"{path}: its recbole_hnlm metadata is not valid JSON ({error}): the file was edited or "
                         "damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise ValueError(f"{path}: unsupported checkpoint format {found!r}, expected {FORMAT!r}")
    _check_trainer_state(path, meta.get("trainer", {}))
    return meta


def _check_trainer_state(path, trainer):
    """The trainer state's types, which resuming does arithmetic with (a hand-edited file failed deep inside)."""
    def damaged(what):
        return ValueError(f"{path}: damaged checkpoint metadata: {what} (the file was edited or damaged)")

    if not isinstance(trainer, dict):
        raise damaged(f"'trainer' is {type(trainer).__name__}, not a mapping")
    for key in ("model", "sampler", "dataset"):  # every checkpoint names them: the checks compare them with the run
        if not isinstance(trainer.get(key), str) or not trainer[key]:
            raise damaged(f"'{key}' is missing" if key not in trainer else f"'{key}' is {trainer[key]!r}, not a name")
    for key in ("epoch", "cur_step"):
        if key in trainer and (not isinstance(trainer[key], int) or isinstance(trainer[key], bool)):
            raise damaged(f"'{key}' is {trainer[key]!r}, not an integer")
    score = trainer.get("best_valid_score")
    if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)):
        raise damaged(f"'best_valid_score' is {score!r}, not a number")
    result = trainer.get("best_valid_result")
    if result is not None and not (isinstance(result, dict) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in result.values())):
        raise damaged(f"'best_valid_result' is {result!r}, not a mapping of metric names to numbers")


def _header(path):
    """The checkpoint's JSON metadata, without loading any tensor."""
    with safe_open(path, framework="pt", device="cpu") as f:
        return _checked_meta(path, f.metadata())


def _read(path, device="cpu", prefix=""):
    """``(meta, tensors)`` of a checkpoint file, in one pass; only the tensors whose names start with ``prefix``."""
    with safe_open(path, framework="pt", device=str(device)) as f:
        meta = _checked_meta(path, f.metadata())
        tensors = {key: f.get_tensor(key) for key in f.keys() if key.startswith(prefix)}
    _check_sums(path, meta, tensors)
    return meta, tensors


def read_trainer_state(path):
    """The trainer state stored in a checkpoint, without loading any tensor."""
    return _header(path).get("trainer", {})


def read_model_weights(path):
    """``(trainer state, {name: tensor})``: the stored trainer state and the model's ``state_dict`` entries, on the
    CPU, without the optimizer or the random streams."""
    meta, tensors = _read(path, prefix="model.")
    return meta.get("trainer", {}), {k[len("model."):]: v for k, v in tensors.items()}


def read_rng_state(path):
    """``(tensors, meta)`` of the random streams stored in a checkpoint, or ``None`` when it has none."""
    meta, tensors = _read(path, prefix="rng.")  # not the weights again: the trainer has just loaded them
    if "rng" not in meta:
        return None
    return {k[len("rng."):]: v for k, v in tensors.items()}, meta["rng"]


def load_checkpoint(path, model, optimizer=None, device="cpu"):
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (and ``optimizer``).

    Returns:
        dict: the trainer state stored with it.

    Raises:
        ValueError: the file is not a recbole_hnlm checkpoint; :class:`DataError` (a ``ValueError``): a tensor does
            not match the checksum written with it.
    """
    meta, tensors = _read(path, device)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    if hasattr(model, "load_other_parameter"):
        other = {name: tensors.get(f"other.{name}") for name in meta.get("other_parameter", {})}
        model.load_other_parameter(other or None)
    if optimizer is not None and "optimizer" in meta:
        opt_meta = meta["optimizer"]
        state = {}
        for param_id in opt_meta["param_ids"]:
            entry = dict(opt_meta["scalars"].get(param_id, {}))
            prefix = f"optimizer.{param_id}."
            entry.update({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            state[int(param_id)] = entry
        optimizer.load_state_dict({"state": state, "param_groups": opt_meta["param_groups"]})
    return meta["trainer"]
