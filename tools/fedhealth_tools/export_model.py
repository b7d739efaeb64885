"""``fedhealth export-model RESULT``: the global model of a downloaded job result as TorchScript and
ONNX, checked against the torch model, and the model card that names the exported files.

The parity check runs on ``--inputs`` (a ``.npy`` batch of the run's test inputs, batch first) where
given; otherwise a chest X-ray model (1 channel) is checked on the bundled PneumoniaMNIST test
images, and a tabular model on seeded standard-normal rows (the console says which).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads only when the command runs (the CLI imports this module at start)
    import torch

MEDMNIST = Path(__file__).resolve().parent / "data" / "medmnist" / "pneumoniamnist.npz"
SAMPLES = 64


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's arguments."""
    parser.add_argument("result", type=Path, help="the folder download_job (admin console) or the API wrote")
    parser.add_argument("--out", type=Path, help="where to write the model files (default: <result>/export)")
    parser.add_argument(
        "--inputs", type=Path, help="a .npy batch of test inputs for the parity check (batch first, float)"
    )
    parser.add_argument("--samples", type=int, default=SAMPLES, help="inputs checked (default %(default)s)")


def medmnist_test_images(samples: int, *, size: int = 28, path: Path = MEDMNIST) -> torch.Tensor:
    """The first ``samples`` PneumoniaMNIST test images, scaled to [0, 1], shape ``(n, 1, size, size)``
    (bilinear resizing from 28x28 where ``size`` differs, as a job's ``image_size`` does)."""
    import numpy as np
    import torch

    with np.load(path) as data:
        images = torch.from_numpy(data["test_images"][:samples].astype(np.float32) / 255.0).unsqueeze(1)
    if size != images.shape[-1]:
        images = torch.nn.functional.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False
        )
    return images


def image_size(config: object) -> int | None:
    """The first ``image_size`` in a job config (the sites' resize), None where there is none."""
    if isinstance(config, dict):
        if isinstance(config.get("image_size"), int):
            return config["image_size"]
        config = list(config.values())
    if isinstance(config, list):
        return next((s for s in map(image_size, config) if s is not None), None)
    return None


def default_inputs(
    model: torch.nn.Module, samples: int, *, size: int | None = None
) -> tuple[torch.Tensor, str]:
    """Inputs for the parity check when none are given, and a sentence saying what they are."""
    import torch

    if getattr(model, "in_channels", None) == 1:
        images = medmnist_test_images(samples, size=size or 28)
        return (
            images,
            f"{samples} bundled PneumoniaMNIST test images at {images.shape[-1]}x{images.shape[-1]}",
        )
    if hasattr(model, "in_features"):
        rows = torch.randn(samples, model.in_features, generator=torch.Generator().manual_seed(0))
        return rows, f"{samples} seeded standard-normal rows (pass --inputs for the run's test rows)"
    raise ValueError(f"no default inputs for a {type(model).__name__}; pass --inputs FILE.npy")


def run_export(args: argparse.Namespace) -> int:
    """Export, check, and write the model card; 1 with the reason on stderr when any step fails."""
    import numpy as np
    import torch

    from fedhealth.models.export import export_model, load_global_model
    from fedhealth.reports.job_result import read_job_result
    from fedhealth.reports.model_card import build_model_card, write_model_card
    from fedhealth.reports.run_report import build_report

    out = args.out or Path(args.result) / "export"
    try:
        result = read_job_result(args.result)
        model = load_global_model(result.folder, result.server_config)
        if args.inputs:
            inputs, what = (
                torch.from_numpy(np.load(args.inputs).astype(np.float32)),
                f"inputs of {args.inputs}",
            )
        else:
            inputs, what = default_inputs(model, args.samples, size=image_size(result.client_config))
        exported = export_model(model, inputs, out)
        report = build_report(
            result.job, result.record, result.cross, client_config=result.client_config,
            server_config=result.server_config, audit=None,
        )  # fmt: skip
        card = build_model_card(
            report,
            client_config=result.client_config,
            server_config=result.server_config,
            export=exported.as_dict(),
        )
        paths = write_model_card(card, out)
    except (OSError, ValueError, RuntimeError) as exc:  # ParityError is a ValueError
        print(f"fedhealth export-model failed: {exc}", file=sys.stderr)
        return 1
    print(f"parity on {what}: " + json.dumps({k: v for k, v in exported.as_dict().items() if "diff" in k}))
    print("wrote: " + ", ".join(str(p) for p in (exported.torchscript, exported.onnx, *paths)))
    return 0
