"""Attribution: which inputs, neurons and features drove an output.

Gradient and perturbation attribution on inputs, layer and SAE-latent attribution at any hook
point, activation / attribution patching and back-patching, TransformerLens direct logit
attribution, logit lens and tuned lens, layer masking, feature visualisation, and the
evaluation of attributions (deletion/insertion, ROAR/DiffROAR, BlockMNIST-style data, grid
pointing game, DiFull models with cut receptive fields, ML-Att layer maps, AggAtt bins,
ChaosMining recall).
"""

from hiddenlens.attribution._core import Attribution
from hiddenlens.attribution.aggatt import AGGATT_BINS, AggAtt, aggatt
from hiddenlens.attribution.blocks import BlockData, make_block_digits, pgd_attack
from hiddenlens.attribution.chaos import (
    ChaosData,
    ChaosRecall,
    chaos_attributions,
    make_chaos_data,
    topk_hits,
    topk_recall,
)
from hiddenlens.attribution.difull import (
    DisconnectedGrid,
    GridImages,
    GridScores,
    PerCell,
    make_grid_images,
    split_cells,
    stitch_cells,
)
from hiddenlens.attribution.evaluation import (
    PerturbationCurves,
    deletion_insertion,
    diffroar,
    grid_cell_fractions,
    grid_pointing_game,
    keep_by_attribution,
    region_fraction,
)
from hiddenlens.attribution.featvis import (
    FeatureVis,
    activation_maximisation,
    code_direction,
    multifaceted_visualisation,
    sae_latent,
    top_activating_examples,
)
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
from hiddenlens.attribution.lens import (
    DirectLogitAttribution,
    LogitLens,
    direct_logit_attribution,
    logit_lens,
)
from hiddenlens.attribution.masking import (
    MASKINGS,
    MissingnessBias,
    layer_masked_forward,
    masked_forward,
    missingness_bias,
    neighbour_fill,
)
from hiddenlens.attribution.mlatt import LAYER_METHODS, layer_attribution_maps, upsample_maps
from hiddenlens.attribution.patching import (
    BackPatchingResult,
    BackPatchingSweep,
    PatchingResult,
    activation_patching,
    attribution_patching,
    back_patching,
    back_patching_sweep,
    compare_patching,
)
from hiddenlens.attribution.perturbation import feature_ablation, occlusion, occlusion_masks
from hiddenlens.attribution.text import (
    TokenAttribution,
    embedding_dim_target,
    similarity_target,
    token_attributions,
)
from hiddenlens.attribution.tuned_lens import (
    LensComparison,
    LensDecoder,
    TunedLens,
    lens_decoder,
    next_token_ids,
)

__all__ = [
    "AGGATT_BINS",
    "AggAtt",
    "Attribution",
    "ChaosData",
    "ChaosRecall",
    "DisconnectedGrid",
    "GridImages",
    "GridScores",
    "LAYER_METHODS",
    "PerCell",
    "aggatt",
    "chaos_attributions",
    "grid_cell_fractions",
    "layer_attribution_maps",
    "make_chaos_data",
    "make_grid_images",
    "split_cells",
    "stitch_cells",
    "topk_hits",
    "topk_recall",
    "upsample_maps",
    "BlockData",
    "DirectLogitAttribution",
    "FeatureVis",
    "LensComparison",
    "LensDecoder",
    "LogitLens",
    "TunedLens",
    "PerturbationCurves",
    "activation_maximisation",
    "code_direction",
    "deletion_insertion",
    "diffroar",
    "direct_logit_attribution",
    "grid_pointing_game",
    "keep_by_attribution",
    "layer_masked_forward",
    "MASKINGS",
    "MissingnessBias",
    "masked_forward",
    "missingness_bias",
    "lens_decoder",
    "logit_lens",
    "make_block_digits",
    "multifaceted_visualisation",
    "neighbour_fill",
    "next_token_ids",
    "pgd_attack",
    "region_fraction",
    "sae_latent",
    "top_activating_examples",
    "BackPatchingResult",
    "BackPatchingSweep",
    "PatchingResult",
    "TokenAttribution",
    "activation_patching",
    "attribution_patching",
    "back_patching",
    "back_patching_sweep",
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
