"""Localization tables: reading, writing, scoring, finding and rendering (microsr.smlm.localize)."""

import math

import numpy as np
import pytest

from microsr.errors import InputError
from microsr.io import read_image
from microsr.smlm.localize import localize
from microsr.smlm.render import render
from microsr.smlm.score import score
from microsr.smlm.table import CSV_COLUMNS, localization_table, read_localizations, write_localizations

DEEPSTORM = "deepstorm/"
EPFL_TRUTH = "thunderstorm_epfl_tubulins1/tubulins1_00020.csv"


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    "text",
    [
        '"id","frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]","offset [photon]"\n'
        "1,3,10.5,20.25,110,900,50\n2,4,30,40,100,800,50\n",
        "frame,x [nm],y [nm]\n3,10.5,20.25\n4,30,40\n",
        "Ground-truth,frame,xnano,ynano,znano,intensity\n1, 3, 10.5, 20.25, 5.0, 900\n2, 4, 30.0, 40.0, 1.0, 800\n",
    ],
    ids=["thunderstorm", "plain", "epfl"],
)
def test_every_format_reads_to_the_same_positions(tmp_path, text):
    path = tmp_path / "locs.csv"
    path.write_text(text)
    table = read_localizations(path)
    assert table["frame"].tolist() == [3, 4]
    assert table["x"].tolist() == [10.5, 30.0]
    assert table["y"].tolist() == [20.25, 40.0]


def test_write_then_read_keeps_every_column(tmp_path):
    table = localization_table([1, 2, 2], [10.123456, 20.0, 30.0], [1.0, 2.0, 3.0], [100.0, 110.0, 120.0],
                               [500.0, 600.0, 700.0])
    path = write_localizations(table, tmp_path / "out.csv")
    assert path.read_text().splitlines()[0] == ",".join(f'"{c}"' for c in CSV_COLUMNS)
    back = read_localizations(path)
    for name in table.dtype.names:
        np.testing.assert_allclose(back[name], table[name], atol=1e-5)
    with pytest.raises(InputError, match="exists"):
        write_localizations(table, path)


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("frame,x [nm],z [nm]\n1,2,3\n")
    with pytest.raises(InputError, match=r"truth\.csv: no y column") as error:
        read_localizations(path)
    assert "\n" not in str(error.value)


