"""recbole-hnlm: LLM-driven (HNLMRec) and ID-based (DNS, MixGCF, AHNS) hard negative sampling for RecBole."""
__version__ = "0.1.0"
