"""Small utility modules pinned directly: signals, determinism, RNG snapshots, compat shims, name lookup, errors,
console log format, ``--key=value`` parsing and the LLM throughput words (gaps a mutation audit found)."""
import argparse
import collections
import io
import logging
import os
import random
import signal
import threading

import colorlog
import numpy as np
import pytest
import torch
from recbole.utils import ModelType
from recbole.utils.logger import RemoveColorFilter

from recbole_hnlm import signals
from recbole_hnlm.cli_settings import parse_settings, parse_value, parser_flags
from recbole_hnlm.errors import ConcurrentWriterError, ConfigError, DataError, TrainingInterrupted, WriteError


def _raise(message):
    raise ValueError(message)


# --- signals -------------------------------------------------------------------------------------------------------

def test_interrupted_status_is_130_for_ctrl_c_and_143_after_sigterm():
    """128 + the signal's number, as a shell reports it; entering the block again forgets an earlier SIGTERM."""
    with pytest.raises(KeyboardInterrupt):
        with signals.sigterm_as_interrupt():
            raise KeyboardInterrupt  # Ctrl-C
    assert signals.interrupted_status() == 128 + signal.SIGINT == 130
    with pytest.raises(KeyboardInterrupt, match="signal SIGTERM"):
        with signals.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
    assert signals.interrupted_status() == 128 + signal.SIGTERM == 143
    with signals.sigterm_as_interrupt():
        pass
    assert signals.interrupted_status() == 130


def test_sigterm_as_interrupt_outside_the_main_thread_changes_nothing():
    """Python installs handlers in the main thread only: elsewhere the block runs as it is, without an error."""
    seen = []

    def worker():
        with signals.sigterm_as_interrupt():
            seen.append(signal.getsignal(signal.SIGTERM))
        seen.append("after")

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before, "after"]


def test_the_sigterm_handler_is_only_set_for_sigterm():
    """Ctrl-C's own handler is not replaced inside the block."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with signals.sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGINT) == before[0] and signal.getsignal(signal.SIGTERM) != before[1]


# --- determinism ---------------------------------------------------------------------------------------------------

@pytest.fixture
def determinism_mode():
    """Restore torch's deterministic mode and CUBLAS_WORKSPACE_CONFIG after a test that changes them."""
    mode = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    torch.use_deterministic_algorithms(mode[0], warn_only=mode[1])
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    if env is not None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = env


def _mode():
    return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()


def test_deterministic_block_warns_only_and_restores_the_mode(determinism_mode, monkeypatch):
    """Enabled: warn-only deterministic mode inside, the caller's mode after; CUBLAS_WORKSPACE_CONFIG set for the
    block to torch's documented ``:4096:8`` and removed after it."""
    from recbole_hnlm.determinism import deterministic_algorithms

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.use_deterministic_algorithms(False)
    with deterministic_algorithms(True):
        assert _mode() == (True, True)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert _mode() == (False, False) and "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_deterministic_block_keeps_a_strict_caller_strict_and_a_user_cublas_setting(determinism_mode, monkeypatch):
    from recbole_hnlm.determinism import deterministic_algorithms

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    torch.use_deterministic_algorithms(True, warn_only=False)
    with deterministic_algorithms(True):
        assert _mode() == (True, False)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert _mode() == (True, False) and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_deterministic_block_restores_the_mode_after_an_error(determinism_mode):
    from recbole_hnlm.determinism import deterministic_algorithms

    torch.use_deterministic_algorithms(True, warn_only=True)
    with pytest.raises(RuntimeError, match="inside"):
        with deterministic_algorithms(True):
            torch.use_deterministic_algorithms(False)
            raise RuntimeError("inside")
    assert _mode() == (True, True)


@pytest.mark.parametrize("value", [1, 0, "True", None])
def test_deterministic_option_must_be_a_bool(value, determinism_mode):
    """1 and "True" are refused as ConfigError naming the option (no silent truthiness)."""
    from recbole_hnlm.determinism import deterministic_algorithms

    with pytest.raises(ConfigError, match="'use_deterministic_algorithms' must be True or False"):
        with deterministic_algorithms(value):
            pass


