"""Checkpoints load without pickle, and every broken one gets a clear error."""

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from microsr.checkpoint import FORMAT_VERSION, load_checkpoint, load_state_into, save_checkpoint
from microsr.errors import InputError


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_keeps_weights_and_description(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 1, 3))
    path = save_checkpoint(tmp_path / "m.safetensors", net, {"scale": 2, "frames": 3})
    state, info = load_checkpoint(path)
    assert info["scale"] == 2 and info["frames"] == 3 and info["format_version"] == FORMAT_VERSION
    fresh = load_state_into(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 1, 3)), state, path)
    x = torch.randn(1, 1, 16, 16)
    torch.testing.assert_close(fresh(x), net(x))


def test_a_folder_means_its_best_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "last.safetensors", nn.Conv2d(1, 1, 1), {"which": "last"})
    assert load_checkpoint(tmp_path)[1]["which"] == "last"
    save_checkpoint(tmp_path / "best.safetensors", nn.Conv2d(1, 1, 1), {"which": "best"})
    assert load_checkpoint(tmp_path)[1]["which"] == "best"


def _pickle(tmp_path):
    path = tmp_path / "weights.safetensors"
    torch.save(nn.Conv2d(1, 1, 3).state_dict(), path)
    return path


def _foreign(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    return path


def _newer(tmp_path):
    path = tmp_path / "newer.safetensors"
    newer = json.dumps({"format_version": FORMAT_VERSION + 1})
    save_file({"w": torch.zeros(2)}, str(path), metadata={"microsr": newer})
    return path


@pytest.mark.parametrize(
    "make, expected",
    [(_pickle, "pickle"), (_foreign, "not written by microsr"), (_newer, "upgrade microsr"),
     (lambda d: d / "absent.safetensors", "not found")],
    ids=["pickle", "foreign safetensors", "newer format", "missing"],
)
def test_unloadable_checkpoints_raise_input_error_and_stay_intact(tmp_path, make, expected):
    path = make(tmp_path)
    before = _digest(path) if path.exists() else None
    with pytest.raises(InputError, match=expected) as error:
        load_checkpoint(path)
    assert path.name in str(error.value)
    assert (_digest(path) if path.exists() else None) == before


def test_missing_and_mismatched_weights_are_named(tmp_path):
    state = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 1, 3)).state_dict()
    del state["1.bias"]
    with pytest.raises(InputError, match="missing 1 weights"):
        load_state_into(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 1, 3)), state, "ckpt")
    with pytest.raises(InputError, match="another architecture"):
        load_state_into(nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 1, 3)), state, "ckpt")


def test_a_folder_named_like_a_shipped_model_says_what_it_hides(tmp_path, monkeypatch):
    from microsr.checkpoint import checkpoint_path

    monkeypatch.chdir(tmp_path)
    assert checkpoint_path("tirf9").name == "tirf9.safetensors"  # the shipped model, as no such file is here
    (tmp_path / "tirf9").mkdir()  # e.g. the folder its simulated training data went to
    with pytest.raises(InputError, match=r"hides the shipped model 'tirf9': give its file, .*tirf9\.safetensors"):
        checkpoint_path("tirf9")


def test_shipped_checkpoints_read_into_typed_descriptions():
    """The on-disk format is unchanged: every shipped model's JSON reads into a ModelDescription
    that says how its input is laid out."""
    from microsr.checkpoint import ModelDescription

    layouts = {}
    for name in ("smlm", "tirf9", "srrf5", "sim_lowlight"):
        _, info = load_checkpoint(name)
        d = ModelDescription.from_info(info, name)
        layouts[name] = (d.layout, d.scale, d.frames, d.channels and len(d.channels), d.input_pixel_size)
    assert layouts == {"smlm": ("single", 8, 1, None, 100.0), "tirf9": ("channels", 2, 9, 9, 62.6),
                       "srrf5": ("channels", 2, 5, 5, 100.0), "sim_lowlight": ("channels", 2, 15, 15, 60.0)}
    assert ModelDescription.from_info(load_checkpoint("smlm")[1]).smlm["threshold"] == 0.006


def test_a_damaged_description_is_an_input_error():
    from microsr.checkpoint import ModelDescription

    with pytest.raises(InputError, match="lacks 'normalization'"):
        ModelDescription.from_info({"scale": 2}, "m.safetensors")
    with pytest.raises(InputError, match="malformed"):
        ModelDescription.from_info({"scale": "two", "normalization": {}}, "m.safetensors")
