"""Vector-quantized autoencoders: quantizer, EMA codebook, VQ-VAE and a PixelCNN prior over codes
(van den Oord et al. 2017; Razavi et al. 2019)."""

from gm_jax.vq.model import VQVAE, VQDecoder, VQEncoder
from gm_jax.vq.prior import (
    code_inputs,
    code_prior,
    code_prior_init,
    code_prior_log_prob,
    code_prior_logits,
    sample_code_grid,
)
from gm_jax.vq.quantizer import (
    EmaCodebookState,
    code_distances,
    code_usage,
    codebook_perplexity,
    ema_codebook_init,
    ema_codebook_update,
    nearest_code,
    quantize,
    vq_losses,
)

__all__ = [
    "VQVAE", "EmaCodebookState", "VQDecoder", "VQEncoder", "code_distances", "code_inputs", "code_prior",
    "code_prior_init", "code_prior_log_prob", "code_prior_logits", "code_usage", "codebook_perplexity",
    "ema_codebook_init", "ema_codebook_update", "nearest_code", "quantize", "sample_code_grid", "vq_losses",
]
