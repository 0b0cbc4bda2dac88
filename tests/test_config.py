"""Property-file layering, name resolution and start-up validation."""
import pytest

from recbole_hnlm.config import Config
from recbole_hnlm.errors import ConfigError


def make(fast_config, **overrides):
    return Config(config_dict={**fast_config, **overrides})


def test_sampler_yaml_is_loaded_and_overridable(fast_config):
    config = make(fast_config, model="LightGCN", sampler="mixgcf")
    assert config["sampler"] == "MixGCF"  # canonical name
    assert config["mixgcf_candidates"] == 64  # properties/sampler/MixGCF.yaml
    assert config["n_layers"] == 3  # plugin LightGCN.yaml over RecBole's (2)
    assert config["reg_weight"] == 1e-4
    config = make(fast_config, model="LightGCN", sampler="MixGCF", mixgcf_candidates=8)
    assert config["mixgcf_candidates"] == 8


def test_dataset_yaml_sets_the_samplers_per_dataset_values(fast_config):
    """HNLMRec's eq. 7 lambda is 1e-2 for Toys in the authors' code (1e-4 elsewhere): the dataset file sets it."""
    toys = make(fast_config, model="LightGCN", sampler="HNLMRec", dataset="amazon-toys")
    assert toys["hnlm_lambda"] == 1e-2
    assert make(fast_config, model="LightGCN", sampler="HNLMRec", dataset="amazon-cds")["hnlm_lambda"] == 1e-4
    assert make(fast_config, model="LightGCN", sampler="HNLMRec", dataset="amazon-toys",
                hnlm_lambda=0.5)["hnlm_lambda"] == 0.5


@pytest.mark.parametrize("spelling,canonical", [("lightgcn", "LightGCN"), ("mf", "MF"), ("bpr", "BPR")])
def test_model_names_are_case_insensitive_and_load_their_property_files(fast_config, spelling, canonical):
    config = make(fast_config, model=spelling, sampler="RNS")
    assert config["model"] == canonical
    assert config["embedding_size"] == 64  # RecBole's model yaml (was None for a lower-case spelling)
    if canonical == "LightGCN":
        assert config["n_layers"] == 3  # the plugin's LightGCN.yaml


def test_evaluation_defaults(fast_config):
    config = make(fast_config, model="MF", sampler="RNS")
    assert config["topk"] == [10, 20]
    assert config["valid_metric"] == "NDCG@20"
    assert [m.lower() for m in config["metrics"]] == ["recall", "ndcg"]


# The defaults each property file takes from the methods' code, with their source (docs/algorithms.md; the departures
# its header lists are the HNLMRec ones marked "ours"). A changed default changes every run that does not set it,
# and every stored grid result then refuses to resume: it must be a deliberate edit of this table too.
PUBLISHED_DEFAULTS = [
    ("LightGCN", "DNS", {"dns_candidates": 32, "dns_topn": 1, "dns_variant": "single"}),  # §2.4, AHNS repo
    ("LightGCN", "MixGCF", {"mixgcf_candidates": 64}),  # §3, MixGCF's Yelp2018 n_negs
    ("LightGCN", "AHNS", {"ahns_candidates": 32, "ahns_alpha": 1.0, "ahns_beta": 0.1, "ahns_p": -2}),  # §4
    ("LightGCN", "HNLMRec", {"hnlm_lambda": 1e-4, "hnlm_cl_weight": 1e-3, "hnlm_cl_temperature": 0.2,  # §6.1
                             "hnlm_cl_in_batch": False, "hnlm_margin": None, "hnlm_frozen_adapter": False,
                             "hnlm_adapter_hidden": [512], "hnlm_missing": "error", "hnlm_h_norm": "item",  # ours
                             "hnlm_center": True, "hnlm_adapter_reg_weight": 0, "hnlm_detach_in_bpr": False}),
    ("LightGCN", "RNS", {"embedding_size": 64, "n_layers": 3, "reg_weight": 1e-4}),  # §0, LightGCN's code
    ("SGL", "RNS", {"type": "ED", "drop_ratio": 0.1, "ssl_tau": 0.5, "ssl_weight": 0.05}),  # RecBole's SGL
    ("NGCF", "RNS", {"reg_weight": 1e-5}),  # MixGCF's NGCF
]


