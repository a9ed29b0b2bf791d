"""Every fitted class outside sae/ follows the scikit-learn estimator contract.

Parameters are stored verbatim (``get_params`` round-trips through ``clone``), learned state
ends with ``_`` (``check_is_fitted`` fails before ``fit`` and passes after), and using an
unfitted estimator raises ``NotFittedError``.
"""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from hiddenlens.info import AutoencoderCompressor, PCACompressor
from hiddenlens.probe import LinearProbe, LinearProbeRegressor, NearestMeanProbe
from hiddenlens.shortcut import DFR, OpposingSignals

RNG = np.random.default_rng(0)
X = RNG.standard_normal((80, 5))
Y = (X[:, 0] > 0).astype(int)
G = Y * 2 + (X[:, 1] > 0)
LOSSES = RNG.standard_normal((6, 30)).cumsum(0)

# (unfitted estimator with non-default params, fit, use-after-fit)
CASES = {
    "DFR": (DFR(C=0.5, n_repeats=2, seed=3), lambda e: e.fit(X, Y, G), lambda e: e.predict(X)),
    "PCACompressor": (PCACompressor(n_components=2), lambda e: e.fit(X), lambda e: e.transform(X)),
    "AutoencoderCompressor": (
        AutoencoderCompressor(n_components=2, hidden=8, n_steps=5, seed=1),
        lambda e: e.fit(X),
        lambda e: e.transform(X),
    ),
    "OpposingSignals": (
        OpposingSignals(top_k=4, detrend=False),
        lambda e: e.fit(LOSSES),
        lambda e: e.to_metrics(),
    ),
    "LinearProbe": (LinearProbe(alpha=0.1), lambda e: e.fit(X, Y), lambda e: e.predict(X)),
    "LinearProbeRegressor": (
        LinearProbeRegressor(alpha=0.1),
        lambda e: e.fit(X, X[:, 0]),
        lambda e: e.predict(X),
    ),
    "NearestMeanProbe": (NearestMeanProbe(), lambda e: e.fit(X, Y), lambda e: e.predict(X)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_clone_and_not_fitted(name):
    est, fit, use = CASES[name]
    params = est.get_params()
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    with pytest.raises(NotFittedError):
        use(est)
    fitted = fit(clone(est))
    assert fitted is not None
    check_is_fitted(fitted)
    use(fitted)
    twin = clone(fitted)  # a clone copies the parameters, never the learned state
    assert twin.get_params() == params == est.get_params()
    with pytest.raises(NotFittedError):
        check_is_fitted(twin)
    assert fit(twin) is twin  # fit returns self