def test_a_disabled_block_runs_under_the_callers_mode(determinism_mode, monkeypatch):
    from recbole_hnlm.determinism import deterministic_algorithms

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    for mode in ((False, False), (True, False)):
        torch.use_deterministic_algorithms(mode[0], warn_only=mode[1])
        with deterministic_algorithms(False):
            assert _mode() == mode and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        assert _mode() == mode


# --- rng_state -----------------------------------------------------------------------------------------------------

def test_rng_snapshot_layout():
    """Tensors are CPU uint8/int64 (safetensors); the metadata is JSON-able and names the extra generators."""
    import json

    from recbole_hnlm.rng_state import capture_rng_state

    tensors, meta = capture_rng_state({"b": torch.Generator(), "a": torch.Generator()})
    assert {tensor.dtype for tensor in tensors.values()} <= {torch.uint8, torch.int64}
    assert all(tensor.device.type == "cpu" for tensor in tensors.values())
    assert meta["generators"] == ["a", "b"] and {"generator.a", "generator.b"} <= set(tensors)
    assert json.loads(json.dumps(meta)) == meta
    assert tensors["python"].tolist() == list(random.getstate()[1])
    assert tensors["numpy"].tolist() == np.random.get_state(legacy=True)[1].tolist()


def test_rng_restore_puts_back_numpy_position_and_cached_normal():
    """NumPy's position in its key block and its cached second normal are part of the state."""
    from recbole_hnlm.rng_state import capture_rng_state, restore_rng_state

    np.random.seed(3)
    np.random.rand(7)
    np.random.normal()  # leaves a cached normal
    tensors, meta = capture_rng_state()
    expected = np.random.normal(), np.random.rand(700).tolist()
    np.random.seed(4)
    restore_rng_state(tensors, meta)
    assert (np.random.normal(), np.random.rand(700).tolist()) == expected


def test_rng_restore_error_lists_the_captured_generators():
    from recbole_hnlm.rng_state import capture_rng_state, restore_rng_state

    tensors, meta = capture_rng_state({"train_data": torch.Generator()})
    with pytest.raises(ValueError, match=r"no generator 'valid'.*\['train_data'\]"):
        restore_rng_state(tensors, meta, {"valid": torch.Generator()})


def test_rng_restore_reads_a_snapshot_without_a_cuda_count():
    """A metadata dict without ``cuda_devices`` (no CUDA state captured) restores the CPU streams."""
    from recbole_hnlm.rng_state import capture_rng_state, restore_rng_state

    tensors, meta = capture_rng_state()
    expected = torch.rand(4).tolist()
    meta = {key: value for key, value in meta.items() if key != "cuda_devices"}
    restore_rng_state(tensors, meta)
    assert torch.rand(4).tolist() == expected


# --- compat --------------------------------------------------------------------------------------------------------

def test_numpy_aliases_are_the_documented_types_and_existing_names_are_kept(monkeypatch):
    from recbole_hnlm.compat import _NUMPY_ALIASES, install_numpy_aliases

    for name in _NUMPY_ALIASES:
        monkeypatch.delattr(np, name, raising=False)
    sentinel = object()
    monkeypatch.setattr(np, "str", sentinel, raising=False)  # a name numpy defines is left as it is
    install_numpy_aliases()
    install_numpy_aliases()
    assert np.str is sentinel
    assert np.float is np.float64 and np.bool is np.bool_ and np.complex is np.complex128 and np.object is np.object_
    assert np.int is np.int_ and np.long is np.int_ and np.unicode is np.str_
    assert np.array([1.5], dtype=np.float).dtype == np.float64


def _collector():
    from recbole_hnlm.compat import EvalCollector

    return EvalCollector({"metrics": ["Recall", "ItemCoverage", "GiniIndex"], "eval_args": {"mode": "full"},
                          "topk": [2], "device": "cpu"})


def test_eval_collector_returns_a_copy_and_keeps_only_the_training_data_resources():
    """The item count (an int) and the counter are returned as they are; the per-evaluation resources are reset."""
    collector = _collector()
    counts = collections.Counter({1: 3, 2: 1})
    per_evaluation = {"rec.topk": torch.ones(2, 3), "rec.items": torch.tensor([[1, 2]]),
                      "rec.score": torch.rand(2, 3), "rec.meanrank": torch.ones(2, 3), "data.label": torch.ones(2)}
    collector.data_struct.set("data.num_items", 5)
    collector.data_struct.set("data.count_items", counts)
    for key, value in per_evaluation.items():
        collector.data_struct.set(key, value)
    returned = collector.get_data_struct()
    assert returned.get("data.num_items") == 5 and returned.get("data.count_items") == counts
    for key, value in per_evaluation.items():
        assert torch.equal(returned.get(key), value)
    assert set(collector.data_struct._data_dict) == {"data.num_items", "data.count_items"}
    returned.get("data.count_items")[9] = 1
    assert 9 not in collector.data_struct.get("data.count_items")  # a deep copy


