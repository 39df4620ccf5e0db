"""Encode/decode throughput of hpcsynth's shared table transform against SDV's RDT HyperTransformer.

Both sides transform the same 1,000,000 rows of the MDS cohort (4,427-patient profile scaled up), columns for
columns: numbers to a standard normal (hpcsynth's quantile map; RDT's GaussianNormalizer) with a missingness
indicator, categories and mutation flags one-hot (RDT's OneHotEncoder). Fitting is timed separately;
throughput counts encode (transform) and decode (reverse_transform) on the full table. Prints rows/s and the
ratio; the last line is hpcsynth's speed-up on encode + decode. Target: at least 5x.

Usage: python benchmarks/transforms.py [--rows N]
"""
from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import numpy as np
import pandas as pd


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def cohort(rows: int) -> tuple[pd.DataFrame, list[str]]:
    from hpcsynth.data.mds import MDS_METADATA, simulate_mds

    frame = simulate_mds(n_patients=rows, seed=0).drop(columns=["patient_id", "site"])
    categorical = [c for c in frame.columns if c in MDS_METADATA["categorical"] or frame[c].dropna().isin([0, 1]).all()]
    return frame, categorical


def run_hpcsynth(frame: pd.DataFrame, categorical: list[str]) -> dict[str, float]:
    from hpcsynth.data.transformer import TableTransformer

    t, fit = timed(lambda: TableTransformer(categorical).fit(frame))
    encoded, enc = timed(lambda: t.encode(frame))
    _, dec = timed(lambda: t.decode(encoded, np.random.default_rng(0)))
    return {"fit": fit, "encode": enc, "decode": dec, "width": encoded.shape[1]}


def run_rdt(frame: pd.DataFrame, categorical: list[str]) -> dict[str, float]:
    from rdt import HyperTransformer
    from rdt.transformers import GaussianNormalizer, OneHotEncoder

    data = frame.copy()
    for column in categorical:
        data[column] = data[column].astype(object).where(data[column].notna(), None).astype(str)
    ht = HyperTransformer()
    ht.set_config({
        "sdtypes": {c: "categorical" if c in categorical else "numerical" for c in data.columns},
        "transformers": {c: OneHotEncoder() if c in categorical else
                         GaussianNormalizer(missing_value_generation="from_column") for c in data.columns},
    })
    _, fit = timed(lambda: ht.fit(data))
    encoded, enc = timed(lambda: ht.transform(data))
    _, dec = timed(lambda: ht.reverse_transform(encoded))
    return {"fit": fit, "encode": enc, "decode": dec, "width": encoded.shape[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    frame, categorical = cohort(args.rows)
    print(f"# {date.today()} {platform.machine()} {platform.processor() or ''}; {args.rows:,} rows x "
          f"{frame.shape[1]} columns ({len(categorical)} categorical)")
    results = {"hpcsynth": run_hpcsynth(frame, categorical), "rdt": run_rdt(frame, categorical)}
    print(f"{'':<10}{'fit s':>9}{'encode s':>10}{'decode s':>10}{'encode rows/s':>15}{'decode rows/s':>15}{'width':>7}")
    for name, r in results.items():
        print(f"{name:<10}{r['fit']:>9.2f}{r['encode']:>10.2f}{r['decode']:>10.2f}"
              f"{args.rows / r['encode']:>15,.0f}{args.rows / r['decode']:>15,.0f}{r['width']:>7}")
    h, r = results["hpcsynth"], results["rdt"]
    print(f"encode: hpcsynth {r['encode'] / h['encode']:.1f}x faster; decode: {r['decode'] / h['decode']:.1f}x faster")
    ratio = (r["encode"] + r["decode"]) / (h["encode"] + h["decode"])
    print(f"ratio (RDT / hpcsynth time, encode + decode): {ratio:.1f}x")


if __name__ == "__main__":
    main()
