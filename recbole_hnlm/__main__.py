"""``python -m recbole_hnlm --model=... --dataset=... --sampler=...``, and the ``recbole-hnlm`` console script."""
import sys

from recbole_hnlm.signals import load_main


def main(prog=None) -> int:
    """The run script's command line, loaded under the commands' signal handling (a Ctrl-C while torch and RecBole
    load is one ``interrupted:`` line); ``prog``: the command its usage line names (default: the script's name)."""
    return load_main("recbole_hnlm.quick_start")(prog=prog)


if __name__ == "__main__":
    sys.exit(main(prog="python -m recbole_hnlm"))  # not "__main__.py"
