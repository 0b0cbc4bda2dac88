"""Where a dataset's LLM artifacts (profiles, side-car store, teacher, adapter) are written by default.

Next to the dataset's atomic files (``<data_path>/<dataset>/``), as issue 3 asks, unless that folder is inside an
installed package (RecBole ships ml-100k inside its wheel) or not writable: then ``./saved/hnlm/<dataset>/``, beside
RecBole's own ``saved/`` checkpoints. Each artifact also has an explicit ``hnlm_*_path`` key.
"""
import os
import sysconfig

__all__ = ["artifact_dir"]


def _inside_installed_packages(folder: str) -> bool:
    real = os.path.realpath(folder)
    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    return any(os.path.commonpath([real, os.path.realpath(root)]) == os.path.realpath(root) for root in roots)


def artifact_dir(data_path: str, dataset: str) -> str:
    """Folder for ``dataset``'s LLM artifacts (see the module docstring); it may not exist yet."""
    folder = os.path.join(data_path, dataset)
    if _inside_installed_packages(folder) or (os.path.isdir(folder) and not os.access(folder, os.W_OK)):
        return os.path.join(os.getcwd(), "saved", "hnlm", dataset)
    return folder
