"""The shipped SMLM model on Deep-STORM's simulated microtubule test stack, against its exact ground truth.

Data: ``deepstorm/`` in the shared data folder (Nehme et al., Optica 2018, MIT): the
361-frame 64 x 64 stack, its exact emitter positions, and Deep-STORM's own x8
reconstruction; ``dsir_leaxp/`` (DSIR, MIT): the original DSIR autoencoder weights.
The figures asserted here (with a margin) are those of the README's SMLM section.
"""

import functools

import numpy as np
import pytest
import scipy.io
import torch

from microsr.smlm.localize import localize

from microsr.smlm.render import render

from microsr.smlm.score import score

from microsr.evaluate.metrics import normalize_like, psnr
from microsr.models import create_model
from microsr.io import read_image
from microsr.predict.restorer import load_model
from microsr.pretrained import pretrained_path
from microsr.smlm.reconstruct import read_stack, reconstruct, training_mismatch
from microsr.smlm.table import read_localizations

pytestmark = pytest.mark.realdata

STACK = "deepstorm/testStack_SimulatedMicrotubules.tif"
TRUTH = "deepstorm/DERIVED_Positions_Bundeld_Tubulin_Recreated.csv"
DEEPSTORM = "deepstorm/Recovery_SimulatedMicrotubules.mat"
DSIR = "dsir_leaxp/autoencoder_model.pt"
FINE = 12.5  # nm: the x8 grid of the 100 nm camera pixels
GT_SIGMA = 20.0  # nm: the ground truth is rendered as Gaussian spots of this std for image comparisons


@functools.cache
def _reconstructed(stack_path, truth_path):
    """The test stack, its ground truth and the shipped model's reconstruction (computed once)."""
    stack = read_stack(stack_path)
    return stack, read_localizations(truth_path), reconstruct(stack)


@pytest.fixture
def data(realdata):
    return _reconstructed(realdata(STACK), realdata(TRUTH))


def test_shipped_model_localizes_the_test_stack(data):
    """README (benchmarks/smlm/evaluate.py): recall 73.4 %, precision 95.6 %, Jaccard 71.0 %, RMSE 63.5 nm at
    250 nm; Jaccard 62.8 % at 100 nm (threshold 0.006 chosen on simulated frames of the broad range; nothing
    fitted to this stack). The first shipped model, trained on a preset fitted with this stack's ground truth,
    is an upper bound (Jaccard 76.5 %). Margins: 2-3 points, for other precisions and thread counts."""
    stack, truth, result = data
    assert stack.shape == (361, 64, 64) and result.pixel_size == FINE and result.threshold == 0.006
    wide, narrow = score(result.localizations, truth, 250.0), score(result.localizations, truth, 100.0)
    assert wide.recall > 0.71 and wide.precision > 0.93 and wide.jaccard > 0.68
    assert wide.rmse_lateral < 67.0
    assert narrow.jaccard > 0.60


def _image_scores(image, reference):
    """Pearson correlation and PSNR (after the affine fit to the reference) of an image against the reference."""
    image = np.asarray(image, np.float64)
    return np.corrcoef(image.ravel(), reference.ravel())[0, 1], psnr(reference, normalize_like(image, reference))


def test_reconstruction_matches_the_ground_truth_better_than_deepstorm(data, realdata):
    """README (benchmarks/smlm/evaluate.py): Pearson 0.913 and PSNR 25.0 dB for microsr's shipped model, 0.873 and
    23.4 dB for Deep-STORM's own reconstruction (0.966 / 29.0 dB for the model calibrated with the ground truth)."""
    _, truth, result = data
    reference = render(truth, FINE, (512, 512), method="gaussian", sigma=GT_SIGMA).astype(np.float64)
    deepstorm = scipy.io.loadmat(realdata(DEEPSTORM))["Recovery"]
    assert deepstorm.shape == (512, 512)
    ours, theirs = _image_scores(result.image, reference), _image_scores(deepstorm, reference)
    # Deep-STORM's image is stored in the ground truth's orientation (transposed or flipped, r < 0.2).
    assert theirs[0] > 0.85 and _image_scores(deepstorm.T, reference)[0] < 0.2
    assert ours[0] > 0.90 and ours[0] > theirs[0]
    assert ours[1] > theirs[1]


def _frames(table, frames):
    """The rows of ``table`` in the 1-based ``frames``, renumbered 1, 2, ... in that order."""
    subset = table[np.isin(table["frame"], frames)].copy()
    subset["frame"] = np.searchsorted(frames, subset["frame"]) + 1
    return subset


def test_original_dsir_weights_load_safely_and_need_batch_statistics(realdata, data):
    """DSIR's 2018 pickle loads with weights_only=True into the shared-BatchNorm layout it was saved from.

    In eval mode the shared running statistics zero every output; with each batch's own statistics
    (train mode) it localizes; the shipped model finds more emitters on this dense stack (Jaccard 71.0 % on the whole
    stack against DSIR's 54.2 % at its oracle threshold), with fewer false ones.
    """
    stack, truth, result = data
    state = torch.load(realdata(DSIR), weights_only=True, map_location="cpu")  # saved from a CUDA device
    model = create_model("dsir_compat", scale=8)
    model.load_state_dict(state)
    frames = np.arange(0, 361, 23)[:16]
    block = np.asarray(stack.data[frames], np.float32)
    inputs = torch.from_numpy((block - block.min()) / (block.max() - block.min()))[:, None]
    with torch.no_grad():
        assert float(model.eval()(inputs).max()) == 0.0
        outputs = model.train()(inputs)[:, 0].numpy()
    found = localize(outputs, FINE, 0.2 * float(np.percentile(outputs, 99.99)), radius=2)
    dsir = score(found, _frames(truth, frames + 1), 250.0)
    ours = score(_frames(result.localizations, frames + 1), _frames(truth, frames + 1), 250.0)
    assert dsir.jaccard > 0.35 and ours.jaccard > dsir.jaccard + 0.1 and ours.precision > dsir.precision


def test_a_short_uniform_stack_inside_the_range_is_not_flagged(realdata):
    """``ArtificialDataset_demo1`` (20 frames, 6.1 emitters per µm², uniform background): its camera type is not
    measurable; under the EMCCD assumption the density reads 13.5 per µm², under the sCMOS one there is no signal
    above the noise, so the density is unknown and must not be flagged (it was, before)."""
    stack = read_image(realdata("deepstorm/ArtificialDataset_demo1.tif"))
    assert training_mismatch(stack, load_model(pretrained_path("smlm")).info, 100.0) == []
