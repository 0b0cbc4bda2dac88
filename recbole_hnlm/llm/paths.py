"""Where a dataset's LLM artifacts (profiles, side-car store, teacher, adapter) are written by default.

Next to the dataset's atomic files (``<data_path>/<dataset>/``), as issue 3 asks, unless that folder is inside an
installed package (RecBole ships ml-100k inside its wheel) or not writable: then ``./saved/hnlm/<dataset>/``, beside
RecBole's own ``saved/`` checkpoints. Each artifact also has an explicit ``hnlm_*_path`` key.
"""
import logging
import os
import sysconfig

__all__ = ["artifact_dir"]

_warned_read_only = set()


def _inside_installed_packages(folder: str) -> bool:
    real = os.path.realpath(folder)
    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    return any(os.path.commonpath([real, os.path.realpath(root)]) == os.path.realpath(root) for root in roots)


def artifact_dir(data_path: str, dataset: str) -> str:
    """Folder for ``dataset``'s LLM artifacts (see the module docstring); it may not exist yet."""
    folder = os.path.join(data_path, dataset)
    if _inside_installed_packages(folder):
        return os.path.join(os.getcwd(), "saved", "hnlm", dataset)
    if os.path.isdir(folder) and not os.access(folder, os.W_OK):
        elsewhere = os.path.join(os.getcwd(), "saved", "hnlm", dataset)
        _warn_about_artifacts_left_behind(folder, dataset, elsewhere)
        return elsewhere
    return folder


def _warn_about_artifacts_left_behind(folder: str, dataset: str, elsewhere: str) -> None:
    """A read-only dataset folder may hold the artifacts of an earlier run (hours of LLM work) that the default paths
    no longer find: name them, once per folder."""
    names = sorted(name for name in os.listdir(folder) if name.startswith(f"{dataset}.") and ".hnlm-" in name)
    if names and folder not in _warned_read_only:
        _warned_read_only.add(folder)
        logging.getLogger(__name__).warning(
            "%s is read-only, so the LLM artifacts go to %s; the %d there (%s) are not read: copy them over to "
            "reuse them", folder, elsewhere, len(names), ", ".join(names[:4]) + (" ..." if len(names) > 4 else ""))
