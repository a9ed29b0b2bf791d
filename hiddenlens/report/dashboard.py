"""Static, offline feature dashboards: one HTML file for a set of latents (SAE or codebook).

The page embeds the cards as JSON and renders only the current page of latents (search,
sort, pagination), so thousands of latents stay fast. Contexts are shown detokenized (the
tokenizer's own decoding, one span per token, :mod:`hiddenlens.report.detok`) with the active
token marked and each token's activation on hover; histograms have axes and counts; logit
effects (decoder direction times unembedding, as in SAELens / Neuronpedia dashboards) are
listed where the model has an unembedding; ``page.html#latent-123`` opens latent 123; search
runs over the decoded text (``page.html?q=text`` opens with a search). Token text is untrusted: it is put in the page as JSON with
``<``, ``>`` and ``&`` escaped, and the script only ever assigns it with ``textContent``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from hiddenlens._io import json_safe, write_text
from hiddenlens.report.detok import piece_decoder
from hiddenlens.report.features import FeatureCard

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#fafafa;color:#222}
header{position:sticky;top:0;background:#fff;padding:.6rem 1.2rem;border-bottom:1px solid #ddd;
display:flex;gap:1rem;align-items:center;flex-wrap:wrap;z-index:1}h1{font-size:1.2rem;margin:0}
input,select,button{font-size:.95rem;padding:.2rem .4rem}main{padding:1rem 1.2rem}
.card{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.1);margin:.6rem 0;
padding:.6rem .9rem;overflow-wrap:anywhere}.card:target{box-shadow:0 0 0 2px #AA3377}
.card h3{margin:.1rem 0 .4rem;font-size:1rem}.card h3 a{color:inherit;text-decoration:none}
.stats{color:#555;font-size:.85rem}.ctx{font-size:.95rem;margin:.2rem 0;line-height:1.6}
.tok{border-radius:2px;white-space:pre-wrap}.focus{outline:2px solid #AA3377;font-weight:600}
.more{margin-top:.4rem}.pager{margin:.6rem 0}.effects{font-size:.85rem;margin:.3rem 0}
.pos{color:#1f6f3f}.neg{color:#a02c2c}svg text{font-size:10px;fill:#555}
"""