@pytest.mark.parametrize("model,sampler,defaults", PUBLISHED_DEFAULTS)
def test_defaults_are_the_published_ones(fast_config, model, sampler, defaults):
    config = make(fast_config, model=model, sampler=sampler)
    assert {key: config[key] for key in defaults} == defaults


def test_config_file_then_command_line_precedence(fast_config, tmp_path, monkeypatch):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("sampler: DNS\ndns_candidates: 16\n")
    monkeypatch.setattr("sys.argv", ["prog", "--sampler=ahns", "--ahns_beta=0.2"])
    config = Config(model="LightGCN", config_file_list=[str(yaml_file)], config_dict=fast_config)
    assert config["sampler"] == "AHNS"
    assert config["ahns_beta"] == 0.2
    assert config["ahns_p"] == -2


def test_unknown_names_list_the_valid_ones(fast_config):
    with pytest.raises(ConfigError, match="MF, NGCF, LightGCN, SGL"):
        make(fast_config, model="NoSuchModel")
    with pytest.raises(ConfigError, match="RNS, DNS, MixGCF, AHNS, HNLMRec"):
        make(fast_config, model="LightGCN", sampler="nope")
    for dotted in ("foo.bar", ".x"):  # a ModuleNotFoundError traceback from importlib, for --model as for the teacher
        with pytest.raises(ConfigError, match="Unknown model"):
            make(fast_config, model=dotted, sampler="RNS")
        with pytest.raises(ConfigError, match="hnlm_teacher_model="):
            make(fast_config, model="LightGCN", sampler="HNLMRec", hnlm_teacher_model=dotted)


@pytest.mark.parametrize("key,value", [
    ("mixgcf_candidates", 0), ("dns_topn", 40), ("dns_variant", "best"), ("ahns_beta", -1.0), ("ahns_p", 0.5),
    ("dns_candidates", 2.5),
    # a bool is no number (True read as 1: --mixgcf_candidates=True trained with M = 1)
    ("mixgcf_candidates", True), ("dns_candidates", True), ("dns_topn", True), ("ahns_alpha", True),
    ("ahns_beta", True),
])
def test_bad_hyper_parameters_are_rejected(fast_config, key, value):
    sampler = key.split("_")[0]
    with pytest.raises(ConfigError, match=key):
        make(fast_config, model="LightGCN", sampler=sampler, **{key: value})


def test_recbole_model_without_layers_cannot_use_hard_samplers(fast_config):
    with pytest.raises(ConfigError, match="recbole_hnlm backbone"):
        make(fast_config, model="NeuMF", sampler="MixGCF")
    assert make(fast_config, model="BPR", sampler="RNS")["model"] == "BPR"


@pytest.mark.parametrize("model,key,value", [
    ("NGCF", "message_dropout", 1.5), ("NGCF", "message_dropout", -0.1), ("NGCF", "message_dropout", "x"),
    ("NGCF", "self_loop", "yes"), ("NGCF", "node_dropout", 1.0), ("NGCF", "node_dropout", -0.5),
    ("NGCF", "hidden_size_list", [64, -3]), ("NGCF", "hidden_size_list", "abc"), ("NGCF", "hidden_size_list", [64.5]),
    ("NGCF", "hidden_size_list", []),  # no layer: the run was MF's, without a word
    ("SGL", "ssl_weight", -1), ("SGL", "drop_ratio", "abc"), ("SGL", "drop_ratio", 1.0), ("SGL", "ssl_tau", 0),
    ("SGL", "type", "XX"), ("SGL", "layers_dtype", "float16"), ("LightGCN", "layers_dtype", "float16"),
])
def test_bad_backbone_options_are_rejected_before_the_dataset_loads(fast_config, model, key, value):
    """Config (which loads no data) names the option; before, these came after the dataset loaded, or as a raw
    traceback from torch (NGCF's dropout and layer sizes), or not at all (a negative ssl_weight)."""
    with pytest.raises(ConfigError, match=f"'{key}'"):
        make(fast_config, model=model, sampler="RNS", **{key: value})


