"""``python -m recbole_hnlm --model=... --dataset=... --sampler=...``"""
import sys

from recbole_hnlm.signals import load_main

sys.exit(load_main("recbole_hnlm.quick_start")(prog="python -m recbole_hnlm"))  # not "__main__.py"
