"""``Config``: RecBole's configurator with the plugin's property files layered on top.

Precedence, lowest to highest (RecBole's own rule, extended by one sampler layer):

1. RecBole's ``overall.yaml``, ``model/<Model>.yaml`` (after its bases' ``model/<Base>.yaml``: a subclass keeps
   its bases' defaults) and ``dataset/<dataset>.yaml``;
2. the plugin's ``properties/overall.yaml``;
3. the plugin's ``properties/model/<Model>.yaml`` of the model's bases and its own (for the plugin's backbones:
   RecBole's own ``LightGCN``, ``NGCF`` or ``SGL`` class keeps RecBole's model defaults);
4. the plugin's ``properties/sampler/<Sampler>.yaml`` (sampler chosen by the ``sampler`` key);
5. the plugin's ``properties/dataset/<dataset>.yaml``;
6. config files < config dict < command line (``--key=value``), exactly as in RecBole.

After the merge, RecBole's core options (types, ranges, no pickle writers: ``config_checks.py``) and the chosen
sampler's hyper-parameters are validated, so a bad value stops the run at start-up; keys that no property file
defines are listed in ``unknown_options`` for the caller to warn about (likely typos).
"""
import os
import traceback

import yaml
from recbole.config import Config as RecBoleConfig
from recbole.config import configurator as recbole_configurator

from recbole_hnlm.compat import install_numpy_aliases
from recbole_hnlm.config_checks import check_core_options, foreign_options, recbole_properties_dir, unknown_options
from recbole_hnlm.errors import ConfigError

#: RecBole's multi-process (DDP) options: the plugin trains in one process.
_DDP_OPTIONS = ("nproc", "world_size", "local_rank", "offset", "ip", "port")
PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "properties")
if not os.path.isdir(PROPERTIES_DIR):  # editable install: the yaml files live in the repository's properties/
    PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "properties")


def _metric_names_problem(options) -> str:
    """What is wrong with ``valid_metric`` / ``metrics`` when they are not names (RecBole calls string methods on
    them); empty when they are."""
    metrics, valid = options.get("metrics"), options.get("valid_metric")
    if metrics is not None and not (isinstance(metrics, str) or isinstance(metrics, (list, tuple)) and all(
            isinstance(m, str) for m in metrics)):
        return (f"metrics = {metrics!r}: give metric names, such as ['Recall', 'NDCG'] in a yaml file or "
                "\"--metrics=['Recall','NDCG']\" on a command line")
    if "valid_metric" in options and not isinstance(valid, str):
        return (f"valid_metric = {valid!r}: give one metric name with its cut-off, such as NDCG@20 (a metric of "
                "metrics, a cut-off of topk), which ranks the epochs on validation")
    return ""


def read_config_files(file_list, loader=None):
    """RecBole's merge of yaml files (``loader``: RecBole's, which reads ``1e-4`` as a float; the default builds it),
    with a clear error naming a file that is not a YAML mapping (an empty file sets nothing)."""
    loader = loader or RecBoleConfig._build_yaml_loader(None)  # the method uses no instance state
    if isinstance(file_list, (str, os.PathLike)):  # one file, as Config takes it
        file_list = [file_list]
    merged = {}
    for path in file_list or []:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as error:  # a missing file, a folder, another encoding
            why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise ConfigError(f"config_files: {path} cannot be read ({why})") from None
        try:
            content = yaml.load(text, Loader=loader)
        except yaml.YAMLError as error:
            raise ConfigError(f"Config file '{path}' is not valid YAML: {' '.join(str(error).split())}") from None
        if content is None:
            continue
        if not isinstance(content, dict):
            raise ConfigError(f"Config file '{path}' must hold 'key: value' lines, got a YAML "
                              f"{type(content).__name__}.")
        bad_keys = [key for key in content if not isinstance(key, str)]
        if bad_keys:  # ``1: 2`` was a TypeError in the misspelt-option hint
            raise ConfigError(f"Config file '{path}' has a key that is not an option name: {bad_keys[0]!r} "
                              "(keys are names such as epochs).")
        merged.update(content)
    return merged