@pytest.mark.parametrize("model,sampler,key", [
    ("MF", "RNS", "learning_rate"), ("MF", "RNS", "weight_decay"), ("MF", "RNS", "train_batch_size"),
    ("MF", "RNS", "reg_weight"), ("LightGCN", "RNS", "n_layers"), ("LightGCN", "RNS", "embedding_size"),
    ("MF", "DNS", "dns_candidates"), ("LightGCN", "MixGCF", "mixgcf_candidates"), ("MF", "AHNS", "ahns_beta"),
    ("MF", "DNS", "candidate_max_rounds"),
])
def test_an_option_every_run_reads_cannot_be_none(fast_config, model, sampler, key):
    """``--learning_rate=None`` or a searched ``None`` passed the checks (they skip unset options) and failed inside
    torch or the model once the data had loaded."""
    with pytest.raises(ConfigError, match=f"'{key}'.*None"):
        make(fast_config, model=model, sampler=sampler, **{key: None})


@pytest.mark.parametrize("value", [-5, -1, "abc", 2.5, True])
def test_candidate_rounds_must_be_a_count(fast_config, value):
    """A negative count left training positives among the candidates without a word; a string failed in int()
    once the data had loaded."""
    with pytest.raises(ConfigError, match="'candidate_max_rounds'"):
        make(fast_config, model="MF", sampler="DNS", candidate_max_rounds=value)
    assert make(fast_config, model="MF", sampler="DNS", candidate_max_rounds=0)["candidate_max_rounds"] == 0


def test_a_tilde_on_the_command_line_is_none_as_in_yaml(fast_config, monkeypatch):
    """The messages write ``~`` for None: ``--hnlm_margin=~`` was refused as "expected ~ (BPR, the paper) ...", and
    ``--hnlm_store_path=~`` would have written a store file named ``~``."""
    monkeypatch.setattr("sys.argv", ["prog", "--hnlm_margin=~", "--hnlm_store_path=~", "--split_seed=~",
                                     "--hnlm_cl_weight=0.5"])
    config = Config(model="LightGCN", dataset=fast_config["dataset"], config_dict=dict(fast_config, sampler="HNLMRec"))
    assert config["hnlm_margin"] is None and config["hnlm_store_path"] is None and config["split_seed"] is None
    assert config["hnlm_cl_weight"] == 0.5


def test_options_that_may_be_none_stay_accepted(fast_config):
    """None is their default (LLMConfig's fields, layers_dtype) or reads as False (HNLMRec's switches)."""
    config = make(fast_config, model="LightGCN", sampler="HNLMRec", hnlm_margin=None, hnlm_file=None, split_seed=None,
                  negative_warmup_epochs=None, layers_dtype=None, hnlm_max_pairs=None, hnlm_teacher_epochs=None,
                  hnlm_final_relu=None)
    assert config["hnlm_margin"] is None and config["split_seed"] is None and config["layers_dtype"] is None
    assert make(fast_config, model="MF", sampler="RNS")["n_layers"] is None  # MF reads no n_layers


@pytest.mark.parametrize("name", ["", " ", "ml-100k "])
def test_a_blank_dataset_name_is_refused(fast_config, name):
    with pytest.raises(ConfigError, match="Option 'dataset' must name a dataset"):
        make(fast_config, model="MF", sampler="RNS", dataset=name)


def test_backbone_option_bounds_are_accepted(fast_config):
    assert make(fast_config, model="NGCF", sampler="RNS", message_dropout=0, hidden_size_list=[32, 16])[
        "hidden_size_list"] == [32, 16]
    assert make(fast_config, model="SGL", sampler="RNS", ssl_weight=0, drop_ratio=0)["ssl_weight"] == 0
    with pytest.raises(ConfigError, match="equal to embedding_size"):
        make(fast_config, model="NGCF", sampler="MixGCF", hidden_size_list=[64, 32])


def test_one_config_file_may_be_given_alone_as_a_str_or_path(fast_config, tmp_path):
    """``config_file_list="a.yaml"`` was read as the files '/', 't', ... (RecBole iterates the string), and a
    ``pathlib.Path`` alone failed with "'PosixPath' object is not iterable"."""
    from recbole_hnlm.config import Config, read_config_files

    settings = tmp_path / "a.yaml"
    settings.write_text("epochs: 3\nlearning_rate: 0.5\n")
    for files in (str(settings), settings, [settings], (str(settings),)):
        config = Config(model="MF", config_file_list=files, config_dict=dict(fast_config), command_line=False)
        assert config["learning_rate"] == 0.5, files
        assert read_config_files(files) == {"epochs": 3, "learning_rate": 0.5}, files
