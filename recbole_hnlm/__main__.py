"""``python -m recbole_hnlm --model=... --dataset=... --sampler=...``"""
import sys

from recbole_hnlm.quick_start import main

sys.exit(main(prog="python -m recbole_hnlm"))  # not "__main__.py"