# --- utils ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [("lightgcn", "LightGCN"), ("SgL", "SGL"), ("ngcf", "NGCF"), ("mf", "MF")])
def test_plugin_backbones_are_found_case_insensitively(name, expected):
    from recbole_hnlm.utils import get_model

    model = get_model(name)
    assert model.__name__ == expected and model.__module__ == f"recbole_hnlm.model.{expected.lower()}"


@pytest.mark.parametrize("name, expected", [("bpr", "BPR"), ("NeuMF", "NeuMF"), ("enmf", "ENMF")])
def test_recbole_general_recommenders_are_found_case_insensitively(name, expected):
    from recbole_hnlm.utils import get_model

    model = get_model(name)
    assert model.__name__ == expected and model.__module__.startswith("recbole.model.general_recommender.")


@pytest.mark.parametrize("name", ["foo.bar", ".x", "..", "GRU4Rec", ""])
def test_other_model_names_are_config_errors_listing_the_backbones(name):
    from recbole_hnlm.utils import get_model

    with pytest.raises(ConfigError, match=r"Unknown model.*MF, NGCF, LightGCN, SGL.*--sampler=RNS"):
        get_model(name)
    with pytest.raises(ConfigError, match=r"also runs with --samplers RNS"):
        get_model(name, {"model": "--models ", "sampler": "--samplers "})


def test_samplers_are_found_case_insensitively_and_unknown_ones_listed():
    from recbole_hnlm.sampler import SAMPLERS
    from recbole_hnlm.utils import get_sampler

    for name, sampler in SAMPLERS.items():
        assert get_sampler(name.lower()) is sampler and get_sampler(name.upper()) is sampler
    with pytest.raises(ConfigError, match=r"Unknown sampler 'XNS'\. Valid samplers: " + ", ".join(SAMPLERS) + r"\."):
        get_sampler("XNS")


def test_model_sampler_pairs():
    """Plugin backbones take any sampler; RecBole's general models RNS only; non-general models are refused."""
    from recbole.model.general_recommender import BPR
    from recbole.model.sequential_recommender import GRU4Rec

    from recbole_hnlm.sampler import SAMPLERS
    from recbole_hnlm.utils import check_model_sampler_pair, get_model

    for model in ("MF", "LightGCN"):
        for sampler in SAMPLERS.values():
            check_model_sampler_pair(get_model(model), sampler)
    check_model_sampler_pair(BPR, SAMPLERS["RNS"])
    for name in ("DNS", "MixGCF", "HNLMRec"):
        with pytest.raises(ConfigError, match=rf"Sampler {name} needs .*RecBole's BPR .*--models <one of MF, NGCF"):
            check_model_sampler_pair(BPR, SAMPLERS[name], {"model": "--models ", "sampler": "--samplers "})
    assert GRU4Rec.type == ModelType.SEQUENTIAL
    with pytest.raises(ConfigError, match=r"general .*GRU4Rec is ModelType\.SEQUENTIAL\.$"):
        check_model_sampler_pair(GRU4Rec, SAMPLERS["RNS"])


@pytest.mark.parametrize("name", ["Pop", "ItemKNN", "EASE"])
def test_recbole_models_of_the_general_folder_without_training_loop_are_refused_with_the_reason(name):
    """Pop, ItemKNN, EASE ... live among RecBole's general recommenders, which get_model's error said run with RNS;
    the refusal said only "... is ModelType.TRADITIONAL" (now: the models the plugin runs, and what to do)."""
    from recbole_hnlm.sampler import SAMPLERS
    from recbole_hnlm.utils import check_model_sampler_pair, get_model

    model = get_model(name)
    assert model.type == ModelType.TRADITIONAL
    with pytest.raises(ConfigError, match=rf"trained by gradient \(ModelType\.GENERAL\); {name} is "
                       r"ModelType\.TRADITIONAL \(fitted without a training loop\), which the plugin does not run\. "
                       r"RecBole's own runner needs ray and torch < 2\.6 .*docs/install\.md"):
        check_model_sampler_pair(model, SAMPLERS["RNS"])


