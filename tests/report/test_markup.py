from hiddenlens.report.markup import markdown, safe_href


def test_markdown_subset_is_rendered_and_everything_else_escaped():
    out = markdown("a `x<y>` **b** *c* [d](run.html#latent-3) <b>raw</b>\n\n- one\n- `two`")
    assert out == (
        "<p>a <code>x&lt;y&gt;</code> <strong>b</strong> <em>c</em> "
        "<a href='run.html#latent-3'>d</a> &lt;b&gt;raw&lt;/b&gt;</p>"
        "<ul><li>one</li><li><code>two</code></li></ul>"
    )
    assert markdown("`**not bold**`") == "<p><code>**not bold**</code></p>"


def test_only_links_that_stay_in_the_run_or_are_web_addresses():
    assert safe_href("figures/a.png") and safe_href("#latent-1") and safe_href("https://x.org/a")
    for bad in ("javascript:alert(1)", "../../etc/passwd", "/etc/passwd", "file:///etc", "a b"):
        assert not safe_href(bad), bad
        assert "<a " not in markdown(f"[x]({bad})")
