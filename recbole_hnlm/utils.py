"""Name-based discovery of models, samplers and trainers: the plugin first, then RecBole."""
import importlib
import importlib.util

from recbole.utils import ModelType
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_hnlm.errors import ConfigError

#: Backbones shipped by the plugin (they shadow RecBole's models of the same name).
PLUGIN_MODELS = ("MF", "NGCF", "LightGCN", "SGL")
#: How hints spell the model and sampler options: the run script's by default; another command line passes its own
#: (the benchmark's ``--models NAME``).
RUN_SCRIPT_OPTIONS = {"model": "--model=", "sampler": "--sampler="}


def get_model(model_name, options=RUN_SCRIPT_OPTIONS):
    """Return the model class for ``model_name``: a plugin backbone, else a RecBole general recommender.
    ``options`` spells the options named in the error (see :data:`RUN_SCRIPT_OPTIONS`).

    Raises:
        ValueError: the name is neither; the message lists the valid names.
    """
    for name in PLUGIN_MODELS:
        if name.lower() == str(model_name).lower():
            module = importlib.import_module(f"recbole_hnlm.model.{name.lower()}")
            return getattr(module, name)
    module_name = f"recbole.model.general_recommender.{str(model_name).lower()}"
    spec = None
    if not str(model_name).startswith("_"):  # "__init__" would import the package's __init__.py again, as a module
        try:  # a dotted name ("foo.bar", ".x") looks for a parent package that is not there
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            pass
    if spec is not None:
        module = importlib.import_module(module_name)
        for name in dir(module):
            if name.lower() == str(model_name).lower():
                return getattr(module, name)
    raise ConfigError(
        f"Unknown model '{model_name}'. recbole_hnlm backbones: {', '.join(PLUGIN_MODELS)}; "
        f"any RecBole general recommender trained by gradient (ModelType.GENERAL, e.g. BPR, NeuMF, ENMF) also runs "
        f"with {options['sampler']}RNS."
    )


def model_class_of(config):
    """The run's model class: the one ``Config`` resolved (a class given as ``model``, e.g. a model of the user's own,
    which :func:`get_model` cannot find by its name), else the one its name gives."""
    model_class = getattr(config, "model_class", None)
    return model_class if isinstance(model_class, type) else get_model(config["model"])


def get_sampler(sampler_name):
    """Return the sampler class registered under ``sampler_name`` (case-insensitive)."""
    from recbole_hnlm.sampler import SAMPLERS

    for name, sampler_class in SAMPLERS.items():
        if name.lower() == str(sampler_name).lower():
            return sampler_class
    raise ConfigError(f"Unknown sampler '{sampler_name}'. Valid samplers: {', '.join(SAMPLERS)}.")


def check_model_sampler_pair(model_class, sampler_class, options=RUN_SCRIPT_OPTIONS):
    """Reject a sampler that cannot work with the chosen backbone, saying why (``options`` as in :func:`get_model`)."""
    from recbole_hnlm.model.abstract import SampledRecommender

    if issubclass(model_class, SampledRecommender):
        return
    if sampler_class.name != "RNS":
        recboles = model_class.__module__.startswith("recbole.")  # RecBole's own, or a model of the user's own
        raise ConfigError(
            f"Sampler {sampler_class.name} needs the propagated user/item embeddings of a recbole_hnlm backbone "
            f"({', '.join(PLUGIN_MODELS)}); "
            + (f"RecBole's {model_class.__name__}" if recboles else
               f"{model_class.__name__} (not a recbole_hnlm backbone)")
            + f" only exposes scores. Use {options['model']}<one of {', '.join(PLUGIN_MODELS)}> or "
            f"{options['sampler']}RNS"
            + ("" if recboles else
               ", or write the model as a subclass of recbole_hnlm.model.abstract.SampledRecommender (its "
               "propagate() gives the samplers the embeddings, as recbole_hnlm/model/mf.py does)") + "."
        )
    if model_class.type != ModelType.GENERAL:
        raise ConfigError(f"recbole_hnlm runs general (user-item) recommenders trained by gradient "
                          f"(ModelType.GENERAL); {model_class.__name__} is {model_class.type}"
                          + (" (fitted without a training loop), which the plugin does not run. RecBole's own runner "
                             "needs ray and torch < 2.6 (pickled checkpoints), which this install leaves out "
                             "(docs/install.md)"
                             + (", and RecBole 1.2.1's Pop counts an item once per training batch "
                                "(RUCAIBox/RecBole#2198): its ranking is no popularity baseline."
                                if model_class.__name__ == "Pop" else ".")
                             if model_class.type == ModelType.TRADITIONAL else "."))


def get_trainer(model_type, model_name):
    """Return a trainer class whose checkpoints are safetensors files (no pickle), for any RecBole model."""
    from recbole_hnlm.trainer import make_safe_trainer

    return make_safe_trainer(recbole_get_trainer(model_type, model_name))
