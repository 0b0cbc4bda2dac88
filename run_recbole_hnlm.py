"""Train and evaluate a RecBole backbone with a hard negative sampler.

    python run_recbole_hnlm.py --model=LightGCN --sampler=HNLMRec --dataset=ml-100k
    python run_recbole_hnlm.py --model=NGCF --sampler=MixGCF --dataset=yelp2018 --data_path=/data/atomic
"""
import sys

from recbole_hnlm.signals import load_main

if __name__ == "__main__":
    sys.exit(load_main("recbole_hnlm.quick_start")())  # a Ctrl-C while torch and RecBole load is one line too
