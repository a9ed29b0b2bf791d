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


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


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
    ours_fn = lambda: integrated_gradients(  # noqa: E731
        f, emb, n_steps=args.steps, forward_kwargs={"attention_mask": mask}
    )
    ref_fn = lambda: ig.attribute(  # noqa: E731
        emb, additional_forward_args=(mask,), n_steps=args.steps, return_convergence_delta=True
    )
    results = {}
    ours_fn(), ref_fn()  # warm-up
    t_ours, t_ref = [], []
    for _ in range(args.repeats):
        t, ours = _median_time(ours_fn, 1)
        t_ours.append(t)
        t, (theirs, delta) = _median_time(ref_fn, 1)
        t_ref.append(t)
    results["input"] = (statistics.median(t_ours), statistics.median(t_ref), ours, theirs, delta)

    # the same at the embedding-layer output (token ids in, hook point "embeddings")
    batch = {"input_ids": ids, "attention_mask": mask}

    def g(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return (
            pool_embeddings(
                model(input_ids=input_ids, attention_mask=attention_mask), attention_mask
            )
            @ ref
        )

    lig = LayerIntegratedGradients(g, model.embeddings)

    def tgt(out):
        reps = out[0].shape[0] // len(texts)
        return pool_embeddings(out, mask.repeat(reps, 1)) @ ref

    lours_fn = lambda: layer_integrated_gradients(
        handle, batch, "embeddings", target=tgt, n_steps=args.steps
    )  # noqa: E731
    lref_fn = lambda: lig.attribute(  # noqa: E731
        ids,
        baselines=None,
        additional_forward_args=(mask,),
        n_steps=args.steps,
        return_convergence_delta=False,
    )
    l_ours, l_ref = [], []
    for _ in range(args.repeats):
        t, lo = _median_time(lours_fn, 1)
        l_ours.append(t)
        t, lr = _median_time(lref_fn, 1)
        l_ref.append(t)
    print(
        f"MiniLM, {len(texts)} sentences x {ids.shape[1]} tokens, IG {args.steps} steps, "
        f"torch threads={torch.get_num_threads()}, median of {args.repeats}"
    )
    t_o, t_r, ours, theirs, delta = results["input"]
    print(
        f"IntegratedGradients (inputs_embeds): hiddenlens {t_o:.2f} s  captum {t_r:.2f} s  "
        f"ratio hiddenlens/captum {t_o / t_r:.2f}  max|diff| {float((ours.attributions - theirs).abs().max()):.2e}  "
        f"max|completeness delta| ours {float(ours.delta.abs().max()):.2e} captum {float(delta.abs().max()):.2e}"
    )
    print(
        f"LayerIntegratedGradients (embeddings): hiddenlens {statistics.median(l_ours):.2f} s  captum "
        f"{statistics.median(l_ref):.2f} s  ratio {statistics.median(l_ours) / statistics.median(l_ref):.2f}  "
        f"max|diff| {float((lo.attributions - lr).abs().max()):.2e}"
    )


if __name__ == "__main__":
    main()
