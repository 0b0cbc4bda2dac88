"""Negative samplers, selected by the ``sampler`` config key (one class per file)."""
from recbole_hnlm.sampler.ahns import AHNS
from recbole_hnlm.sampler.base import NegativeSampler, Negatives, Propagation, SamplingContext
from recbole_hnlm.sampler.candidates import CandidateGenerator
from recbole_hnlm.sampler.dns import DNS
from recbole_hnlm.sampler.hnlmrec import HNLMRec
from recbole_hnlm.sampler.mixgcf import MixGCF
from recbole_hnlm.sampler.rns import RNS

#: name -> class; ``get_sampler`` looks names up case-insensitively.
SAMPLERS = {cls.name: cls for cls in (RNS, DNS, MixGCF, AHNS, HNLMRec)}

__all__ = ["SAMPLERS", "NegativeSampler", "Negatives", "Propagation", "SamplingContext", "CandidateGenerator",
           "RNS", "DNS", "MixGCF", "AHNS", "HNLMRec"]
