"""Contrastive image–text pretraining (a miniature CLIP, Radford et al. 2021) as a model family."""
