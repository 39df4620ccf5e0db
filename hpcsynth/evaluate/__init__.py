"""Evaluation of synthetic tables against held-out real rows, computed per site without moving rows.

One module per idea: `fidelity` (column shapes), `pairs` (pair trends), `detection`, `diversity`, `survival`,
`genomics`, `composite` (CSF, GSF), `utility` (TSTR/TRTR), `privacy` and `attacks`, `fairness`, `marginals`;
`pooling` says how site results combine; `suite.evaluate` runs them all; `report` writes the HTML report;
`runs` is `hpcsynth evaluate`.
"""
