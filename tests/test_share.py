"""bioimage.io packages out (`microsr export`) and in (`microsr predict NAME.zip`, `microsr.load_model("NAME.zip")`).

The exported packages are checked by bioimageio.core's own test (offline, every weight format, at
the package's declared relative tolerance of 1e-4), and re-imported packages must reproduce
microsr's own prediction. Building the ONNX weights (torch.onnx's exporter) takes most of the
time, so each package is built once per module.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("bioimageio.core", reason="the bioimageio extra is not installed: pip install 'microsr[bioimageio]'")

from bioimageio.core import predict as bioimageio_predict  # noqa: E402
from bioimageio.core import test_model as run_bioimageio_test  # noqa: E402  (not collected as a test)
from bioimageio.spec import save_bioimageio_package  # noqa: E402
from bioimageio.spec.model import v0_5 as spec  # noqa: E402

import microsr  # noqa: E402
from microsr.checkpoint import save_checkpoint  # noqa: E402
from microsr.cli.main import main  # noqa: E402
from microsr.data.normalize import PercentileNormalizer  # noqa: E402
from microsr.errors import InputError  # noqa: E402
from microsr.io import read_image  # noqa: E402
from microsr.models import create_model, receptive_field  # noqa: E402
from microsr.predict.restorer import load_model as load_microsr_model  # noqa: E402
from microsr.samples import sample_path  # noqa: E402
from microsr.share.bioimageio import TOLERANCE, WEIGHT_FORMATS  # noqa: E402

ALL = WEIGHT_FORMATS


def _model_folder(folder: Path, *, frames: int = 1, arch: dict | None = None) -> Path:
    """A small untrained model with random weights everywhere (a new model's zero head would hide the network)."""
    torch.manual_seed(frames)
    model = create_model(**(arch or {"name": "resunet", "in_channels": frames, "scale": 2, "widths": [8, 16]}))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    folder.mkdir(parents=True)
    save_checkpoint(folder / "best.safetensors", model, {
        "arch": model.arch, "scale": model.scale, "frames": frames, "frame_axis": "T",
        "receptive_field": receptive_field(model), "normalization": PercentileNormalizer().to_dict(),
        "input_pixel_size": 40.0, "output_pixel_size": 20.0})
    (folder / "history.json").write_text(json.dumps([{"epoch": 1, "step": 10, "val_psnr": 30.5, "val_ssim": 0.8,
                                                     "bicubic_psnr": 29.0, "seconds": 12.0}]))
    return folder


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Packages of the default architecture (single frame), a 3-frame model and the shipped `smlm` model."""
    root = tmp_path_factory.mktemp("share")
    return {
        "sr": microsr.export(_model_folder(root / "sr"), root / "sr.zip"),
        "frames3": microsr.export(_model_folder(root / "f3", frames=3), root / "frames3.zip"),
        "smlm": microsr.export("smlm", root / "smlm.zip"),
    }


def _passes(package: Path, weight_format: str) -> None:
    summary = run_bioimageio_test(package, weight_format=weight_format, devices=["cpu"])
    failures = [d.name + ": " + "; ".join(e.msg for e in d.errors) for d in summary.details if d.errors]
    assert summary.status == "passed", failures


@pytest.mark.slow
@pytest.mark.parametrize("which", ["sr", "frames3", "smlm"])
@pytest.mark.parametrize("weight_format", ALL)
def test_bioimageio_test_passes_offline(packages, which, weight_format, monkeypatch):
    monkeypatch.setenv("BIOIMAGEIO_OFFLINE", "true")  # the test must not need the network
    _passes(packages[which], weight_format)


def test_package_contents(packages):
    with zipfile.ZipFile(packages["sr"]) as package:
        names = set(package.namelist())
        rdf = package.read("rdf.yaml").decode()
        card = package.read("README.md").decode()
        source = package.read("resunet.py").decode()
    assert {"weights.pt", "weights_torchscript.pt", "weights.onnx", "cover.png", "test_input.npy",
            "test_output.npy", "resunet.py", "README.md"} <= names
    # A tolerance no looser than 1e-4 relative; sizes min + n * step with the halo of the receptive field.
    assert f"relative_tolerance: {TOLERANCE}" in rdf or "relative_tolerance: 0.0001" in rdf
    restorer = load_microsr_model(packages["sr"].parent / "sr")
    halo = restorer.info["receptive_field"]
    assert f"halo: {halo * 2}" in rdf and "step: 2" in rdf
    assert "mode: reflect" in rdf  # the context beyond the image is reflected, as microsr's tiles do
    assert "import microsr" not in source and "from microsr." not in source.replace(">>> from microsr.", "")
    assert "30.50" in card and "29.00" in card and "10.1038/s41592-021-01080-z" in card
    assert "hi - lo" in card  # the card says how the output's normalisation differs from microsr's


def test_refuses_a_custom_architecture(tmp_path):
    save_checkpoint(tmp_path / "custom.safetensors", torch.nn.Conv2d(1, 1, 3),
                    {"scale": 1, "normalization": PercentileNormalizer().to_dict()})
    restorer = load_microsr_model(tmp_path / "custom.safetensors", model=torch.nn.Conv2d(1, 1, 3))
    with pytest.raises(InputError, match="custom architecture"):
        microsr.export(restorer, tmp_path / "custom.zip")
    assert not (tmp_path / "custom.zip").exists()


def test_cli_refuses_bad_output_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export", "sim_lowlight", "-o", str(tmp_path / "x.tif")])
    assert exit_.value.code == 2
    assert "x.tif: a bioimage.io package is a .zip file" in capsys.readouterr().err


@pytest.mark.parametrize("weight_format", ALL)
def test_reimported_export_matches_microsr(packages, weight_format):
    image = read_image(sample_path()).data[100:190, 60:170].compute()
    expected = load_microsr_model(packages["sr"].parent / "sr").predict(image, precision="fp32", tile=64)
    restorer = microsr.load_model(packages["sr"], weight_format=weight_format)
    got = restorer.predict(image, precision="fp32", tile=64)
    assert got.shape == expected.shape == (180, 220)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_cli_predicts_with_a_package(packages, tmp_path):
    output = tmp_path / "restored.tif"
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(packages["sr"]), str(sample_path()), "-o", str(output), "--precision", "fp32",
              "--device", "cpu", "--force"])
    assert exit_.value.code == 0
    assert read_image(output).shape == (1024, 1024)


_PLAIN_NET = '''
import torch
from torch import nn


class Denoiser(nn.Module):
    """A plain two-level U-Net for same-size restoration."""

    def __init__(self, width=8):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.mid = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                 nn.Upsample(scale_factor=2))
        self.out = nn.Conv2d(2 * width, 1, 3, padding=1)

    def forward(self, x):
        features = self.down(x)
        return self.out(torch.cat([features, self.mid(features)], dim=1))
'''


def test_foreign_package_matches_bioimageio_core(tmp_path):
    """A package made without microsr (bioimageio.spec around a plain PyTorch U-Net) runs in microsr as in bioimageio.core."""
    source = tmp_path / "denoiser.py"
    source.write_text(_PLAIN_NET)
    readme = tmp_path / "README.md"
    readme.write_text("# plain denoiser\n")
    namespace: dict = {}
    exec(_PLAIN_NET, namespace)
    torch.manual_seed(0)
    net = namespace["Denoiser"]().eval()
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    scripted = torch.jit.trace(net, torch.rand(1, 1, 32, 32))
    scripted.save(str(tmp_path / "weights_torchscript.pt"))
    image = read_image(sample_path()).data[200:264, 200:280].compute().astype(np.float32)
    x = image[None, None]
    with torch.no_grad():
        lo, hi = np.percentile(x, [1, 99])
        y = net(torch.from_numpy(((x - lo) / (hi - lo + 1e-6)).astype(np.float32))).numpy() * 2.0 + 1.0
    np.save(tmp_path / "in.npy", x)
    np.save(tmp_path / "out.npy", y)
    axes_in = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("raw")]),
               *(spec.SpaceInputAxis(id=spec.AxisId(a), size=spec.ParameterizedSize(min=24, step=8))
                 for a in "yx")]
    axes_out = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("restored")]),
                *(spec.SpaceOutputAxis(id=spec.AxisId(a), size=spec.SizeReference(
                    tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId(a))) for a in "yx")]
    descr = spec.ModelDescr(
        name="plain denoiser", description="a test package made without microsr",
        authors=[spec.Author(name="test")], cite=[spec.CiteEntry(text="test", doi=spec.Doi("10.1000/test"))],
        license="MIT", documentation=spec.FileDescr(source=readme),
        inputs=[spec.InputTensorDescr(
            id=spec.TensorId("raw"), axes=axes_in, test_tensor=spec.FileDescr(source=tmp_path / "in.npy"),
            # No halo: bioimageio.core 0.11's predict pads a sample by the halo with zeros (whatever `pad` says)
            # before computing its statistics, where microsr reflects the image (as the exported packages declare).
            preprocessing=[spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(min_percentile=1, max_percentile=99))])],
        outputs=[spec.OutputTensorDescr(
            id=spec.TensorId("restored"), axes=axes_out, test_tensor=spec.FileDescr(source=tmp_path / "out.npy"),
            postprocessing=[spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=2.0, offset=1.0))])],
        weights=spec.WeightsDescr(
            pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                source=tmp_path / "weights.pt", pytorch_version=spec.Version(torch.__version__.split("+")[0]),
                architecture=spec.ArchitectureFromFileDescr(source=source, callable="Denoiser", kwargs={})),
            torchscript=spec.TorchscriptWeightsDescr(
                source=tmp_path / "weights_torchscript.pt", parent="pytorch_state_dict",
                pytorch_version=spec.Version(torch.__version__.split("+")[0]))),
    )
    package = save_bioimageio_package(descr, output_path=tmp_path / "plain.zip")
    reference = bioimageio_predict(model=package, inputs=x).members["restored"].data.to_numpy()[0, 0]
    for weight_format in ("torchscript", "pytorch_state_dict"):
        got = microsr.load_model(package, weight_format=weight_format).predict(image, precision="fp32")
        assert got.shape == reference.shape == image.shape
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
