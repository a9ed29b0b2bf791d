"""The sae package's fitted classes follow the scikit-learn estimator contract."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_no_attributes_set_in_init
from sklearn.utils.validation import check_is_fitted

from hiddenlens.sae import SAEConfig, SupervisedDictionary, build_sae
from hiddenlens.sae.principled_adapters import (
    MeanAdapter,
    NMFAdapter,
    PCAAdapter,
    SAEAdapter,
    SupervisedAdapter,
)

rng = np.random.default_rng(0)
X = np.abs(rng.normal(size=(60, 6))).astype(np.float32)
LABELS = {"a": rng.integers(0, 3, 60), "b": rng.integers(0, 2, 60)}


def _cases():
    sae = build_sae(SAEConfig(d_in=6, d_sae=12, architecture="relu"), seed=0).eval()
    return [
        (SupervisedDictionary(attributes=["a"]), lambda e: e.fit(X, LABELS),
         lambda e: e.reconstruct(LABELS)),
        (SupervisedAdapter(SupervisedDictionary()), lambda e: e.fit(X, LABELS),
         lambda e: e.encode(X, LABELS)),
        (PCAAdapter(n_components=3, seed=1), lambda e: e.fit(X), lambda e: e.encode(X)),
        (NMFAdapter(n_components=2, seed=1, max_iter=50), lambda e: e.fit(X),
         lambda e: e.encode(X)),
        (MeanAdapter(), lambda e: e.fit(X), lambda e: e.decode(torch.zeros(3, 0))),
        (SAEAdapter(sae), lambda e: e.fit(X), lambda e: e.encode(X)),
    ]  # fmt: skip


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("i", range(6))
def test_clone_params_and_fitted_state(i):
    est, fit, use = _cases()[i]
    check_no_attributes_set_in_init(type(est).__name__, clone(est))
    params = est.get_params(deep=False)
    copy = clone(est)
    assert type(copy) is type(est) and set(copy.get_params(deep=False)) == set(params)
    for k, v in params.items():  # parameters stored verbatim (estimators cloned unfitted)
        got = copy.get_params(deep=False)[k]
        assert type(got) is type(v) and (not isinstance(v, (int, float, str)) or got == v), k
    fitted = fit(est)
    assert fitted is est
    check_is_fitted(est)
    use(est)  # works once fitted
    if isinstance(est, SAEAdapter):  # holds a trained SAE: fitted as soon as it has one
        with pytest.raises(NotFittedError):
            SAEAdapter().encode(X)
        return
    fresh = clone(est)
    with pytest.raises(NotFittedError):
        check_is_fitted(fresh)
    with pytest.raises(NotFittedError):
        use(fresh)


def test_prefitted_supervised_dictionary_makes_a_usable_adapter():
    sup = SupervisedDictionary().fit(X, LABELS)
    ad = SupervisedAdapter(sup)  # used at once, as before
    check_is_fitted(ad)
    np.testing.assert_allclose(
        ad.decode(ad.encode(X, LABELS)).numpy(), sup.reconstruct(LABELS), atol=1e-5
    )
    with pytest.raises(NotFittedError):
        check_is_fitted(clone(ad))  # clone gives an unfitted copy
