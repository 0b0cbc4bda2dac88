"""A RecBole user's own Python workflow around the plugin: model classes given to ``Config``, RecBole's ``Config``
with a plugin backbone, models of the user's own with the plugin's samplers (found by the RecBole-API QA helper)."""
import os
import re

import pytest
import recbole
import yaml
from torch import nn

from recbole_hnlm.config import PROPERTIES_DIR, Config
from recbole_hnlm.errors import ConfigError
from recbole_hnlm.model.abstract import SampledRecommender, mean_pool
from recbole_hnlm.sampler.base import Propagation


def _yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=Config._build_yaml_loader(None))  # RecBole's loader: 1e-05 is a float


class MyMF(SampledRecommender):
    """A user's matrix factorisation on the plugin's base class: the same layers, in the same order, as the
    plugin's MF."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

    def propagate(self, with_layers):
        user, item = self.user_embedding.weight, self.item_embedding.weight
        emb = Propagation(user_ego=user, item_ego=item, user=user, item=item, pool=mean_pool)
        if with_layers:
            emb.user_layers, emb.item_layers = user.unsqueeze(1), item.unsqueeze(1)
        return emb


@pytest.mark.parametrize("name, keys", [("LightGCN", ("n_layers", "reg_weight")), ("NGCF", ("message_dropout",)),
                                        ("SGL", ("reg_weight",))])
def test_a_recbole_model_class_keeps_recbole_defaults(fast_config, name, keys):
    """RecBole's own LightGCN/NGCF/SGL class given to the plugin's Config took the plugin's backbone yaml of the same
    name (LightGCN: n_layers 3, reg_weight 1e-4 instead of RecBole's 2 and 1e-5); the plugin's backbone by name
    still takes the plugin's."""
    from recbole.utils import get_model as recbole_get_model

    recbole_defaults = _yaml(os.path.join(os.path.dirname(recbole.__file__), "properties", "model", f"{name}.yaml"))
    plugin_defaults = _yaml(os.path.join(PROPERTIES_DIR, "model", f"{name}.yaml"))
    assert any(recbole_defaults[key] != plugin_defaults[key] for key in keys)  # the case this test is about
    theirs = Config(model=recbole_get_model(name), config_dict=dict(fast_config), command_line=False)
    ours = Config(model=name, config_dict=dict(fast_config), command_line=False)
    assert {key: theirs[key] for key in keys} == {key: recbole_defaults[key] for key in keys}
    assert {key: ours[key] for key in keys} == {key: plugin_defaults[key] for key in keys}


def test_a_plugin_backbone_under_recbole_config_is_refused_by_name(fast_config, monkeypatch):
    """RecBole's own Config loads none of the plugin's property files: building the plugin's LightGCN from it
    failed with ``TypeError: '>' not supported between 'NoneType' and 'int'`` inside the sampler."""
    from recbole.config import Config as RecBoleConfig
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.model.lightgcn import LightGCN

    monkeypatch.setattr("sys.argv", ["prog"])
    config = RecBoleConfig(model=LightGCN, config_dict={**fast_config, "sampler": "DNS"})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    with pytest.raises(ConfigError, match=r"recbole_hnlm\.config\.Config"):
        LightGCN(config, train_data._dataset)


def test_a_model_of_the_users_own_without_its_options_is_refused_at_config(fast_config):
    """A model of the user's own has no property file: its embedding_size and reg_weight were None, and the run
    failed inside torch after the data had loaded. The config says so; given, they are taken."""
    with pytest.raises(ConfigError, match="'embedding_size', 'reg_weight' of MyMF are not set"):
        Config(model=MyMF, config_dict=dict(fast_config), command_line=False)
    given = {"embedding_size": 8, "reg_weight": 1e-3}
    config = Config(model=MyMF, config_dict={**fast_config, **given}, command_line=False)
    assert {key: config[key] for key in given} == given


def test_a_subclass_keeps_its_bases_defaults(fast_config):
    """A subclass has no property file of its own: it takes its bases' (the plugin's LightGCN yaml over RecBole's for
    a plugin backbone, RecBole's alone for RecBole's class), its own settings still winning. Both had none, and the
    plugin's subclass was refused for a missing n_layers."""
    from recbole.model.general_recommender import LightGCN as RecBoleLightGCN

    from recbole_hnlm.model.lightgcn import LightGCN

    class MyLightGCN(LightGCN):
        pass

    class TheirLightGCN(RecBoleLightGCN):
        pass

    keys = ("embedding_size", "n_layers", "reg_weight", "layers_dtype", "require_pow")
    for subclass, base in ((MyLightGCN, "LightGCN"), (TheirLightGCN, RecBoleLightGCN)):
        mine = Config(model=subclass, config_dict=dict(fast_config), command_line=False)
        theirs = Config(model=base, config_dict=dict(fast_config), command_line=False)
        assert {key: mine[key] for key in keys} == {key: theirs[key] for key in keys}
    assert Config(model=MyLightGCN, config_dict=dict(fast_config), command_line=False)["n_layers"] == 3
    assert Config(model=TheirLightGCN, config_dict=dict(fast_config), command_line=False)["n_layers"] == 2
    assert Config(model=MyLightGCN, config_dict={**fast_config, "n_layers": 1}, command_line=False)["n_layers"] == 1


def test_a_score_only_model_of_the_users_own_is_told_about_sampled_recommender(fast_config):
    """A hard sampler with a model of the user's own that is not a SampledRecommender: the message called it
    "RecBole's MyBPR" and did not say how to give the sampler embeddings."""
    from recbole.model.general_recommender import BPR

    class MyBPR(BPR):
        pass

    with pytest.raises(ConfigError) as refused:
        Config(model=MyBPR, config_dict={**fast_config, "sampler": "DNS"}, command_line=False)
    assert "RecBole's MyBPR" not in str(refused.value) and "SampledRecommender" in str(refused.value)
    with pytest.raises(ConfigError, match="RecBole's BPR only exposes scores"):  # RecBole's own model: as before
        Config(model=BPR, config_dict={**fast_config, "sampler": "DNS"}, command_line=False)


def test_run_recbole_hnlm_trains_a_model_class_of_the_users_own(fast_config, monkeypatch):
    """``run_recbole_hnlm(model=<class>)``: Config took the class, then the run looked its name up and stopped with
    "Unknown model 'MyMF'" after the data had loaded. A copy of MF trains with DNS exactly as MF does."""
    from recbole_hnlm.quick_start import run_recbole_hnlm

    monkeypatch.setattr("sys.argv", ["prog"])
    settings = {**fast_config, "epochs": 1, "sampler": "DNS", "dns_candidates": 8, "embedding_size": 8,
                "reg_weight": 1e-4}
    mine = run_recbole_hnlm(model=MyMF, config_dict=settings)
    theirs = run_recbole_hnlm(model="MF", config_dict=settings)
    assert mine["model"] == "MyMF" and os.path.basename(mine["checkpoint"]).startswith("MyMF-")
    assert mine["test_result"] == theirs["test_result"] and mine["best_valid_score"] == theirs["best_valid_score"]


def test_a_model_of_the_users_own_resumes_warm_starts_and_evaluates(fast_config, monkeypatch):
    """``resume_from``, ``init_from`` and ``eval_only`` with a model class of the user's own: each looked the class up
    by its name ("Unknown model 'MyMF'"). The resumed run ends where a straight run does; ``eval_only`` gives the
    checkpoint's own test result."""
    from recbole_hnlm.quick_start import run_recbole_hnlm

    monkeypatch.setattr("sys.argv", ["prog"])
    settings = {**fast_config, "sampler": "DNS", "dns_candidates": 8, "embedding_size": 8, "reg_weight": 1e-4,
                "stopping_step": 100}
    straight = run_recbole_hnlm(model=MyMF, config_dict={**settings, "epochs": 2})
    first = run_recbole_hnlm(model=MyMF, config_dict={**settings, "epochs": 1})
    resumed = run_recbole_hnlm(model=MyMF, config_dict={**settings, "epochs": 2, "resume_from": first["resume_state"]})
    assert resumed["test_result"] == straight["test_result"]
    assert resumed["best_valid_score"] == straight["best_valid_score"]
    evaluated = run_recbole_hnlm(model=MyMF, config_dict={**settings, "eval_only": True,
                                                          "init_from": straight["checkpoint"]})
    assert evaluated["test_result"] == straight["test_result"]
    warm = run_recbole_hnlm(model=MyMF, config_dict={**settings, "epochs": 1, "init_from": first["checkpoint"]})
    assert warm["model"] == "MyMF" and warm["test_result"] != first["test_result"]  # trained on from its weights


def test_a_users_model_is_warned_about_sampler_options_only(fast_config):
    """A model of the user's own has no property file, so what it reads is unknown: its ``embedding_size`` and
    ``reg_weight`` (asked for by the config check) were warned "ignored: an option of the LightGCN/MF/NGCF/SGL
    model". Another sampler's option is still named; the shipped MF still has ``n_layers`` named."""
    settings = {**fast_config, "sampler": "DNS", "embedding_size": 8, "reg_weight": 1e-4, "n_layers": 2,
                "ahns_beta": 0.1}
    mine = Config(model=MyMF, config_dict=dict(settings), command_line=False)
    assert [key for key, _ in mine.foreign_options] == ["ahns_beta"]
    shipped = Config(model="MF", config_dict=dict(settings), command_line=False)
    assert sorted(key for key, _ in shipped.foreign_options) == ["ahns_beta", "n_layers"]


def test_load_data_and_model_takes_the_class_of_a_users_model(fast_config, monkeypatch):
    """A checkpoint of a model of the user's own stores only its name: ``model_class`` rebuilds it (without it,
    the name is unknown and says so); another class than the checkpoint's is refused, naming the stored model."""
    from recbole_hnlm.checkpoint import read_model_weights
    from recbole_hnlm.load import load_data_and_model
    from recbole_hnlm.quick_start import run_recbole_hnlm

    class OtherMF(MyMF):
        pass

    monkeypatch.setattr("sys.argv", ["prog"])
    settings = {**fast_config, "epochs": 1, "embedding_size": 8, "reg_weight": 1e-4}
    run = run_recbole_hnlm(model=MyMF, config_dict=settings)
    config, model, *_ = load_data_and_model(run["checkpoint"], model_class=MyMF)
    assert type(model) is MyMF and config["model"] == "MyMF"
    _, stored = read_model_weights(run["checkpoint"])
    assert stored and all(stored[key].equal(value) for key, value in model.state_dict().items())
    with pytest.raises(ConfigError, match="Unknown model 'MyMF'"):
        load_data_and_model(run["checkpoint"])
    with pytest.raises(ConfigError, match="the checkpoint holds model=MyMF"):
        load_data_and_model(run["checkpoint"], model_class=OtherMF)


def test_a_backbone_option_set_to_none_names_the_default_its_lineage_gives(fast_config):
    """``--reg_weight=None`` (or a searched None) on a shipped backbone, or on a subclass of one, names the default
    of the plugin's property file the class takes it from; a model of the user's own has none to name."""
    from recbole_hnlm.model.lightgcn import LightGCN

    class MyLightGCN(LightGCN):
        pass

    with open(os.path.join(PROPERTIES_DIR, "model", "LightGCN.yaml"), encoding="utf-8") as f:
        written = yaml.safe_load(f)  # the value as the file writes it (1e-4 is a string to safe_load)
    for model in ("LightGCN", MyLightGCN):
        name = getattr(model, "__name__", model)
        for key in ("n_layers", "reg_weight"):
            with pytest.raises(ConfigError, match=re.escape(f"Option '{key}' of the {name} model needs a value (its "
                                                            f"default is {written[key]}), got None.")):
                Config(model=model, config_dict={**fast_config, key: None}, command_line=False)
    with pytest.raises(ConfigError, match="'reg_weight' of MyMF are not set"):
        Config(model=MyMF, config_dict={**fast_config, "embedding_size": 8, "reg_weight": None}, command_line=False)
