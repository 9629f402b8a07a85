from __future__ import annotations

import numpy as np
import pytest
import torch

from srforensics.errors import SRForensicsError
from srforensics.models import MODELS, SRModel, load_model
from srforensics.resize import imresize


def test_builtin_models_listed():
    assert {"nearest", "bilinear", "bicubic", "lanczos"} <= set(MODELS.names())


@pytest.mark.parametrize("name", ["nearest", "bilinear", "bicubic", "lanczos"])
def test_interpolation_shape_range_and_determinism(name):
    model = load_model(name)
    lr = torch.rand(2, 3, 8, 10)
    out = model.sample(lr, scale=4, n=3, seeds=[[1, 2, 3], [4, 5, 6]])
    assert out.shape == (2, 3, 3, 32, 40)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[:, 0], out[:, 2])  # deterministic: N identical outputs
    card = model.card()
    assert card.name == name and card.stochastic is False


def test_bicubic_is_the_matlab_resize():
    lr = np.random.default_rng(0).random((9, 11, 3))
    out = load_model("bicubic").sample(
        torch.from_numpy(lr.transpose(2, 0, 1)[None]), scale=3, n=1, seeds=[[0]]
    )
    ref = np.clip(imresize(lr, size=(27, 33)), 0, 1)
    np.testing.assert_allclose(out[0, 0].numpy().transpose(1, 2, 0), ref, atol=1e-12)


def test_plugin_by_module_and_class_with_arguments():
    model = load_model("srf_test_plugins:NoisyModel", args={"amplitude": 0.1})
    assert isinstance(model, SRModel) and model.amplitude == 0.1
    lr = torch.rand(1, 3, 6, 6)
    a = model.sample(lr, scale=2, n=2, seeds=[[5, 6]])
    b = model.sample(lr, scale=2, n=2, seeds=[[5, 6]])
    assert torch.equal(a, b) and not torch.equal(a[:, 0], a[:, 1])


def test_bad_model_names_and_arguments():
    with pytest.raises(SRForensicsError, match="did you mean 'bicubic'"):
        load_model("bicubc")
    with pytest.raises(SRForensicsError, match="not a subclass of srforensics.models.SRModel"):
        load_model("srf_test_plugins:NotAModel")
    with pytest.raises(SRForensicsError, match="cannot create model"):
        load_model("bicubic", args={"temperature": 2})
