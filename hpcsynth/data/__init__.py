"""The data layer: column kinds and roles, reversible transforms fitted from mergeable statistics, where a
site's rows come from (files, named cohorts, the MDS simulator, partitioners) and how far sites differ.
See docs/datasets.md."""
