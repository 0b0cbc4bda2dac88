"""Every random stream a training run draws from, captured and restored, so that a resumed run continues bit for bit.

A run draws from Python's ``random``, NumPy's global generator (RecBole's negative sampler), torch's CPU and CUDA
generators (the samplers' candidates, MixGCF's ``alpha``, SGL's graph views) and each dataloader's own
``torch.Generator`` (RecBole shuffles the training data with it). :func:`capture_rng_state` turns them into
tensors plus JSON-able scalars, the two halves of a safetensors checkpoint; :func:`restore_rng_state` puts them back.
"""
import random

import numpy as np
import torch


def capture_rng_state(generators=None):
    """Snapshot the global generators and the named ``generators``.

    Args:
        generators (dict of str to torch.Generator, optional): extra generators, e.g.
            ``{"train_data": loader.generator}``.

    Returns:
        (dict, dict): tensors (``uint8``/``int64``, CPU) and plain metadata.
    """
    py_version, py_words, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    tensors = {
        "python": torch.tensor(py_words, dtype=torch.int64),
        "numpy": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "torch": torch.get_rng_state(),
    }
    meta = {"python": [py_version, py_gauss], "numpy": [np_kind, int(np_pos), int(np_has_gauss), float(np_gauss)],
            "cuda_devices": 0, "generators": sorted(generators or {})}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states = torch.cuda.get_rng_state_all()
        meta["cuda_devices"] = len(states)
        tensors.update({f"cuda.{index}": state for index, state in enumerate(states)})
    for name, generator in (generators or {}).items():
        tensors[f"generator.{name}"] = generator.get_state()
    return tensors, meta


def restore_rng_state(tensors, meta, generators=None):
    """Put back a snapshot taken by :func:`capture_rng_state`.

    Args:
        tensors (dict): the snapshot's tensors.
        meta (dict): the snapshot's metadata.
        generators (dict of str to torch.Generator, optional): the generators to restore in place, by the names they
            were captured under.

    Raises:
        ValueError: a generator named in ``generators`` is not in the snapshot.
    """
    py_version, py_gauss = meta["python"]
    random.setstate((py_version, tuple(int(word) for word in tensors["python"].tolist()), py_gauss))
    np_kind, np_pos, np_has_gauss, np_gauss = meta["numpy"]
    np.random.set_state((np_kind, tensors["numpy"].numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(tensors["torch"])
    cuda_states = [tensors[f"cuda.{index}"] for index in range(meta.get("cuda_devices", 0))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[:torch.cuda.device_count()])
    for name, generator in (generators or {}).items():
        if f"generator.{name}" not in tensors:
            raise ValueError(f"the random state has no generator {name!r} (it holds {meta.get('generators')})")
        generator.set_state(tensors[f"generator.{name}"])


def torch_streams_forked(device):
    """``torch.random.fork_rng`` over the CPU's stream and, on a CUDA ``device``, that device's: draws made inside
    leave the caller's streams where they were."""
    device = torch.device(device)
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
