"""Attribution: which inputs, neurons and features drove an output.

Gradient and perturbation attribution on inputs, layer and SAE-latent attribution at any hook
point, activation / attribution patching and back-patching, TransformerLens direct logit
attribution and logit lens, layer masking, feature visualisation, and the evaluation of
attributions (deletion/insertion, ROAR/DiffROAR, BlockMNIST-style data, grid pointing game).
"""

from hiddenlens.attribution._core import Attribution
from hiddenlens.attribution.gradient import (
    input_x_gradient,
    integrated_gradients,
    saliency,
    smoothgrad,
)
from hiddenlens.attribution.layer import (
    capture_activations,
    layer_gradient_x_activation,
    layer_integrated_gradients,
    sae_latent_attribution,
)
from hiddenlens.attribution.patching import (
    BackPatchingResult,
    PatchingResult,
    activation_patching,
    attribution_patching,
    back_patching,
    compare_patching,
)
from hiddenlens.attribution.perturbation import feature_ablation, occlusion, occlusion_masks
from hiddenlens.attribution.text import (
    TokenAttribution,
    embedding_dim_target,
    similarity_target,
    token_attributions,
)

__all__ = [
    "Attribution",
    "BackPatchingResult",
    "PatchingResult",
    "TokenAttribution",
    "activation_patching",
    "attribution_patching",
    "back_patching",
    "capture_activations",
    "compare_patching",
    "embedding_dim_target",
    "feature_ablation",
    "input_x_gradient",
    "integrated_gradients",
    "layer_gradient_x_activation",
    "layer_integrated_gradients",
    "occlusion",
    "occlusion_masks",
    "sae_latent_attribution",
    "saliency",
    "similarity_target",
    "smoothgrad",
    "token_attributions",
]