def test_non_numbers_and_missing_file_are_input_errors(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("frame,x [nm],y [nm]\n1,2,oops\n")
    with pytest.raises(InputError, match="cannot read the numbers"):
        read_localizations(path)
    with pytest.raises(InputError, match="not found"):
        read_localizations(tmp_path / "absent.csv")


@pytest.mark.realdata
def test_real_files_in_all_three_formats(realdata):
    thunderstorm = read_localizations(realdata(DEEPSTORM + "positions_demo1.csv"))
    plain = read_localizations(realdata(DEEPSTORM + "DERIVED_Positions_Bundeld_Tubulin_Recreated.csv"))
    epfl = read_localizations(realdata(EPFL_TRUTH))
    assert (len(thunderstorm), thunderstorm["frame"].min(), thunderstorm["frame"].max()) == (4956, 1, 20)
    assert 106 < thunderstorm["sigma"].min() and thunderstorm["intensity"].max() < 2500
    assert (len(plain), plain["frame"].min(), plain["frame"].max()) == (81178, 1, 361)
    assert np.isnan(plain["sigma"]).all()
    assert len(epfl) == 49 and set(epfl["frame"].tolist()) == {20}
    # 256 px at 150 nm: the EPFL positions lie in the 38.4 µm field, in nm.
    assert 0 < epfl["x"].min() and epfl["x"].max() < 38400


# --------------------------------------------------------------------------- scoring


def test_two_estimates_near_one_truth_give_one_pair_and_one_false_positive():
    truth = localization_table(1, 1000.0, 1000.0)
    estimates = localization_table([1, 1], [1010.0, 1020.0], [1000.0, 1000.0])
    result = score(estimates, truth, radius=250)
    assert (result.tp, result.fp, result.fn) == (1, 1, 0)
    assert result.rmse_lateral == pytest.approx(10.0)
    assert result.pairs.tolist() == [[0, 0]]


def test_matching_is_per_frame():
    truth = localization_table([1, 2], [500.0, 500.0], [500.0, 500.0])
    estimates = localization_table([2, 3], [500.0, 500.0], [500.0, 500.0])
    result = score(estimates, truth)
    assert (result.tp, result.fp, result.fn) == (1, 1, 1)
    assert result.pairs.tolist() == [[0, 1]]


def test_rmse_and_efficiency_of_known_offsets():
    truth = localization_table([1, 1, 2, 2], [0.0, 5000.0, 0.0, 5000.0], [0.0, 0.0, 0.0, 0.0])
    # Offsets of 30/40/50 nm and one estimate out of range (300 nm): 3 pairs, 1 FP, 1 FN.
    estimates = localization_table([1, 1, 2, 2], [30.0, 5000.0, 50.0, 5300.0], [0.0, 40.0, 0.0, 0.0])
    result = score(estimates, truth, radius=250)
    assert (result.tp, result.fp, result.fn) == (3, 1, 1)
    rmse = math.sqrt((30**2 + 40**2 + 50**2) / 3)
    assert result.rmse_lateral == pytest.approx(rmse)
    assert (result.recall, result.precision, result.jaccard) == pytest.approx((0.75, 0.75, 0.6))
    # Sage et al. 2019: E = 100 - sqrt((100 - Jaccard%)^2 + (1 nm^-1 * RMSE)^2), here as a fraction.
    assert 100 * result.efficiency == pytest.approx(100 - math.sqrt((100 - 60) ** 2 + rmse**2))


def test_assignment_is_optimal_where_nearest_first_is_not():
    # Nearest-first pairs estimate 0 with truth 0 (70 nm) and leaves estimate 1 (90 nm from truth 0
    # only) unmatched; the optimal assignment pairs both.
    truth = localization_table([1, 1], [0.0, 150.0], [0.0, 0.0])
    estimates = localization_table([1, 1], [70.0, -90.0], [0.0, 0.0])
    result = score(estimates, truth, radius=100)
    assert (result.tp, result.fp, result.fn) == (2, 0, 0)
    assert sorted(result.pairs.tolist()) == [[0, 1], [1, 0]]


def test_nothing_found_scores_zero_recall():
    truth = localization_table([1, 1], [0.0, 500.0], [0.0, 0.0])
    result = score(localization_table([], [], []), truth)
    assert (result.tp, result.fp, result.fn, result.recall, result.jaccard) == (0, 0, 2, 0.0, 0.0)
    assert math.isnan(result.precision) and math.isnan(result.rmse_lateral)


def test_bad_score_inputs():
    truth = localization_table(1, 0.0, 0.0)
    with pytest.raises(InputError, match="radius"):
        score(truth, truth, radius=0)
    with pytest.raises(InputError, match="localization table"):
        score(np.zeros((3, 3)), truth)


@pytest.mark.realdata
def test_epfl_ground_truth_against_itself_and_shifted(realdata):
    truth = read_localizations(realdata(EPFL_TRUTH))
    same = score(truth, truth, radius=250)
    assert (same.jaccard, same.rmse_lateral, same.efficiency) == (1.0, 0.0, 1.0)
    shifted = truth.copy()
    shifted["x"] += 300.0
    far = score(shifted, truth, radius=250)
    # No emitter matches its own shifted copy; only emitters 11 -> 15 -> 14, about 300 nm apart
    # along x in this frame, land within 250 nm of a neighbour (175 and 102 nm).
    assert (far.tp, far.fp, far.fn) == (2, 47, 47)
    assert sorted(far.pairs.tolist()) == [[11, 15], [15, 14]]
    assert far.jaccard == pytest.approx(2 / 96)
    shifted["x"] -= 200.0  # 100 nm off: all pairs found, RMSE 100 nm, so efficiency 1 - sqrt(0 + 1) = 0
    near = score(shifted, truth, radius=250)
    assert (near.jaccard, near.rmse_lateral, near.efficiency) == pytest.approx((1.0, 100.0, 0.0))


@pytest.mark.realdata
def test_dense_real_ground_truth_scores_per_frame(realdata):
    truth = read_localizations(realdata(DEEPSTORM + "DERIVED_Positions_Bundeld_Tubulin_Recreated.csv"))
    keep = truth["frame"] <= 60  # 13 500 emitters, 225 per frame
    truth = truth[keep]
    rng = np.random.default_rng(0)
    jittered = truth.copy()
    jittered["x"] += rng.normal(0, 20, len(truth))
    jittered["y"] += rng.normal(0, 20, len(truth))
    result = score(jittered, truth, radius=250)
    # 20 nm per axis -> 28 nm lateral; dense bundles make a few pairs swap, which only lowers the RMSE.
    assert result.jaccard == 1.0
    assert 26.0 < result.rmse_lateral < 29.0
    dropped = score(jittered[::2], truth, radius=250)
    assert dropped.fn == len(truth) - len(jittered[::2]) and dropped.precision == 1.0


# --------------------------------------------------------------------------- finding


def test_localize_recovers_bilinear_positions_exactly():
    rng = np.random.default_rng(1)
    # Isolated emitters on a 12.5 nm grid: 3 frames, each a 5 x 5 lattice with random sub-pixel offsets.
    grid = (np.arange(5) + 0.5) * 1000.0
    xs, ys = np.meshgrid(grid, grid)
    n = xs.size
    truth = localization_table(
        np.repeat([1, 2, 3], n),
        np.tile(xs.ravel(), 3) + rng.uniform(-200, 200, 3 * n),
        np.tile(ys.ravel(), 3) + rng.uniform(-200, 200, 3 * n),
        intensity=rng.uniform(100, 1000, 3 * n),
    )
    image = render(truth, 12.5, (400, 400), method="bilinear", frames=3, weights="intensity")
    found = localize(image, 12.5, threshold=10.0)
    result = score(found, truth, radius=50)
    assert (result.tp, result.fp, result.fn) == (3 * n, 0, 0)
    assert result.rmse_lateral < 1e-3
    matched = truth[result.pairs[:, 1]]
    np.testing.assert_allclose(found["intensity"][result.pairs[:, 0]], matched["intensity"], rtol=1e-5)


def test_flat_peak_gives_one_localization_and_threshold_applies():
    stack = np.zeros((1, 20, 20), np.float32)
    stack[0, 5:7, 5:7] = 1.0  # a 2 x 2 plateau: its centre is the corner shared by the four pixels
    stack[0, 15, 15] = 0.4
    found = localize(stack, 100.0, threshold=0.5)
    assert len(found) == 1
    assert (found["x"][0], found["y"][0], found["intensity"][0]) == pytest.approx((600.0, 600.0, 4.0))
    assert len(localize(stack, 100.0, threshold=0.3)) == 2


def test_localize_refuses_a_single_image():
    with pytest.raises(InputError, match=r"stack of frames \(T, H, W\)"):
        localize(np.zeros((16, 16)), 100.0, threshold=1.0)
    with pytest.raises(InputError, match="pixel_size"):
        localize(np.zeros((1, 16, 16)), -1.0, threshold=1.0)


# --------------------------------------------------------------------------- rendering


def test_render_methods_keep_counts_and_centroid():
    table = localization_table([1, 1, 2], [1234.0, 2500.0, 3333.0], [987.0, 2500.0, 1111.0])
    for method in ("histogram", "bilinear", "gaussian"):
        image = render(table, 50.0, (100, 100), method=method, sigma=30.0)
        assert image.shape == (100, 100) and image.dtype == np.float32
        assert image.sum() == pytest.approx(3.0, abs=1e-4)
    one = render(table[:1], 50.0, (100, 100), method="gaussian", sigma=30.0)
    rows, cols = np.indices(one.shape)
    centroid = ((cols + 0.5) * one).sum() * 50.0 / one.sum(), ((rows + 0.5) * one).sum() * 50.0 / one.sum()
    assert centroid == pytest.approx((1234.0, 987.0), abs=1e-3)
    per_frame = render(table, 50.0, (100, 100), method="histogram", frames=2)
    assert per_frame.shape == (2, 100, 100) and per_frame.sum(axis=(1, 2)).tolist() == [2.0, 1.0]


def test_render_default_shape_covers_all_localizations():
    table = localization_table(1, [10.0, 990.0], [5.0, 420.0])
    image = render(table, 100.0, method="histogram")
    assert image.shape == (5, 10) and image.sum() == 2.0


@pytest.mark.realdata
def test_rendered_ground_truth_lines_up_with_the_real_stack(realdata):
    """The position convention: pixel j spans [j, j+1) * pixel size, as ThunderSTORM simulated it."""
    stack = read_image(realdata(DEEPSTORM + "testStack_SimulatedMicrotubules.tif")).data.compute()
    truth = read_localizations(realdata(DEEPSTORM + "DERIVED_Positions_Bundeld_Tubulin_Recreated.csv"))
    mean = stack.astype(np.float64).mean(axis=0).ravel()
    correlation = {}
    for shift in (-50.0, 0.0, 50.0):  # half a pixel either way
        moved = truth.copy()
        moved["x"] += shift
        moved["y"] += shift
        rendered = render(moved, 100.0, stack.shape[1:], method="gaussian", sigma=110.0).ravel()
        correlation[shift] = np.corrcoef(rendered, mean)[0, 1]
    assert correlation[0.0] > 0.99
    assert correlation[0.0] > max(correlation[-50.0], correlation[50.0]) + 0.05
