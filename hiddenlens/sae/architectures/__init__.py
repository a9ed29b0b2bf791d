"""SAE architectures, one module each; importing this package registers them all."""

from hiddenlens.sae.architectures import (  # noqa: F401
    batchtopk,
    gated,
    gradient_topk,
    jumprelu,
    matryoshka,
    relu,
    topk,
    transcoder,
)
