"""Analysis scripts: sweep results (Parquet) -> the papers' tables and figures.

    python -m analysis.tables RESULTS_DIR [...]              mean ± std tables (markdown/latex/csv)
    python -m analysis.tables RESULTS_DIR [...] --compare F  ... beside published cells, with z
    python -m analysis.figures RESULTS_DIR [...] --out F     accuracy vs test-time iterations

Python use: `from analysis.tables import build_tables, to_markdown` and
`from analysis.common import load`; `from analysis.figures import plot` (selects matplotlib's Agg
backend on import). Nothing is imported here, so that `python -m analysis.tables` runs cleanly.
"""