def test_private_names_are_not_looked_up_among_recboles_modules():
    """``__init__`` imported RecBole's general_recommender/__init__.py a second time, as a module of that name,
    before the error."""
    import sys

    from recbole_hnlm.utils import get_model

    with pytest.raises(ConfigError, match="Unknown model '__init__'"):
        get_model("__init__")
    assert "recbole.model.general_recommender.__init__" not in sys.modules


def test_get_trainer_wraps_recbole_trainers_in_the_safetensors_trainer():
    from recbole.trainer import Trainer

    from recbole_hnlm.utils import get_trainer

    trainer = get_trainer(ModelType.GENERAL, "BPR")
    assert issubclass(trainer, Trainer) and trainer is not Trainer and trainer.__module__.startswith("recbole_hnlm")


# --- errors --------------------------------------------------------------------------------------------------------

def test_error_classes_keep_their_builtin_bases():
    """Callers catch ValueError/OSError/RuntimeError/KeyboardInterrupt: the plugin's errors are those."""
    assert issubclass(ConfigError, ValueError) and issubclass(DataError, ValueError)
    assert issubclass(ConcurrentWriterError, RuntimeError) and issubclass(WriteError, OSError)
    assert issubclass(TrainingInterrupted, KeyboardInterrupt)


def test_write_error_message_is_its_first_argument():
    assert str(WriteError("cannot write /x: the earlier version is unchanged")) == \
        "cannot write /x: the earlier version is unchanged"
    assert str(WriteError("a", "b")) == "a" and str(WriteError()) == ""


def test_training_interrupted_carries_the_resume_file():
    error = TrainingInterrupted("/runs/x.safetensors", best_only=True, why="resume_state=False")
    assert error.args == ("/runs/x.safetensors",) and error.resume_file == "/runs/x.safetensors"
    assert error.best_only is True and error.why == "resume_state=False"
    plain = TrainingInterrupted("/r")
    assert plain.best_only is False and plain.why == ""


# --- log_output ----------------------------------------------------------------------------------------------------

def _colored_handler(stream):
    handler = logging.StreamHandler(stream)
    handler.setFormatter(colorlog.ColoredFormatter("%(log_color)s%(message)s", "%H:%M"))
    return handler


def test_plain_when_redirected_defaults_to_the_root_logger():
    from recbole_hnlm.log_output import PLAIN_FORMAT, plain_when_redirected

    handler = _colored_handler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        plain_when_redirected()
    finally:
        root.removeHandler(handler)
    assert type(handler.formatter) is logging.Formatter and handler.formatter._fmt == PLAIN_FORMAT
    assert handler.formatter.datefmt == "%H:%M"
    assert [type(f) for f in handler.filters] == [RemoveColorFilter]


def test_plain_format_is_recboles_console_line_without_colour():
    from recbole_hnlm.log_output import PLAIN_FORMAT

    assert PLAIN_FORMAT == "%(asctime)-15s %(levelname)s  %(message)s"


def test_a_plain_formatter_is_kept_and_a_truthy_isatty_counts_as_a_terminal():
    from recbole_hnlm.log_output import _is_terminal, plain_when_redirected

    logger = logging.getLogger("test_utility_checks.plain")
    logger.propagate = False
    handler = logging.StreamHandler(io.StringIO())
    formatter = logging.Formatter("%(name)s: %(message)s")
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    try:
        plain_when_redirected(logger)
    finally:
        logger.removeHandler(handler)
    assert handler.formatter is formatter and len(handler.filters) == 1

    class Tty(io.StringIO):
        def isatty(self):
            return 1

    assert _is_terminal(Tty()) is True


# --- cli_settings --------------------------------------------------------------------------------------------------

def test_parser_flags_lists_long_options_only():
    parser = argparse.ArgumentParser()
    parser.add_argument("-k", "--keep_seen", action="store_true")
    parser.add_argument("--out")
    parser.add_argument("users")
    assert parser_flags(parser) == ["--help", "--keep_seen", "--out"]


