"""Consistency maps: a faithful prediction degrades back to its input; pasted structure shows up."""

import dask.array as da
import numpy as np
import pytest

from microsr.degrade import preset
from microsr.errors import InputError
from microsr.evaluate.consistency import consistency, consistency_map, degrade_back
from microsr.io import read_image
from microsr.predict.restorer import Restorer, load_model


def _paste_square(image: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """A copy of ``image`` with a bright square that no input supports."""
    out = image.copy()
    out[top : top + side, left : left + side] = np.percentile(image, 99.9) * 1.5
    return out


def test_blockwise_degradation_equals_the_whole_image_one():
    degradation = preset("poisson", scale=4)
    prediction = np.random.default_rng(0).random((2, 4 * 600, 4 * 130)).astype(np.float32)
    lazy = da.from_array(prediction, chunks=(1, 1000, 300))
    whole = degradation.without_noise().midpoint()(prediction)
    np.testing.assert_allclose(degrade_back(lazy, degradation), whole, atol=1e-6)


@pytest.fixture(scope="module")
def degraded_training_image(trained, hr_file):
    """The trained model, its own training image degraded by its degradation, and the prediction."""
    restorer = load_model(trained[0])
    hr = read_image(hr_file).data.compute().astype(np.float32)
    degradation = preset("poisson", scale=4)
    assert restorer.info["degradation"] == degradation.to_dict()
    lr = degradation(hr / hr.max(), seed=1) * hr.max()
    noiseless = degradation.without_noise().midpoint()(hr)
    return restorer, lr, restorer.predict(lr), noiseless


def test_map_of_a_faithful_prediction_is_at_the_input_noise_floor(degraded_training_image):
    restorer, lr, prediction, noiseless = degraded_training_image
    result = consistency(restorer, lr, prediction)
    assert result.map.shape == lr.shape
    # The input's own noise is the floor: a perfect prediction degrades back to `noiseless`.
    noise = np.std(lr - noiseless)
    assert result.rse < 1.5 * noise, (result.rse, noise)
    assert result.rse < 0.1 * np.ptp(lr)
    assert result.rsp > 0.9


def test_pasted_structure_stands_out_in_the_map(degraded_training_image):
    restorer, lr, prediction, _ = degraded_training_image
    top, left, side = 160, 200, 24  # in prediction pixels: 6 x 6 input pixels
    result = consistency(restorer, lr, _paste_square(prediction, top, left, side))
    inside = np.zeros(lr.shape, bool)
    inside[top // 4 : (top + side) // 4, left // 4 : (left + side) // 4] = True
    assert result.map[inside].mean() > 5 * result.map[~inside].mean()
    clean = consistency(restorer, lr, prediction)
    assert result.rse > clean.rse


def test_exact_degradation_gives_a_zero_map():
    degradation = preset("poisson", scale=2)
    truth = np.random.default_rng(3).random((64, 48))
    lr = degradation.without_noise().midpoint()(truth)
    result = consistency_map(lr, truth, degradation)
    assert result.rse < 1e-5 * np.ptp(lr) and result.rsp == pytest.approx(1.0)


def test_shapes_that_do_not_correspond_are_refused():
    with pytest.raises(InputError, match="does not match the input"):
        consistency_map(np.zeros((10, 10)), np.zeros((30, 30)), preset("poisson", scale=4))
    with pytest.raises(InputError, match="multiple of the model's scale"):
        degrade_back(np.zeros((30, 30)), preset("poisson", scale=4))


def test_a_model_trained_on_real_pairs_has_no_degradation_to_check(trained):
    restorer = load_model(trained[0])
    paired = Restorer(restorer.module, {**restorer.info, "degradation": None}, restorer.path)
    with pytest.raises(InputError, match="real image pairs"):
        consistency(paired, np.zeros((8, 8)), np.zeros((32, 32)))
