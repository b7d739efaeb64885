"""Decode throughput per transfer syntax: `make bench-decode` (``results/bench_decode.json``)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import load, nbytes, table

SET_LABELS = {
    "radiograph_rg1": "chest radiograph (RG1)",
    "test_files": "pydicom test files",
}


def _set_label(key: str) -> str:
    if key.startswith("pneumoniamnist_"):
        return f"PneumoniaMNIST, {key.rsplit('_', 1)[1]} px"
    return SET_LABELS.get(key, key)


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.2f}"


def decode_throughput(results: Path) -> str:
    data = load(results, "bench_decode.json")
    rows = []
    for key, set_rows in data["sets"].items():
        reference = None  # the set's uncompressed row (test files: the twin just before)
        for r in set_rows:
            if r["syntax"].startswith("uncompressed"):
                reference = r
            size = f"{r['rows']}×{r['columns']}"
            if "skipped" in r:
                skipped = f"skipped: {r['skipped']}"
                rows.append([_set_label(key), r["syntax"], size, "–", "–", "–", "–", "–", "–", skipped])
                continue
            size += f"×{r['samples_per_pixel']}" if r["samples_per_pixel"] > 1 else ""
            rows.append(
                [
                    _set_label(key),
                    r["syntax"],
                    f"{size}, {r['bits_stored']} bit",
                    nbytes(r["mean_file_bytes"]),
                    f"{r['images']:,}",
                    f"{r['seconds']:.2f}",
                    _rate(r["images_per_s"]),
                    f"{r['megapixels_per_s']:.1f}",
                    "–" if reference is None else f"{r['images_per_s'] / reference['images_per_s']:.2f}",
                    r["source"],
                ]
            )
    header = ["images", "syntax", "size", "file", "decodes", "seconds", "images/s", "Mpixel/s"]
    header += ["× uncompressed", "source"]
    return table(header, "llllrrrrrl", rows)


def decode_setup(results: Path) -> str:
    data = load(results, "bench_decode.json")
    hw = data["hardware"]
    versions = ", ".join(f"{k} {v}" for k, v in data["decoders"].items())
    load_avg = ", ".join(f"{x:.1f}" for x in hw["load_average"])
    return "\n".join(
        [
            f"- Command: `{data['command']}` ({data['seconds']:.0f} s); fastest of "
            f"{data['settings']['passes']} passes per row.",
            f"- Machine: `{hw['platform']}`, {hw['cpu_count']} cores, load average {load_avg} at the end"
            + (f"; {hw['note']}." if hw.get("note") else "."),
            f"- Decoders: {versions}.",
        ]
    )
