"""Export a job's global model to TorchScript and ONNX, checked against the torch model.

The server of a PyTorch job keeps its global model in ``FL_global_model.pt`` (FLARE's
``PTFileModelPersistor``, and the kit's ``TabularModelPersistor`` that extends it): a dict whose
``"model"`` entry is the state dict. :func:`load_global_model` rebuilds the torch module from it (a
``TabularNet`` from the weights' shapes; an ``ImageModel`` from the persistor's ``model`` arguments in
the job's server config), :func:`export_model` writes ``model.torchscript.pt`` (``torch.jit.trace``)
and ``model.onnx`` (``torch.onnx.export``, batch axis dynamic) and checks both on the given inputs with
ONNX Runtime: the largest absolute difference from the torch model's outputs must be at most ``atol``
(1e-5), else :class:`ParityError` says by how much.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedhealth.models.image_model import ImageModel, load_image_weights
from fedhealth.models.state import tabular_from_weights

GLOBAL_MODEL_FILE = "FL_global_model.pt"  # PTFileModelPersistor's default global_model_file_name
TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
EXPORT_FILE = "export.json"
ATOL = 1e-5
OPSET = 17
_IMAGE_MODEL_PATH = "fedhealth.models.image_model.ImageModel"


class ParityError(ValueError):
    """An exported model's outputs differ from the torch model's by more than the tolerance."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and measured (differences: largest absolute, over all outputs)."""

    torchscript: Path
    onnx: Path
    samples: int
    input_shape: tuple[int, ...]
    torchscript_max_abs_diff: float
    onnx_max_abs_diff: float
    atol: float

    def as_dict(self) -> dict:
        """JSON-ready: paths as strings."""
        data = asdict(self)
        data["torchscript"], data["onnx"] = str(self.torchscript), str(self.onnx)
        data["input_shape"] = list(self.input_shape)
        return data


def find_global_model(folder: Path) -> Path:
    """The server's ``FL_global_model.pt`` in a downloaded job result (the shallowest one).

    Raises:
        FileNotFoundError: none in the folder (a tree job's model is its JSON booster, not exported here).
    """
    found = sorted(Path(folder).rglob(GLOBAL_MODEL_FILE), key=lambda p: (len(p.parts), p))
    if not found:
        raise FileNotFoundError(
            f"{folder}: no {GLOBAL_MODEL_FILE} (the server's global model of a PyTorch job; "
            "download the whole job result)"
        )
    return found[0]


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a persistor's file (the ``"model"`` entry, or a bare state dict).

    Raises:
        ValueError: the file is not a torch checkpoint of tensors (the message names it).
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    weights = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(weights, dict) or not weights:
        raise ValueError(f"{path}: holds no state dict (expected PTFileModelPersistor's {{'model': ...}})")
    return {k: torch.as_tensor(v) for k, v in weights.items()}


def image_model_args(server_config: dict | None) -> dict | None:
    """The ``ImageModel`` arguments of the job's persistor, or None when its model is not an ImageModel."""
    for component in (server_config or {}).get("components", []):
        model = (component.get("args") or {}).get("model")
        if isinstance(model, dict) and model.get("path") == _IMAGE_MODEL_PATH:
            return dict(model.get("args") or {})
    return None


def build_global_model(weights: dict[str, torch.Tensor], server_config: dict | None) -> nn.Module:
    """The torch module of the weights, in eval mode: a TabularNet, or the config's ImageModel.

    Raises:
        ValueError: the weights fit neither (the message lists what was tried).
    """
    args = image_model_args(server_config)
    if args is not None:
        model = load_image_weights(ImageModel(**{**args, "seed": None}), weights)
    else:
        try:
            model = tabular_from_weights(weights)
        except ValueError as exc:
            raise ValueError(
                f"the global model is not a TabularNet and the server config names no {_IMAGE_MODEL_PATH} "
                f"({exc})"
            ) from exc
    return model.eval()


def load_global_model(folder: Path, server_config: dict | None = None) -> nn.Module:
    """The global model of a downloaded job result, rebuilt as a torch module in eval mode."""
    return build_global_model(read_weights(find_global_model(folder)), server_config)


def _outputs(model, inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(inputs).detach().cpu().numpy().astype(np.float64)


def check_parity(
    model: nn.Module, torchscript: Path, onnx_file: Path, inputs: torch.Tensor, *, atol: float = ATOL
) -> tuple[float, float]:
    """Largest absolute output differences (TorchScript, ONNX) from ``model`` on ``inputs``.

    Raises:
        ParityError: either difference exceeds ``atol`` (the message gives both and the sample count).
    """
    import onnxruntime as ort

    expected = _outputs(model.eval(), inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's notice; the format still loads
        scripted = _outputs(torch.jit.load(str(torchscript), map_location="cpu"), inputs)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    onnx_out = session.run(None, {name: inputs.detach().cpu().numpy().astype(np.float32)})[0]
    if scripted.shape != expected.shape or onnx_out.shape != expected.shape:
        raise ParityError(
            f"output shapes differ: torch {expected.shape}, TorchScript {scripted.shape}, "
            f"ONNX {onnx_out.shape}"
        )
    ts_diff = float(np.abs(scripted - expected).max())
    onnx_diff = float(np.abs(onnx_out.astype(np.float64) - expected).max())
    if ts_diff > atol or onnx_diff > atol:
        raise ParityError(
            f"exported model differs from the torch model on {len(inputs)} inputs: max abs diff "
            f"TorchScript {ts_diff:.3g}, ONNX {onnx_diff:.3g} (tolerance {atol:g})"
        )
    return ts_diff, onnx_diff


def export_model(
    model: nn.Module, inputs: torch.Tensor, out_dir: Path, *, atol: float = ATOL, opset: int = OPSET
) -> ExportResult:
    """Write ``model.torchscript.pt`` and ``model.onnx`` of ``model`` and check them on ``inputs``.

    Args:
        model: the torch model (put in eval mode).
        inputs: a batch of real inputs (a run's test data), float32; the first axis is the batch.
        out_dir: where to write the two files and ``export.json`` (the measured differences).
        atol: largest absolute output difference accepted.
        opset: the ONNX opset.

    Raises:
        ValueError: ``inputs`` is empty.
        ParityError: an export's outputs differ by more than ``atol``.
    """
    if inputs.ndim < 2 or len(inputs) == 0:
        raise ValueError(f"inputs must be a non-empty batch (batch first), got shape {tuple(inputs.shape)}")
    model = model.eval()
    inputs = inputs.detach().to(torch.float32).cpu()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    example = inputs[: min(len(inputs), 2)]
    ts_path, onnx_path = out_dir / TORCHSCRIPT_FILE, out_dir / ONNX_FILE
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates torch.jit (still works)
        torch.jit.trace(model, example).save(str(ts_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based ONNX exporter's notice
        torch.onnx.export(
            model,
            (example,),
            str(onnx_path),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    ts_diff, onnx_diff = check_parity(model, ts_path, onnx_path, inputs, atol=atol)
    result = ExportResult(ts_path, onnx_path, len(inputs), tuple(inputs.shape[1:]), ts_diff, onnx_diff, atol)
    (out_dir / EXPORT_FILE).write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return result
