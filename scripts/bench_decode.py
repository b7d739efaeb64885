"""Decode throughput per transfer syntax, through the kit's cold path (``check_file``).

Run as ``python scripts/bench_decode.py --out results/bench_decode.json`` (``make bench-decode``).

Every file is read, decoded and put through the display chain (modality LUT, VOI window,
MONOCHROME1 inversion) by ``fedhealth.imaging.quarantine.check_file``, exactly as a site's scan does
on a cold cache; the resize and z-score after it are the same for every syntax and left out. Three
sets of images, each timed per syntax on the same pixels:

1. **PneumoniaMNIST** at each of ``--sizes`` (28: as bundled; 224: upsampled, bilinear): the first
   ``--n`` test images, converted by the kit's converter (``to_dicom``: 12 bits stored) and
   re-encoded here with pydicom's ``Dataset.compress``: RLE (pylibjpeg-rle), JPEG 2000 lossless and
   lossy (pylibjpeg-openjpeg, which cannot encode an image under 32 px a side at its fixed 6
   resolution levels: those rows are recorded as skipped). No JPEG, JPEG lossless or JPEG-LS
   encoder is installed (pydicom has none for JPEG; JPEG-LS needs pyjpegls), so those syntaxes are
   timed on set 3.
2. **Chest radiograph, 1955×1841** (pydicom-data's RG1, MONOCHROME1, 15 bits): the uncompressed file,
   its JPEG 2000 lossless and lossy versions as shipped, and an RLE version encoded here.
3. **pydicom's own test files** for the syntaxes nothing here encodes, each next to its
   uncompressed twin where one ships (JPEG baseline, JPEG lossless, JPEG-LS lossless).

Each set is timed ``--passes`` times over its files (small files are repeated to about ``--min-images``
decodes a pass); the fastest pass is reported (the machine may be shared), all passes are kept.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000, UID, JPEG2000Lossless, RLELossless

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "custom"))

from fedhealth.imaging.dicom_reader import quiet_pydicom  # noqa: E402
from fedhealth.imaging.quarantine import check_file  # noqa: E402
from fedhealth_tools.imaging.converter import ScannerProfile, medmnist_file, to_dicom  # noqa: E402

# (syntax, compress() options, label); None: the converter's own uncompressed output.
ENCODED = (
    (None, {}, "uncompressed (Explicit VR Little Endian)"),
    (RLELossless, {}, "RLE Lossless"),
    (JPEG2000Lossless, {}, "JPEG 2000 lossless"),
    (JPEG2000, {"j2k_cr": [10]}, "JPEG 2000 lossy (ratio 10)"),
)
J2K_MIN_SIDE = 32
J2K_SKIPPED = "openjpeg's encoder needs at least 32 px a side (6 resolution levels, not settable via pydicom)"
# The chest radiograph: (pydicom-data file or None to encode RLE from the first, label).
RADIOGRAPH = (
    ("RG1_UNCR.dcm", "uncompressed (Explicit VR Little Endian)"),
    (None, "RLE Lossless"),
    ("RG1_J2KR.dcm", "JPEG 2000 lossless"),
    ("RG1_J2KI.dcm", "JPEG 2000 lossy"),
)
# Syntaxes nothing here encodes: pydicom test files, the twin first.
TEST_FILES = (
    ("SC_rgb_jpeg_dcmd.dcm", "uncompressed twin of SC_rgb_jpeg.dcm"),
    ("SC_rgb_jpeg.dcm", "JPEG baseline (8-bit)"),
    ("SC_rgb.dcm", "uncompressed twin of SC_rgb_jpeg_gdcm.dcm"),
    ("SC_rgb_jpeg_gdcm.dcm", "JPEG lossless (process 14 SV1)"),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEG lossless (process 14 SV1), grayscale"),
    ("MR_small.dcm", "uncompressed twin of MR_small_jpeg_ls_lossless.dcm"),
    ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS lossless"),
)


def _time(files: list[Path], passes: int, min_images: int) -> dict:
    """Fastest of ``passes`` passes of ``check_file`` over ``files`` (repeated to ``min_images``)."""
    root = files[0].parent
    repeat = max(1, -(-min_images // len(files)))
    seconds = []
    for _ in range(passes):
        start = time.perf_counter()
        for _ in range(repeat):
            for path in files:
                entry = check_file(path, root).entry
                if entry is not None:
                    raise RuntimeError(f"{path.name} was quarantined: {entry.reason}: {entry.detail}")
        seconds.append(time.perf_counter() - start)
    n = repeat * len(files)
    best = min(seconds)
    return {"images": n, "seconds": best, "images_per_s": n / best, "passes_s": seconds}


def _row(label: str, source: str, files: list[Path], timing: dict) -> dict:
    with quiet_pydicom():
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    pixels = int(ds.Rows) * int(ds.Columns)
    return {
        "syntax": label,
        "transfer_syntax": syntax.name,
        "uid": str(syntax),
        "source": source,
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "samples_per_pixel": int(ds.SamplesPerPixel),
        "bits_stored": int(ds.BitsStored),
        "files": len(files),
        "mean_file_bytes": float(np.mean([p.stat().st_size for p in files])),
        **timing,
        "megapixels_per_s": timing["images_per_s"] * pixels / 1e6,
    }


def _images(n: int, size: int) -> np.ndarray:
    images = np.load(medmnist_file("pneumoniamnist"))["test_images"][:n]
    if size == images.shape[1]:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


def _converted(work: Path, n: int, size: int, passes: int, min_images: int) -> list[dict]:
    base = [to_dicom(im, ScannerProfile(), ["bench-decode", str(i)]) for i, im in enumerate(_images(n, size))]
    rows = []
    for syntax, options, label in ENCODED:
        folder = work / f"converted_{size}" / (syntax or "native")
        folder.mkdir(parents=True)
        try:
            for i, ds in enumerate(base):
                ds = copy.deepcopy(ds)
                if syntax is not None:
                    ds.compress(syntax, **options)
                ds.save_as(folder / f"img_{i:04d}.dcm", enforce_file_format=True)
        except RuntimeError:
            if size >= J2K_MIN_SIDE:
                raise
            rows.append({"syntax": label, "rows": size, "columns": size, "skipped": J2K_SKIPPED})
            continue
        files = sorted(folder.iterdir())
        how = "the kit's converter" + ("" if syntax is None else ", re-encoded by pydicom Dataset.compress")
        rows.append(_row(label, how, files, _time(files, passes, min_images)))
        print(f"converted {size} px, {label}: {rows[-1]['images_per_s']:.0f} images/s")
    return rows


def _radiograph(work: Path, passes: int) -> list[dict]:
    folder = work / "radiograph"
    folder.mkdir()
    rows = []
    for name, label in RADIOGRAPH:
        if name is None:
            ds = pydicom.dcmread(get_testdata_file(RADIOGRAPH[0][0], download=False))
            ds.compress(RLELossless)
            path, source = folder / "RG1_RLE.dcm", "RG1_UNCR.dcm re-encoded by pydicom Dataset.compress"
            ds.save_as(path, enforce_file_format=True)
        else:
            path, source = folder / name, f"pydicom-data {name}"
            shutil.copy(get_testdata_file(name, download=False), path)
        rows.append(_row(label, source, [path], _time([path], passes, 1)))
        print(f"radiograph {label}: {rows[-1]['images_per_s']:.2f} images/s")
    return rows


def _test_files(work: Path, passes: int, min_images: int) -> list[dict]:
    rows = []
    for name, label in TEST_FILES:
        folder = work / "test_files" / name
        folder.mkdir(parents=True)
        path = folder / name
        shutil.copy(get_testdata_file(name, download=False), path)
        with quiet_pydicom():
            pixels = pydicom.dcmread(path, stop_before_pixels=True)
        n = max(3, min_images * 4096 // (int(pixels.Rows) * int(pixels.Columns)))  # fewer for large files
        rows.append(
            _row(label, f"pydicom test file {name}", [path], _time([path], passes, min(n, min_images)))
        )
        print(f"test file {label}: {rows[-1]['images_per_s']:.0f} images/s")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_decode.json"))
    parser.add_argument("--n", type=int, default=200, help="PneumoniaMNIST images converted (set 1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 224], help="PneumoniaMNIST sides (px)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes per syntax; the fastest counts")
    parser.add_argument("--min-images", type=int, default=200, help="decodes per pass of a small file")
    parser.add_argument("--note", default="", help="how the machine was loaded, for the record")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = {
            **{
                f"pneumoniamnist_{size}": _converted(work, args.n, size, args.passes, args.min_images)
                for size in args.sizes
            },
            "radiograph_rg1": _radiograph(work, args.passes),
            "test_files": _test_files(work, args.passes, args.min_images),
        }
    record = {
        "path": "fedhealth.imaging.quarantine.check_file: read, decode, modality LUT, VOI, inversion",
        "decoders": {name: _version(name) for name in ("pydicom", "pylibjpeg", "libjpeg", "openjpeg", "rle")},
        "sets": sets,
        "settings": {
            "n": args.n,
            "passes": args.passes,
            "min_images": args.min_images,
            "reported": "fastest pass",
        },
        "command": shlex.join(["python", "scripts/bench_decode.py", *_without_note(argv)]),
        "hardware": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "note": args.note,
        },
        "seconds": time.perf_counter() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out} in {record['seconds']:.0f} s")
    return 0


def _without_note(argv: list[str] | None) -> list[str]:
    """The command's arguments less ``--note`` and its text (recorded on its own)."""
    args, out = list(sys.argv[1:] if argv is None else argv), []
    skip = False
    for arg in args:
        if skip or arg == "--note":
            skip = not skip
            continue
        if not arg.startswith("--note="):
            out.append(arg)
    return out


def _version(module: str) -> str:
    return str(getattr(__import__(module), "__version__", "unknown"))


if __name__ == "__main__":
    sys.exit(main())