def test_value_words_are_case_insensitive_and_values_may_hold_equals_signs():
    assert parse_value("TRUE") is True and parse_value("False") is False and parse_value("NONE") is None
    assert parse_value("[1, 'a']") == [1, "a"] and parse_value("1e-3") == 0.001
    assert parse_settings(["--query=a=b", "--n=07"], _raise) == {"query": "a=b", "n": "07"}


def test_values_too_deep_for_the_parser_stay_text():
    """A long sum overflows the AST builder's recursion (RecursionError), a long chain of signs its memory
    (MemoryError): both are text, not a traceback."""
    for text in ("+".join(["1"] * 100000), "-" * 100000 + "1"):
        assert parse_value(text) == text


def test_a_single_dash_setting_is_refused():
    with pytest.raises(ValueError, match=r"'-epochs=3': settings are written --key=value"):
        parse_settings(["-epochs=3"], _raise)


def test_a_setting_without_a_key_is_refused():
    """``--=5`` names no option: it was taken as the setting ``{"": 5}``."""
    with pytest.raises(ValueError, match=r"'--=5': settings are written --key=value"):
        parse_settings(["--=5"], _raise, flags=["--out"])


def test_the_error_hint_is_appended():
    with pytest.raises(ValueError, match=r"settings are written --key=value \(see --help\)$"):
        parse_settings(["epochs"], _raise, hint=" (see --help)")


def test_suggestions_only_for_close_flags():
    """``--usrs``/``--users`` (ratio 0.83) is suggested; ``--us`` (0.62) and ``--dataset``/``--users`` are not."""
    flags = ["--users", "--out"]
    with pytest.raises(ValueError, match="did you mean --users"):
        parse_settings(["--usrs"], _raise, flags=flags)
    for item in ("--us", "--dataset"):
        with pytest.raises(ValueError, match="settings are written --key=value"):
            parse_settings([item], _raise, flags=flags)


def test_a_dashed_flag_with_a_value_but_no_equals_is_suggested_underscored():
    """Dashes become underscores before the comparison: ``--a-b-c-d`` is 0.67 close to ``--a_b_c_d`` as written."""
    with pytest.raises(ValueError, match="did you mean --a_b_c_d"):
        parse_settings(["--a-b-c-d"], _raise, flags=["--a_b_c_d"])


def test_flags_may_be_any_iterable():
    with pytest.raises(ValueError, match=r"did you mean --max_evals=1\?"):
        parse_settings(["--max-evals=1"], _raise, flags=iter(["--max_evals"]))


# --- llm/throughput ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, words", [
    (0, "less than a minute"), (29.9, "less than a minute"), (30, "about 1 minute"), (60, "about 1 minute"),
    (89, "about 1 minute"), (90, "about 2 minutes"), (3600, "about 60 minutes"), (5399, "about 90 minutes"),
    (5400, "about 2 hours"), (9360, "about 3 hours"), (86400, "about 24 hours"), (129600, "about 2 days")])
def test_rough_duration_boundaries(seconds, words):
    """Under 30 s: less than a minute; a unit is used from 1.5 of it on, rounded to the nearest count; 1 is
    singular."""
    from recbole_hnlm.llm.throughput import rough_duration

    assert rough_duration(seconds) == words


def test_busy_machine_hint_edges():
    from recbole_hnlm.llm.throughput import busy_machine_hint

    assert busy_machine_hint(0, 9.0, 2) is None and busy_machine_hint(4, 9.0, 0) is None
    assert "load average 3.0 on 2 cores" in busy_machine_hint(2, 2.96, 2)


def test_machine_load_and_cores(monkeypatch):
    from recbole_hnlm.llm import throughput

    assert throughput.usable_cores() == len(os.sched_getaffinity(0))
    allowed = os.sched_getaffinity(0)
    if len(allowed) > 1:  # a process pinned to one core of several has one usable core
        os.sched_setaffinity(0, {min(allowed)})
        try:
            assert throughput.usable_cores() == 1
        finally:
            os.sched_setaffinity(0, allowed)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.25, 2.5, 3.75))
    assert throughput.machine_load() == 1.25

    def unavailable():
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert throughput.machine_load() is None
    monkeypatch.delattr(os, "sched_getaffinity")
    assert throughput.usable_cores() == os.cpu_count()
