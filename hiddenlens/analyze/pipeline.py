"""``hiddenlens.analyze(config, out_dir)``: cache -> SAEs -> one section per analyzer ->
``report.html`` + ``metrics.json``.

Every stage is resumable and skipped when its saved output matches its config:
- **cache**: ``OUT/store`` (``cache_activations`` resumes an interrupted run shard by shard
  and reopens a finished one; a store of a different run is replaced);
- **sae**: ``OUT/sae/<hook>/`` per hook (checkpoints resume training; ``stage.json``
  marks a finished SAE with the fingerprint of the store and the SAE settings);
- **sections**: ``OUT/sections/<name>/`` holds each section's saved part of the report
  (``report.json`` + figures) and its ``stage.json``.
Ctrl-C at any point, then the same call, continues from the last finished piece.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import importlib
import logging
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hiddenlens.analyze import stages
from hiddenlens.analyze.config import RunConfig, load_config
from hiddenlens.analyze.context import Context, model_kind, safe_name
from hiddenlens.analyze.inputs import load_data, load_handle, materialise, row_labels

logger = logging.getLogger(__name__)
SECTIONS_DIR = "sections"
CACHE_MARKER = "cache_stage.json"
#: bump when a section's output format changes, so saved sections are recomputed
SECTION_FORMAT = 1
DEFAULT_HEADLINE = (
    "sae*/fvu*", "sae*ce_loss_score*", "sae*kl*", "sae*embed_cos_score*",
    "probe*/cka*", "collapse*nc1*", "codebook*embedding_cosine_finetuned*",
)


@dataclass
class AnalyzeResult:
    """What a run produced: the report path, all metrics, and what each stage did."""

    report: Path
    metrics: dict[str, Any]
    stages: dict[str, str] = field(default_factory=dict)  # stage -> 'ran' | 'skipped' | 'failed'
    failed: list[str] = field(default_factory=list)


def _cache_stage(cfg: RunConfig, handle, run_data, out: Path, progress: bool):
    from hiddenlens.store import cache_activations

    kwargs: dict[str, Any] = dict(
        batch_size=cfg.model.batch_size,
        max_rows=cfg.data.max_rows,
        seq_len=cfg.model.seq_len,
        dtype=cfg.cache.dtype,
        shard_size_mb=cfg.cache.shard_size_mb,
        progress=progress,
    )
    if cfg.cache.rows is not None:
        kwargs["rows"] = cfg.cache.rows
    path = out / "store"
    finished = (path / "manifest.json").exists()
    t0 = time.perf_counter()
    try:
        store = cache_activations(handle, run_data.source, cfg.cache.hooks, path, **kwargs)
    except FileExistsError as err:
        if not path.is_dir() or "different run" not in str(err):
            raise
        logger.info("the store in %s is of another config; caching again", path)
        store = cache_activations(
            handle, run_data.source, cfg.cache.hooks, path, overwrite=True, **kwargs
        )
        finished = False
    if not finished:
        from hiddenlens._io import write_json

        # next to the store, not in it (the writer owns every file of its directory)
        write_json(out / CACHE_MARKER, {"seconds": time.perf_counter() - t0})
    return store, "skipped" if finished else "ran"


def _store_identity(store) -> str:
    return stages.fingerprint(store.manifest["run"])


def _sae_fingerprint(store_id: str, hook: str, cfg, tcfg) -> str:
    """What a trained SAE depends on: the store, the hook, the full SAE and training configs
    (library defaults included, so a changed default retrains on resume) and the training
    code (a new release, or an edit of the trainer, the SAE base or its architecture)."""
    from hiddenlens.sae import base, registry, trainer

    arch = sys.modules[registry.get(cfg.architecture).__module__]
    skip = ("num_threads", "log_every", "checkpoint_every")  # they do not change the SAE
    train = {k: v for k, v in tcfg.to_dict().items() if k not in skip}
    return stages.fingerprint(
        {"store": store_id, "hook": hook, "sae": cfg.to_dict(), "train": train,
         "code": [_version(), *(_source_sha(m) for m in (trainer, base, arch))]}
    )  # fmt: skip


def _train_configs(ctx: Context, scfg, hook: str):
    """(SAEConfig, TrainConfig) the analyze run trains ``hook``'s SAE with."""
    from hiddenlens.sae import SAEConfig, TrainConfig, registry

    d_in = ctx.store.d(hook)
    n_rows = len(ctx.store)
    cfg = SAEConfig(
        d_in=d_in,
        d_sae=scfg.d_sae or scfg.expansion * d_in,
        architecture=scfg.architecture,
        k=scfg.k if registry.facts(scfg.architecture)["topk_family"] else None,
        model_id=getattr(ctx.handle, "model_id", None),
    )
    batch = min(scfg.batch_size, n_rows)
    tcfg = TrainConfig(
        total_tokens=max(batch, scfg.total_tokens),
        batch_size=batch,
        lr=scfg.lr,
        l1_coefficient=scfg.l1_coefficient,
        lr_warmup_steps=min(10, max(1, scfg.total_tokens // batch // 10)),
        dead_tokens=max(n_rows, batch),
        seed=ctx.seed,
        log_every=5,
        checkpoint_every=scfg.checkpoint_every,
        num_threads=1,  # faster on small shared CPU boxes (many small sparse ops per step)
        device=str(ctx.handle_device),
    )
    return cfg, tcfg


def _sae_stage(ctx: Context, scfg, out: Path, progress: bool) -> dict[str, str]:
    from hiddenlens.sae import load, train
    from hiddenlens.sae.io import load_sparsity

    status = {}
    store_id = _store_identity(ctx.store)
    for hook in ctx.hooks_for(scfg.hooks):
        directory = out / "sae" / safe_name(hook)
        cfg, tcfg = _train_configs(ctx, scfg, hook)
        fp = _sae_fingerprint(store_id, hook, cfg, tcfg)
        if stages.is_done(directory, fp):
            sae = load(directory)
            density = load_sparsity(directory)
            if density is not None:
                sae.feature_density_ = density
            status[f"sae:{hook}"] = "skipped"
        else:
            stages.begin(directory, fp)
            t0 = time.perf_counter()
            sae = train(ctx.store, hook, cfg, tcfg, out_dir=directory, progress=progress,
                        resume=True)  # fmt: skip
            stages.finish(directory, fp, seconds=time.perf_counter() - t0)
            status[f"sae:{hook}"] = "ran"
        ctx.saes[hook] = sae
    return status


def _version() -> str:
    from hiddenlens import __version__

    return __version__


def _source_sha(module) -> str:
    """sha256 of a module's source file ('' when it has none, e.g. a frozen build)."""
    path = getattr(module, "__file__", None)
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""
    except OSError:
        return ""


def _section_fingerprint(ctx: Context, name: str, scfg, module) -> str:
    obj = {
        "format": SECTION_FORMAT,
        "store": _store_identity(ctx.store),
        "section": dataclasses.asdict(scfg),
        "labels": ctx.cfg.data.labels,
        "token_labels": ctx.cfg.data.token_labels,
        "seed": ctx.seed,
        # code: a new release, or an edit of the section itself, redoes it on resume
        "code": [_version(), _source_sha(module)],
    }
    if getattr(module, "USES_SAE", False):
        obj["saes"] = {h: stages.info(ctx.out_dir / "sae" / safe_name(h))["fingerprint"]
                       for h in ctx.saes}
    return stages.fingerprint(obj)


def _run_section(ctx: Context, name: str, scfg, report) -> str:
    """Run (or reload) one section into ``report``; returns its stage status."""
    from hiddenlens.report import Report

    module = importlib.import_module(f"hiddenlens.analyze.sections.{name}")
    directory = ctx.out_dir / SECTIONS_DIR / name
    fp = _section_fingerprint(ctx, name, scfg, module)
    if stages.is_done(directory, fp):
        report.sections.extend(Report.from_run_dir(directory).sections)
        return "skipped"
    stages.begin(directory, fp, keep_partial=False)
    part = Report(name)
    t0 = time.perf_counter()
    status = "ran"
    try:
        module.run(ctx, scfg, part)
    except Exception:  # noqa: BLE001 - a broken section must not hide the others
        logger.exception("section %s failed", name)
        part.add_section(f"{name}: failed").add_text(traceback.format_exc())
        status = "failed"
    seconds = time.perf_counter() - t0
    part.write(directory)
    (directory / "report.html").unlink(missing_ok=True)  # the run's page is the one that counts
    if status == "ran":
        stages.finish(directory, fp, seconds=seconds)
    report.sections.extend(Report.from_run_dir(directory).sections)
    logger.info("section %s %s in %.1f s", name, status, seconds)
    return status


def _headline(report, patterns) -> dict[str, Any]:
    found = report.all_metrics()
    pats = list(patterns) or list(DEFAULT_HEADLINE)
    return {k: v for k, v in found.items() if any(fnmatch.fnmatchcase(k, p) for p in pats)}


def analyze(config: str | Path | dict | RunConfig, out_dir: str | Path, *,
            progress: bool = True) -> AnalyzeResult:
    """Run every stage of ``config`` (a TOML path, a dict of tables or a RunConfig) into
    ``out_dir``; see the module docstring for what is written and what is resumed."""
    from hiddenlens._io import write_json
    from hiddenlens.report import Report

    cfg = load_config(config)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "run_config.json", cfg.to_dict())
    handle = load_handle(cfg.model)
    run_data = load_data(cfg.data)
    t0 = time.perf_counter()
    store, cache_status = _cache_stage(cfg, handle, run_data, out, progress)
    materialise(run_data, store)
    labels = row_labels(handle, run_data, store, cfg.data, cfg.model.seq_len)
    ctx = Context(cfg, handle, store, run_data, labels, out, seed=cfg.seed)
    result = AnalyzeResult(out / "report.html", {}, {"cache": cache_status})
    if "sae" in cfg.sections:
        result.stages.update(_sae_stage(ctx, cfg.sections["sae"], out, progress))
    title = cfg.report.title or f"hiddenlens analyze: {handle.model_id} ({model_kind(handle)})"
    report = Report(title, config=cfg.to_dict())
    report.add_section("Run").add_text(_run_text(ctx, time.perf_counter() - t0))
    for name, scfg in cfg.sections.items():
        status = _run_section(ctx, name, scfg, report)
        result.stages[name] = status
        if status == "failed":
            result.failed.append(name)
    report.sections[0].add_table(_timings(ctx, cfg), caption="Wall-clock seconds per stage, "
                                 "measured when it last ran (a skipped stage was reused).")
    report.add_metrics(_headline(report, cfg.report.headline))
    result.report = report.write(out)
    result.metrics = report.all_metrics()
    return result


def _timings(ctx: Context, cfg: RunConfig) -> list[dict[str, Any]]:
    """One row per stage: its seconds from its stage.json (when it last ran)."""
    from hiddenlens._io import read_json

    markers = [("cache", ctx.out_dir / CACHE_MARKER)]
    markers += [(f"sae {h}", ctx.out_dir / "sae" / safe_name(h) / stages.MARKER) for h in ctx.saes]
    markers += [(n, ctx.out_dir / SECTIONS_DIR / n / stages.MARKER) for n in cfg.sections]
    rows = []
    for stage, marker in markers:
        try:
            seconds = read_json(marker).get("seconds")
        except (OSError, ValueError):
            seconds = None
        rows.append({"stage": stage, "seconds": round(seconds, 1) if seconds else None})
    return rows


def _run_text(ctx: Context, seconds: float) -> str:
    n_docs = len(set(ctx.store.meta["sample_idx"].tolist()))
    return (
        f"Model {ctx.handle.model_id!r} treated as a {model_kind(ctx.handle)}. "
        f"Store: {len(ctx.store):,} rows from {n_docs:,} samples at {len(ctx.hooks)} hook "
        f"points ({', '.join(ctx.hooks[:8])}{' ...' if len(ctx.hooks) > 8 else ''}); "
        f"cache and SAE stages took {seconds:.1f} s in this invocation. Labels available: "
        f"{', '.join(sorted(ctx.labels.values)) or 'none'}."
    )
