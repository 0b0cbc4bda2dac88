"""Checkpoint checksums: each tensor's sha256 is written with it, so a byte changed on disk after the write stops
every reader of that tensor with a message naming the file and tensor; files written without checksums still load."""
import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recbole_hnlm.checkpoint import load_checkpoint, read_model_weights, read_rng_state, read_trainer_state, \
    save_checkpoint
from recbole_hnlm.errors import DataError
from recbole_hnlm.rng_state import capture_rng_state

STATE = {"model": "MF", "sampler": "RNS", "dataset": "toy", "epoch": 0, "cur_step": 1, "best_valid_score": 0.5}


def _model():
    return torch.nn.Sequential(torch.nn.Embedding(7, 4), torch.nn.Linear(4, 1))


def _trained(tmp_path):
    """A checkpoint of a small model after one Adam step (so the optimizer holds tensors), with random streams."""
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.tensor([1, 3])).sum().backward()
    optimizer.step()
    path = str(tmp_path / "run.safetensors")
    save_checkpoint(path, model, optimizer, STATE, capture_rng_state())
    return path, model, optimizer


def _flip_a_byte(path, tensor_name, offset=0):
    """Flip one bit of ``tensor_name``'s stored bytes in place (the safetensors layout stays valid)."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    header_size = struct.unpack("<Q", data[:8])[0]
    begin, end = json.loads(data[8:8 + header_size])[tensor_name]["data_offsets"]
    assert end > begin + offset
    data[8 + header_size + begin + offset] ^= 0x10
    with open(path, "wb") as f:
        f.write(data)


def _fresh():
    """Another model and optimizer of the same shapes to load into."""
    model = _model()
    return model, torch.optim.Adam(model.parameters(), lr=0.1)


def test_a_round_trip_restores_every_tensor(tmp_path):
    path, model, optimizer = _trained(tmp_path)
    other, other_optimizer = _fresh()
    assert load_checkpoint(path, other, other_optimizer)["cur_step"] == 1
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    with safe_open(path, framework="pt") as f:
        sums = json.loads(f.metadata()["recbole_hnlm"])["sha256"]
        assert sorted(sums) == sorted(f.keys())  # one checksum per stored tensor, weights, optimizer and streams


def test_a_changed_weight_byte_stops_every_reader_of_the_weights(tmp_path):
    path, model, optimizer = _trained(tmp_path)
    _flip_a_byte(path, "model.0.weight", offset=5)
    message = r"run\.safetensors: tensor 'model\.0\.weight' does not match the checksum written with it"
    with pytest.raises(DataError, match=message):
        read_model_weights(path)
    with pytest.raises(DataError, match=message):
        load_checkpoint(path, *_fresh())
    assert read_trainer_state(path)["epoch"] == 0  # the metadata alone is still readable
    assert read_rng_state(path) is not None  # the random streams were not touched


def test_a_changed_optimizer_byte_stops_the_full_load_only(tmp_path):
    path, model, optimizer = _trained(tmp_path)
    name = next(key for key in load_file(path) if key.startswith("optimizer.") and key.endswith(".exp_avg_sq"))
    _flip_a_byte(path, name)
    assert torch.equal(read_model_weights(path)[1]["0.weight"], model.state_dict()["0.weight"])
    with pytest.raises(DataError, match=f"tensor '{name}' does not match"):
        load_checkpoint(path, *_fresh())


def _rewritten(path, edit):
    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["recbole_hnlm"])
    edit(meta)
    save_file(load_file(path), path, metadata={"recbole_hnlm": json.dumps(meta)})


def test_a_file_written_before_checksums_loads_as_it_is(tmp_path):
    path, model, optimizer = _trained(tmp_path)
    _rewritten(path, lambda meta: meta.pop("sha256"))
    _flip_a_byte(path, "model.1.bias")  # nothing to find it with: the changed value is loaded
    other, other_optimizer = _fresh()
    load_checkpoint(path, other, other_optimizer)
    assert not torch.equal(other[1].bias, model[1].bias) and torch.equal(other[0].weight, model[0].weight)


def test_checksums_that_are_no_mapping_are_named(tmp_path):
    path, model, optimizer = _trained(tmp_path)
    _rewritten(path, lambda meta: meta.update(sha256=["x"]))
    with pytest.raises(DataError, match="damaged checkpoint metadata: 'sha256' is not a mapping"):
        read_model_weights(path)


def test_the_checksum_covers_dtype_and_shape(tmp_path):
    """Two tensors of the same bytes but another dtype or shape do not share a checksum."""
    from recbole_hnlm.checkpoint import _tensor_sha256

    ints = torch.arange(4, dtype=torch.int32)
    assert _tensor_sha256(ints) != _tensor_sha256(ints.view(torch.float32))
    assert _tensor_sha256(ints) != _tensor_sha256(ints.reshape(2, 2))
    assert _tensor_sha256(torch.zeros(0, 3)) != _tensor_sha256(torch.zeros(3, 0))
    assert _tensor_sha256(torch.ones(3, dtype=torch.bfloat16)) == _tensor_sha256(torch.ones(3, dtype=torch.bfloat16))


def test_a_damaged_resume_state_is_one_error_naming_the_file(fast_config, tmp_path):
    """The run script's resume reports a checksum error of the optimizer's state as it is, not as options that do not
    fit the rest of the state (the weights, read first by the shape checks, fail there with the same message)."""
    from recbole_hnlm.quick_start import run_recbole_hnlm

    settings = {**fast_config, "sampler": "RNS", "epochs": 1}
    first = run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "run")})
    name = next(key for key in load_file(first["resume_state"]) if key.endswith(".exp_avg"))
    _flip_a_byte(first["resume_state"], name, offset=100)
    with pytest.raises(DataError) as error:
        run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "again"),
                                                  "resume_from": first["resume_state"]})
    assert str(error.value).startswith(f"{first['resume_state']}: tensor '{name}' does not match the checksum")
