import pytest


def test_decoder_cosines_heatmap():
    import numpy as np

    from hiddenlens.viz.sae import plot_decoder_cosines

    w = np.random.default_rng(0).normal(size=(10, 4))
    w[3] = 2 * w[7]  # a duplicated direction
    fig = plot_decoder_cosines(w)
    z = np.asarray(fig.data[0].z)
    labels = list(fig.data[0].x)
    assert z.shape == (10, 10) and np.allclose(np.diag(z), 1)
    assert z[labels.index("3"), labels.index("7")] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2-D"):
        plot_decoder_cosines(np.ones(5))
