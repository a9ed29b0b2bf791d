"""Integrated gradients (50 steps) on MiniLM: hiddenlens vs Captum, same model, same inputs, same run.

Both explain the cosine similarity between each sentence's embedding (mean-pooled, normalised,
as sentence-transformers computes it) and a reference sentence, with respect to the word
embeddings fed through ``inputs_embeds`` (zero baseline), all 50 Gauss-Legendre steps batched
in one pass. Timings alternate between the two tools over several repeats (median reported),
so machine noise hits both alike. Prints the time ratio and the max absolute difference; a
second comparison does the same at the ``embeddings`` hook point against Captum's
``LayerIntegratedGradients``.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/attribution.py [--n 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

SENTENCES = [
    "The cat sat on the warm mat by the door.",
    "Assert statements are a convenient way to insert debugging assertions.",
    "A quick brown fox jumps over the lazy dog.",
    "Python raises an exception when an assertion fails at run time.",
    "Gradient methods explain which inputs changed the output.",
    "The weather in the mountains changed quickly that afternoon.",
    "Integrated gradients satisfy the completeness axiom.",
    "She opened the window and let the cold air in.",
]


def _race(ours, theirs, repeats: int):
    """(median s of ours, median s of theirs, last outputs): alternating which goes first so
    drift on a shared machine hits both alike."""
    times: dict[int, list[float]] = {0: [], 1: []}
    outs: dict[int, object] = {}
    for r in range(repeats):
        for which in (0, 1) if r % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            outs[which] = (ours, theirs)[which]()
            times[which].append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1]), outs[0], outs[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="sentences in the batch")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    import hiddenlens
    from hiddenlens.attribution import integrated_gradients, layer_integrated_gradients
    from hiddenlens.hooks import pool_embeddings

    handle = hiddenlens.load_model("minilm")
    model = handle.model
    texts = (SENTENCES * (args.n // len(SENTENCES) + 1))[: args.n]
    enc = handle.tokenize(texts)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    ref = handle.embed(["How do I debug a Python program?"])[0]

    def f(emb: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = model(inputs_embeds=emb, attention_mask=attention_mask)
        return pool_embeddings(out, attention_mask) @ ref

    with torch.no_grad():
        emb = model.embeddings.word_embeddings(ids)
    ig = IntegratedGradients(f)

    def ours_fn():
        return integrated_gradients(
            f, emb, n_steps=args.steps, forward_kwargs={"attention_mask": mask}
        )

    def ref_fn():
        return ig.attribute(
            emb, additional_forward_args=(mask,), n_steps=args.steps, return_convergence_delta=True
        )

    ours_fn(), ref_fn()  # warm-up
    t_o, t_r, ours, (theirs, delta) = _race(ours_fn, ref_fn, args.repeats)

    # the same at the embedding-layer output (token ids in, hook point "embeddings")
    batch = {"input_ids": ids, "attention_mask": mask}
    # Captum's default layer baseline is the activation of all-zero token ids: use the same
    base_batch = {"input_ids": torch.zeros_like(ids), "attention_mask": mask}

    def g(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = model(input_ids=input_ids, attention_mask=attention_mask)
        return pool_embeddings(out, attention_mask) @ ref

    def tgt(out):
        reps = out[0].shape[0] // len(texts)
        return pool_embeddings(out, mask.repeat(reps, 1)) @ ref

    lig = LayerIntegratedGradients(g, model.embeddings)

    def lours_fn():
        return layer_integrated_gradients(
            handle, batch, "embeddings", target=tgt, n_steps=args.steps, baseline_inputs=base_batch
        )

    def lref_fn():
        return lig.attribute(ids, additional_forward_args=(mask,), n_steps=args.steps)

    lt_o, lt_r, lo, lr = _race(lours_fn, lref_fn, args.repeats)
    print(
        f"MiniLM, {len(texts)} sentences x {ids.shape[1]} tokens, IG {args.steps} steps, "
        f"torch threads={torch.get_num_threads()}, median of {args.repeats}"
    )
    diff = float((ours.attributions - theirs).abs().max())
    print(
        f"IntegratedGradients (inputs_embeds): hiddenlens {t_o:.2f} s  captum {t_r:.2f} s  "
        f"ratio hiddenlens/captum {t_o / t_r:.2f}  max|diff| {diff:.2e}  max|completeness delta| "
        f"hiddenlens {float(ours.delta.abs().max()):.2e} captum {float(delta.abs().max()):.2e}"
    )
    ldiff = float((lo.attributions - lr).abs().max())
    print(
        f"LayerIntegratedGradients (embeddings): hiddenlens {lt_o:.2f} s  captum {lt_r:.2f} s  "
        f"ratio {lt_o / lt_r:.2f}  max|diff| {ldiff:.2e}"
    )


if __name__ == "__main__":
    main()
