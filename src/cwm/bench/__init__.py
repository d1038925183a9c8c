"""`cwm bench`: the paper's CWMB tables from one command.

A bench is a matrix of (environment, method, seed) runs. Each run is one ordinary search run directory
(``cwm.graph.run.synthesize``, resumable) followed by a scoring of its best program on every recorded
transition and a planning evaluation (``cwm.planning.agent.plan``). The bench directory holds:

    bench.json        what was asked (a resume reads it back)
    runs/ENV/METHOD/seedN/   the search run directory, plus ``bench-row.json`` once evaluated
    results.json      one row per run and the versions of everything that shaped the numbers
    report.md, *.png  the paper's Table 2 and Tables 10/11 layouts with its published figures beside ours

Modules: ``paper`` (the published figures, package data), ``baselines`` (oracle and random returns),
``matrix`` (which runs, dry-run estimates), ``runner`` (one run), ``executors`` (local threads or Ray),
``results``, ``report``, ``progress``, ``command`` (the CLI entry).
"""