_JS = r"""
(function(){
const data = JSON.parse(document.getElementById('hl-data').textContent);
const cards = data.cards; const PAGE = 40; let page = 0; let shown = cards;
cards.forEach(c => { c._text = c.top.map(ex => ex.text.join('')).join(' \n ').toLowerCase(); });
const $ = (t, cls, text) => { const e = document.createElement(t); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; };
function context(ex, max) {
  const line = $('div', 'ctx');
  ex.text.forEach((piece, i) => {
    const lead = piece.length - piece.trimStart().length;  // the space stays outside the mark
    if (lead) line.appendChild(document.createTextNode(piece.slice(0, lead)));
    const s = $('span', 'tok' + (i === ex.focus ? ' focus' : ''), piece.slice(lead));
    const a = max > 0 ? Math.max(0, ex.acts[i]) / max : 0;
    s.style.background = 'rgba(238,102,119,' + (0.85 * a).toFixed(3) + ')';
    s.title = ex.tokens[i] + ': ' + ex.acts[i].toFixed(3); line.appendChild(s); });
  return line; }
const NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, text) { const e = document.createElementNS(NS, tag);
  Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
  if (text !== undefined) e.textContent = text; return e; }
function hist(c) {
  const W = 260, H = 70, L = 34, B = 16, n = c.hist_counts.length, m = Math.max(1, ...c.hist_counts);
  const box = svg('svg', {width: W + L + 8, height: H + B + 6, role: 'img'});
  box.appendChild(svg('line', {x1: L, y1: H, x2: L + W, y2: H, stroke: '#888'}));
  box.appendChild(svg('line', {x1: L, y1: 0, x2: L, y2: H, stroke: '#888'}));
  box.appendChild(svg('text', {x: L - 3, y: 9, 'text-anchor': 'end'}, String(m)));
  box.appendChild(svg('text', {x: L - 3, y: H, 'text-anchor': 'end'}, '0'));
  box.appendChild(svg('text', {x: L, y: H + 12}, c.hist_edges[0].toFixed(2)));
  box.appendChild(svg('text', {x: L + W, y: H + 12, 'text-anchor': 'end'},
    c.hist_edges[n].toFixed(2)));
  box.appendChild(svg('text', {x: L + W / 2, y: H + 12, 'text-anchor': 'middle'}, 'activation'));
  c.hist_counts.forEach((v, i) => { const h = H * v / m;
    const r = svg('rect', {x: L + i * W / n, width: Math.max(1, W / n - 1), y: H - h, height: h,
      fill: '#4477AA'});
    r.appendChild(svg('title', {}, '[' + c.hist_edges[i].toFixed(3) + ', ' +
      c.hist_edges[i + 1].toFixed(3) + '): ' + v + ' rows'));
    box.appendChild(r); });
  return box; }
function effects(c) {
  const e = $('div', 'effects');
  const list = (cls, label, items) => { const s = $('span', cls, label + ': ' + items.map(p =>
    JSON.stringify(p[0]) + ' ' + (p[1] >= 0 ? '+' : '') + p[1].toFixed(2)).join(', '));
    e.appendChild(s); e.appendChild(document.createElement('br')); };
  list('pos', 'promotes', c.effects_pos); list('neg', 'suppresses', c.effects_neg); return e; }
function details(c, box) {
  c.quantiles.forEach(q => { box.appendChild($('div', 'stats',
    'activations in [' + q.range[0] + ', ' + q.range[1] + ']'));
    q.examples.forEach(ex => box.appendChild(context(ex, c.max_act))); }); }
function card(c) {
  const el = $('div', 'card'); el.id = 'latent-' + c.index;
  const h = $('h3'); const a = $('a', null, 'Latent ' + c.index + (c.label ? ' — ' + c.label : ''));
  a.href = '#latent-' + c.index; h.appendChild(a); el.appendChild(h);
  el.appendChild($('div', 'stats', 'density ' + (100 * c.density).toFixed(3) + '% of rows · max ' +
    c.max_act.toFixed(3) + ' · mean when active ' + c.mean_act.toFixed(3)));
  if (c.hist_counts.length) el.appendChild(hist(c));
  if (c.effects_pos.length || c.effects_neg.length) el.appendChild(effects(c));
  c.top.slice(0, 4).forEach(ex => el.appendChild(context(ex, c.max_act)));
  if (!c.top.length) el.appendChild($('div', 'stats', 'never active on these rows (dead)'));
  const btn = $('button', 'more', 'more examples'); const box = $('div');
  btn.onclick = () => { if (!box.childNodes.length) { c.top.slice(4).forEach(ex =>
      box.appendChild(context(ex, c.max_act))); details(c, box); } btn.remove(); };
  if (c.top.length > 4 || c.quantiles.length) { el.appendChild(btn); } el.appendChild(box);
  return el; }
function render() {
  const list = document.getElementById('list'); list.replaceChildren();
  const pages = Math.max(1, Math.ceil(shown.length / PAGE)); page = Math.min(page, pages - 1);
  shown.slice(page * PAGE, (page + 1) * PAGE).forEach(c => list.appendChild(card(c)));
  document.getElementById('pageinfo').textContent = 'page ' + (page + 1) + ' / ' + pages +
    ' (' + shown.length + ' latents)'; }
function filter() {
  const q = document.getElementById('q').value.trim().toLowerCase();
  const key = document.getElementById('sort').value;
  shown = cards.filter(c => !q || String(c.index) === q || (c.label || '').toLowerCase().includes(q)
    || c._text.includes(q));
  shown = shown.slice().sort((a, b) => key === 'index' ? a.index - b.index : b[key] - a[key]);
  page = 0; render(); }
function openHash() {
  const m = /^#latent-(\d+)$/.exec(location.hash); if (!m) return;
  const i = shown.findIndex(c => c.index === Number(m[1]));
  if (i < 0) { document.getElementById('q').value = ''; filter(); }
  const j = shown.findIndex(c => c.index === Number(m[1])); if (j < 0) return;
  page = Math.floor(j / PAGE); render();
  const el = document.getElementById('latent-' + m[1]); if (el) el.scrollIntoView(); }
document.getElementById('q').addEventListener('input', filter);
document.getElementById('sort').addEventListener('change', filter);
document.getElementById('prev').onclick = () => { if (page > 0) { page--; render(); } };
document.getElementById('next').onclick = () => { page++; render(); };
window.addEventListener('hashchange', openHash);
const q0 = new URLSearchParams(location.search).get('q');
if (q0) document.getElementById('q').value = q0;
filter(); openHash();
})();
"""


