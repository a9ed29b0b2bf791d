"""Static, offline feature dashboards: one HTML file for a set of latents (SAE or codebook).

The page embeds the cards as JSON and renders only the current page of latents (search,
sort, pagination), so thousands of latents stay fast. Token text is untrusted: it is put in
the page as JSON with ``<``, ``>`` and ``&`` escaped, and the script only ever assigns it
with ``textContent`` — never as HTML.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from hiddenlens._io import json_safe, write_text
from hiddenlens.report.features import FeatureCard

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#fafafa;color:#222}
header{position:sticky;top:0;background:#fff;padding:.6rem 1.2rem;border-bottom:1px solid #ddd;
display:flex;gap:1rem;align-items:center;flex-wrap:wrap}h1{font-size:1.2rem;margin:0}
input,select,button{font-size:.95rem;padding:.2rem .4rem}main{padding:1rem 1.2rem}
.card{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.1);margin:.6rem 0;
padding:.6rem .9rem}.card h3{margin:.1rem 0 .4rem;font-size:1rem}.stats{color:#555;font-size:.85rem}
.ctx{font-family:ui-monospace,monospace;font-size:.85rem;margin:.15rem 0;white-space:pre-wrap}
.tok{border-radius:2px;padding:0 1px}.focus{outline:1px solid #AA3377}.more{margin-top:.4rem}
.pager{margin:.6rem 0}.effects{font-size:.85rem}
"""

_JS = r"""
(function(){
const data = JSON.parse(document.getElementById('hl-data').textContent);
const cards = data.cards; const PAGE = 40; let page = 0; let shown = cards;
const $ = (t, cls, text) => { const e = document.createElement(t); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; };
function context(ex, max) {
  const line = $('div', 'ctx');
  ex.tokens.forEach((tok, i) => {
    const s = $('span', 'tok' + (i === ex.focus ? ' focus' : ''), tok + ' ');
    const a = max > 0 ? Math.max(0, ex.acts[i]) / max : 0;
    s.style.background = 'rgba(238,102,119,' + a.toFixed(3) + ')';
    s.title = ex.acts[i].toFixed(3); line.appendChild(s); });
  return line; }
function hist(c) {
  const W = 160, H = 36, n = c.hist_counts.length, m = Math.max(1, ...c.hist_counts);
  const ns = 'http://www.w3.org/2000/svg', svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', W); svg.setAttribute('height', H);
  c.hist_counts.forEach((v, i) => { const r = document.createElementNS(ns, 'rect');
    const h = H * v / m; r.setAttribute('x', i * W / n); r.setAttribute('width', W / n - 1);
    r.setAttribute('y', H - h); r.setAttribute('height', h); r.setAttribute('fill', '#4477AA');
    svg.appendChild(r); });
  return svg; }
function details(c, box) {
  c.quantiles.forEach(q => { box.appendChild($('div', 'stats',
    'activations in [' + q.range[0] + ', ' + q.range[1] + ']'));
    q.examples.forEach(ex => box.appendChild(context(ex, c.max_act))); });
  if (c.effects_pos.length) { const e = $('div', 'effects');
    e.textContent = 'promotes: ' + c.effects_pos.map(p => p[0] + ' (' + p[1].toFixed(2) + ')').join(', ')
      + ' | suppresses: ' + c.effects_neg.map(p => p[0] + ' (' + p[1].toFixed(2) + ')').join(', ');
    box.appendChild(e); } }
function card(c) {
  const el = $('div', 'card'); el.id = 'latent-' + c.index;
  el.appendChild($('h3', null, 'Latent ' + c.index + (c.label ? ' — ' + c.label : '')));
  el.appendChild($('div', 'stats', 'density ' + (100 * c.density).toFixed(3) + '% · max ' +
    c.max_act.toFixed(3) + ' · mean ' + c.mean_act.toFixed(3)));
  if (c.hist_counts.length) el.appendChild(hist(c));
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
    || c.top.some(ex => (ex.tokens[ex.focus] || '').toLowerCase().includes(q)));
  shown = shown.slice().sort((a, b) => key === 'index' ? a.index - b.index : b[key] - a[key]);
  page = 0; render(); }
document.getElementById('q').addEventListener('input', filter);
document.getElementById('sort').addEventListener('change', filter);
document.getElementById('prev').onclick = () => { if (page > 0) { page--; render(); } };
document.getElementById('next').onclick = () => { page++; render(); };
filter();
})();
"""


def _safe_json(payload) -> str:
    try:  # cards hold plain Python numbers: the fast path
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(json_safe(payload), separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_dashboard(cards: list[FeatureCard], *, title: str = "Feature dashboard") -> str:
    """The dashboard page for ``cards`` as one self-contained HTML string."""
    data = _safe_json({"cards": [c.to_dict() for c in cards]})
    t = html.escape(title)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{t}</title>"
        f"<style>{_CSS}</style></head><body><header><h1>{t}</h1>"
        "<input id='q' type='search' placeholder='latent index, label or token'>"
        "<select id='sort'><option value='index'>by index</option>"
        "<option value='density'>by density</option><option value='max_act'>by max activation"
        "</option></select><button id='prev'>&larr;</button><span id='pageinfo'></span>"
        "<button id='next'>&rarr;</button></header><main><div id='list'></div></main>"
        f"<script type='application/json' id='hl-data'>{data}</script>"
        f"<script>{_JS}</script></body></html>"
    )


def write_dashboard(
    cards: list[FeatureCard], path: str | Path, *, title: str = "Feature dashboard"
) -> Path:
    """Write the dashboard to ``path`` atomically; returns the path."""
    return write_text(path, render_dashboard(cards, title=title))
