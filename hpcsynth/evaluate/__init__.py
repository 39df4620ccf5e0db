"""Evaluation of synthetic tables against held-out real rows, computed per site without moving rows.

`metrics` is the registry (every score's name, direction, needed columns and pooling). One module per idea:
`fidelity`, `pairs`, `detection`, `diversity`, `survival`, `genomics`, `composite` (CSF, GSF), `utility`
(TSTR/TRTR), `privacy` and `attacks`, `fairness`, `marginals`; `pooling` says how site results combine;
`suite.evaluate` runs the registered parts; `report` writes the HTML report and the summary table.
"""
