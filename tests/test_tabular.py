"""Federated preprocessing equals pooled preprocessing, computed from counts and sums only."""

import numpy as np
import pandas as pd
import pytest

from domains import Domain
from fedflow.sitedata import read_site_frame
from fedflow.tabular import example_frame, fit_preprocessor, merge_statistics, site_statistics


@pytest.fixture(scope="module")
def frames(healthcare: Domain) -> dict[str, pd.DataFrame]:
    return {
        s: read_site_frame(healthcare.site_path(s), healthcare.spec, site=s) for s in healthcare.spec.sites
    }


def test_federated_statistics_equal_pooled_ones(healthcare: Domain, frames: dict[str, pd.DataFrame]) -> None:
    stats = merge_statistics(site_statistics(f, healthcare.spec) for f in frames.values())
    pre = fit_preprocessor(stats, healthcare.spec, min_category_count=1)
    pooled = pd.concat(frames.values(), ignore_index=True)
    for num in pre.numeric:
        values = pooled[num.name].astype(float)
        assert num.mean == pytest.approx(values.mean(), rel=1e-9)
        assert num.std == pytest.approx(values.std(ddof=0), rel=1e-6)
        assert num.missing_indicator == bool(values.isna().any())
    assert stats.rows == len(pooled) == 920
    # chol = 0 is a missing code: Switzerland's zeros must not drag the mean down.
    chol = next(n for n in pre.numeric if n.name == "chol")
    assert chol.mean > 200


def test_rare_categories_stay_out_of_the_vocabulary(
    healthcare: Domain, frames: dict[str, pd.DataFrame]
) -> None:
    stats = merge_statistics([site_statistics(frames["switzerland"], healthcare.spec)])
    pre = fit_preprocessor(stats, healthcare.spec, min_category_count=5)
    counts = stats.categorical["restecg"].counts
    restecg = next(c for c in pre.categorical if c.name == "restecg")
    assert set(restecg.categories) == {k for k, v in counts.items() if v >= 5}


def test_transform_layout_and_imputation(healthcare: Domain, frames: dict[str, pd.DataFrame]) -> None:
    stats = merge_statistics(site_statistics(f, healthcare.spec) for f in frames.values())
    pre = fit_preprocessor(stats, healthcare.spec)
    x = pre.transform(frames["hungary"])
    assert x.shape == (len(frames["hungary"]), len(pre.feature_names))
    assert np.isfinite(x).all()
    ca_missing = pre.feature_names.index("ca__missing")
    assert x[:, ca_missing].mean() > 0.9  # Hungary lacks `ca` almost everywhere


def test_example_frame_is_synthetic(healthcare: Domain, frames: dict[str, pd.DataFrame]) -> None:
    stats = merge_statistics(site_statistics(f, healthcare.spec) for f in frames.values())
    example = example_frame(fit_preprocessor(stats, healthcare.spec))
    pooled = pd.concat(frames.values(), ignore_index=True)[list(example.columns)]
    merged = example.astype(str).merge(pooled.astype(str), how="inner")
    assert merged.empty, "the input example must not reproduce a real patient's row"