class Config(RecBoleConfig):
    """RecBole ``Config`` that resolves plugin models first and loads the plugin's property files.

    Args:
        model (str or type, optional): model name or class; read from the external config when ``None``.
        dataset (str, optional): dataset name; read from the external config when ``None``.
        config_file_list (list of str, optional): yaml files (one path alone, a ``str`` or ``pathlib.Path``, is
            one file).
        config_dict (dict, optional): parameters; ``os.PathLike`` values (``pathlib.Path``) become their strings.
        command_line (bool): read ``--key=value`` from ``sys.argv`` as RecBole does; ``False`` builds a config
            from the arguments alone (e.g. the MixGCF teacher trained inside an HNLMRec run). (default: ``True``)
    """

    def compatibility_settings(self):
        install_numpy_aliases()

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, command_line=True):
        self._read_command_line = command_line
        if isinstance(config_dict, dict):  # a pathlib.Path value (data_path, hnlm_file, ...) as the string it names
            config_dict = {key: os.fspath(value) if isinstance(value, os.PathLike) else value
                           for key, value in config_dict.items()}
        try:
            super().__init__(model, dataset, config_file_list, config_dict)
        except (ValueError, TypeError, NotImplementedError, RuntimeError) as error:  # RecBole's own checks (topk,
            if isinstance(error, ConfigError):  # metrics, eval_args, ranking and value metrics together, ...)
                raise
            raise ConfigError(_metric_names_problem(getattr(self, "final_config_dict", {})) or str(error)) from error
        except (AssertionError, KeyError, AttributeError) as error:  # RecBole asserts some options without a
            # message (gpu_id, nproc), and calls str methods on others (--valid_metric=~, metrics: [5])
            frame = traceback.extract_tb(error.__traceback__)[-1]
            if os.path.realpath(frame.filename) != os.path.realpath(recbole_configurator.__file__):
                raise  # the plugin's own code: a bug to see in full, not an option to name
            unnamed = _metric_names_problem(getattr(self, "final_config_dict", {}))
            if unnamed:
                raise ConfigError(unnamed) from error
            ddp = any(key in f"{frame.line} {error}" for key in _DDP_OPTIONS)
            raise ConfigError(
                f"RecBole's Config failed on these options ({type(error).__name__} {error} at "
                f"{os.path.basename(frame.filename)}:{frame.lineno}: {frame.line})."
                + (" recbole_hnlm trains in one process: drop --nproc, --world_size, --local_rank and --offset."
                   if ddp else "")) from error
        from recbole_hnlm.utils import check_model_sampler_pair, get_sampler

        sampler_class = get_sampler(self.final_config_dict["sampler"])
        self.final_config_dict["sampler"] = sampler_class.name
        check_model_sampler_pair(self.model_class, sampler_class)
        check_core_options(self)
        from recbole_hnlm.model.abstract import SampledRecommender

        plugin_backbone = isinstance(self.model_class, type) and issubclass(self.model_class, SampledRecommender)
        if plugin_backbone:  # the backbone's own options, before the dataset loads
            self.model_class.check_options_set(self)
            self.model_class.check_config(self)
        sampler_class.check_config(self)
        self.unknown_options = unknown_options(self.external_config_dict, PROPERTIES_DIR)
        teacher = []
        if sampler_class.name == "HNLMRec":  # the backbone its teacher trains
            from recbole_hnlm.llm.teacher_training import _teacher_choice

            teacher = [_teacher_choice(self)[0]]
        self.foreign_options = foreign_options(self.external_config_dict, PROPERTIES_DIR, self.model,
                                               sampler_class.name, also_models=teacher)
        self.option_warnings = sampler_class.option_warnings(self)
        wanted = self.external_config_dict.get("valid_metric_bigger")
        if wanted is not None and wanted != self.final_config_dict["valid_metric_bigger"]:  # RecBole overrides it
            self.option_warnings.append(
                f"Option 'valid_metric_bigger' = {wanted!r} is not applied: RecBole sets it from valid_metric "
                f"({self.final_config_dict['valid_metric']}: {self.final_config_dict['valid_metric_bigger']}).")
        if plugin_backbone and "require_pow" in self.external_config_dict:  # RecBole's EmbLoss switch
            self.foreign_options.append(("require_pow", "RecBole's own models (the plugin's backbones always square "
                                                        "the L2 norms, as the MixGCF/AHNS code)"))

    def _load_config_files(self, file_list):
        return read_config_files(file_list, self.yaml_loader)

    def _load_cmd_line(self):
        """RecBole's ``--key=value`` reading, with ``--key=~`` as YAML's null (``None``), as the option messages write
        it: RecBole kept the string ``'~'`` (``--hnlm_margin=~`` was refused as "expected ~ ...", and
        ``--hnlm_store_path=~`` named a file ``~``)."""
        if not self._read_command_line:
            return {}
        return {key: None if value == "~" else value for key, value in super()._load_cmd_line().items()}

    def _get_model_and_dataset(self, model, dataset):
        from recbole_hnlm.utils import get_model

        if model is None:
            if "model" not in self.external_config_dict:
                raise ConfigError("Set the model with --model=NAME, a config file or the config dict.")
            model = self.external_config_dict["model"]
        if isinstance(model, str):  # matched case-insensitively; the class's spelling names its property files
            model_class = get_model(model)
            model = model_class.__name__
        elif isinstance(model, type):
            model_class, model = model, model.__name__
        else:  # a yaml's "model: 5", "model: [MF]", or an empty value of a later file (RecBole's merge keeps None)
            raise ConfigError(f"Option 'model' must be a model name such as LightGCN, got {model!r} "
                              f"({type(model).__name__}): check the config files' 'model:' line.")
        if dataset is None:
            if "dataset" not in self.external_config_dict:
                raise ConfigError("Set the dataset with --dataset=NAME, a config file or the config dict.")
            dataset = self.external_config_dict["dataset"]
        if not isinstance(dataset, str):
            raise ConfigError(f"Option 'dataset' must be a dataset name (its folder's name), got {dataset!r} "
                              f"({type(dataset).__name__}): check the config files' 'dataset:' line (quote a name "
                              "yaml reads as a number: dataset: '2018').")
        return model, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        from recbole_hnlm.model.abstract import SampledRecommender
        from recbole_hnlm.utils import get_sampler

        super()._load_internal_config_dict(model, model_class, dataset)
        lineage = _model_lineage(model_class)
        recbole_dir = recbole_properties_dir()
        bases = [os.path.join(recbole_dir, "model", f"{klass.__name__}.yaml") for klass in lineage[:-1]]
        bases = [path for path in bases if os.path.isfile(path)]
        if bases:  # a subclass keeps its bases' RecBole defaults (RecBole reads the model's own name only): RecBole's
            # order again with them first, the model's own file over them and the dataset's files over both
            for path in bases + [os.path.join(recbole_dir, "model", f"{model}.yaml"),
                                 os.path.join(recbole_dir, "dataset", "sample.yaml"),
                                 os.path.join(recbole_dir, "dataset", f"{dataset}.yaml")]:
                if os.path.isfile(path):
                    self._update_internal_config_dict(path)
        self._update_internal_config_dict(os.path.join(PROPERTIES_DIR, "overall.yaml"))
        for klass in lineage:
            # the plugin's backbone yamls, its bases' included; not for RecBole's class of the same name (LightGCN,
            # NGCF, SGL given as a class), which keeps RecBole's defaults (n_layers 2, reg_weight 1e-5 ...)
            if issubclass(klass, SampledRecommender):
                self._load_plugin_yaml("model", klass.__name__)
        sampler = self.external_config_dict.get("sampler", self.internal_config_dict.get("sampler"))
        self._load_plugin_yaml("sampler", get_sampler(sampler).name)
        dataset_config = self._load_plugin_yaml("dataset", dataset)
        if dataset_config:
            listed = {key for keys in self.parameters.values() for key in keys}  # epochs stays under Training
            self.parameters["Dataset"] += [key for key in dataset_config if key not in listed]

    def _load_plugin_yaml(self, kind, name):
        path = os.path.join(PROPERTIES_DIR, kind, f"{name}.yaml")
        if os.path.isfile(path):
            return self._update_internal_config_dict(path)
        return None


def _model_lineage(model_class) -> list:
    """The recommender classes of ``model_class``'s MRO, its farthest base first and itself last (whose property
    files are loaded last, so that its own defaults win)."""
    from recbole.model.abstract_recommender import AbstractRecommender

    if not isinstance(model_class, type):
        return []
    return [klass for klass in reversed(model_class.__mro__) if issubclass(klass, AbstractRecommender)]


def plugin_model_defaults(model_class) -> dict:
    """The plugin's ``properties/model/<name>.yaml`` defaults of ``model_class`` and its bases, merged as
    :class:`Config` loads them (its own over its bases'), values as the files write them."""
    defaults = {}
    for klass in _model_lineage(model_class):
        path = os.path.join(PROPERTIES_DIR, "model", f"{klass.__name__}.yaml")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                defaults.update(yaml.safe_load(f) or {})
    return defaults


def split_seed(config) -> int:
    """Seed of the train/valid/test split: ``split_seed`` when set, else the run's ``seed`` (RecBole's behaviour)."""
    return int(config["seed"] if config["split_seed"] is None else config["split_seed"])