def _safe_json(payload) -> str:
    try:  # cards hold plain Python numbers: the fast path
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(json_safe(payload), separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _card_dict(card: FeatureCard, pieces) -> dict:
    """A card for the page: every example gains ``text``, its detokenized pieces."""
    out = card.to_dict()
    for ex in out["top"] + [e for q in out["quantiles"] for e in q["examples"]]:
        ex["text"] = pieces(ex["tokens"])
    return out


def render_dashboard(
    cards: list[FeatureCard], *, title: str = "Feature dashboard", tokenizer=None
) -> str:
    """The dashboard page for ``cards`` as one self-contained HTML string.

    tokenizer: decodes the contexts (``convert_tokens_to_string``); without one, WordPiece /
    BPE / SentencePiece markers are joined by their usual rules.
    """
    pieces = piece_decoder(tokenizer)
    data = _safe_json({"cards": [_card_dict(c, pieces) for c in cards]})
    t = html.escape(title)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{t}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{_CSS}</style></head><body><header><h1>{t}</h1>"
        "<input id='q' type='search' placeholder='latent index, label or text'>"
        "<select id='sort'><option value='index'>by index</option>"
        "<option value='density'>by density</option><option value='max_act'>by max activation"
        "</option></select><button id='prev'>&larr;</button><span id='pageinfo'></span>"
        "<button id='next'>&rarr;</button></header><main><div id='list'></div></main>"
        f"<script type='application/json' id='hl-data'>{data}</script>"
        f"<script>{_JS}</script></body></html>"
    )


def write_dashboard(
    cards: list[FeatureCard],
    path: str | Path,
    *,
    title: str = "Feature dashboard",
    tokenizer=None,
) -> Path:
    """Write the dashboard to ``path`` atomically; returns the path."""
    return write_text(path, render_dashboard(cards, title=title, tokenizer=tokenizer))


def add_logit_effects(
    cards: list[FeatureCard], effects: dict[int, dict[str, list]], tokenizer=None, *, k: int = 8
) -> list[FeatureCard]:
    """Fill each card's promoted / suppressed tokens from computed direct logit effects.

    effects: ``hiddenlens.sae.inspect.logit_effects`` output (``{latent: {up_ids, up_logits,
    down_ids, down_logits}}``), computed in the analyzer layer; this only names the tokens
    (decoded by ``tokenizer``, ids otherwise) and keeps the ``k`` largest of each side. A
    card whose latent has no entry is left without effects.
    """
    pieces = piece_decoder(tokenizer)

    def names(ids: list[int]) -> list[str]:
        if tokenizer is None:
            return [str(i) for i in ids]
        return pieces(tokenizer.convert_ids_to_tokens(list(ids)))

    for card in cards:
        eff = effects.get(card.index)
        if eff is None:
            continue
        up, down = eff["up_ids"][:k], eff["down_ids"][:k]
        card.effects_pos = [(n, round(float(v), 4)) for n, v in zip(names(up), eff["up_logits"])]
        card.effects_neg = [
            (n, round(float(v), 4)) for n, v in zip(names(down), eff["down_logits"])
        ]
    return cards
