"""Backbones: one model per file, all built on :class:`recbole_hnlm.model.abstract.SampledRecommender`."""
