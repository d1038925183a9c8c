"""``report.md`` and its figures: our runs in the paper's layouts, with its published figures beside them.

Aggregation follows the paper (research notes §3.3): per environment, seeds are averaged first; a split's
accuracy is the mean over its environments; its normalized return is the mean over the environments where
𝓡 is defined (oracle ≠ random), a failed synthesis or a model that broke while planning counting as 0;
the error is the standard error of the mean over environments. Accuracy is shown with both metrics: the
cwm metric on every recorded transition, and the official metric the paper's tables used (comparable with
its accuracy columns). Rows are labelled *comparable* only for ``gif-mcts-paper``/``worldcoder`` with
``--describe docs``; every other configuration is *ours*.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from cwm.bench import paper
from cwm.bench.matrix import split_of

PAPER_TABLES = (("table11", "GPT-4 Turbo, budget 10 (Tab. 11)"),
                ("table10", "Llama 3 70B first seed, budget 50 (Tab. 10)"))


def env_rows(rows: list[dict[str, Any]], method: str) -> dict[str, dict[str, float | None]]:
    """Per environment, this method's seed means: accuracy, official accuracy, 𝓡 (failed = 0 if defined)."""
    by_env: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["method"] == method:
            by_env[r["env"]].append(r)
    out: dict[str, dict[str, float | None]] = {}
    for env, rs in by_env.items():
        out[env] = {"accuracy": _mean([_num(r.get("accuracy"), 0.0) for r in rs]),
                    "official_accuracy": _mean([_num(r.get("official_accuracy"), 0.0) for r in rs]),
                    "ceiling": _mean([float(r["ceiling"]) for r in rs if r.get("ceiling") is not None]),
                    "normalized_return": _mean([v for v in (_norm(r) for r in rs) if v is not None])}
    return out


def _num(v: Any, missing: float) -> float:
    return missing if v is None else float(v)


def _norm(r: dict[str, Any]) -> float | None:
    if r.get("normalized_return") is not None:
        return float(r["normalized_return"])
    if (r.get("planner") or {}).get("episodes", 1) == 0:
        return None  # the bench planned nothing (--plan-episodes 0): 𝓡 was not measured for any run
    rnd, orc = r.get("random_return"), r.get("oracle_return")
    defined = rnd is not None and orc is not None and not math.isclose(rnd, orc, abs_tol=1e-9)
    failed = r.get("accuracy") is None or r.get("plan_error") is not None
    return 0.0 if defined and failed else None


def _mean(vals: list[float]) -> float | None:
    return statistics.fmean(vals) if vals else None


def mean_se(vals: list[float | None]) -> tuple[float | None, float | None, int]:
    xs = [v for v in vals if v is not None]
    if not xs:
        return None, None, 0
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else None
    return statistics.fmean(xs), se, len(xs)


def _pm(m: float | None, se: float | None, n: int | None = None) -> str:
    if m is None:
        return "–"
    text = f"{m:.2f}" + ("" if se is None else f" ± {se:.2f}")
    return text + ("" if n is None else f" ({n})")


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _sources(rows: list[dict[str, Any]]) -> str:
    """Where the baselines of these rows came from: one word when both agree, else each named."""
    pairs = {(str((r.get("baseline_source") or {}).get("random")), str((r.get("baseline_source") or {}).get("oracle")))
             for r in rows}
    return ", ".join(rnd if rnd == orc else f"random {rnd} / oracle {orc}" for rnd, orc in sorted(pairs))


def _label(rows: list[dict[str, Any]], method: str) -> str:
    comparable = all(r.get("comparable") for r in rows if r["method"] == method)
    return f"{method} ({'comparable' if comparable else 'ours'})"


def split_summary(rows: list[dict[str, Any]], method: str) -> dict[str, Any]:
    per_env = env_rows(rows, method)
    out: dict[str, Any] = {}
    for split in ("discrete", "continuous"):
        envs = [e for e in per_env if split_of(e) == split]
        for metric in ("accuracy", "official_accuracy", "normalized_return"):
            out[f"{split}_{metric}"] = mean_se([per_env[e][metric] for e in envs])
    return out


def _missing(status: dict[str, Any]) -> str:
    """The runs left out of every table, each with its error when it failed, so no gap goes unexplained."""
    errors: dict[str, str] = status.get("errors") or {}
    keys: list[str] = list(status.get("not_evaluated") or errors)
    if not keys:
        return ""
    return " Not in the tables: " + "; ".join(
        f"{k} ({errors[k][:200]})" if k in errors else f"{k} (not run)" for k in keys) + "."


PAPER_SUBSET = (("table11", "GPT-4 Turbo", 10), ("table10", "Llama 3 70B (first seed)", 50))


def _paper_on_these_envs(envs: list[str]) -> list[str]:
    """Table 2 rows recomputed from Tables 10/11 over the selected envs only, when they are not whole
    splits: the paper's split means cover environments this bench did not run, so they do not compare."""
    from cwm.bench.matrix import select_envs

    splits = {sp: [e for e in envs if split_of(e) == sp] for sp in ("discrete", "continuous")}
    if all(not chosen or set(chosen) == set(select_envs(sp)) for sp, chosen in splits.items()):
        return []
    out = []
    for table, model, budget in PAPER_SUBSET:
        for name, method in paper.PAPER_METHODS.items():
            cells = []
            for sp in ("discrete", "continuous"):
                per = [c for c in (paper.per_env(table, e, method) for e in splits[sp]) if c is not None]
                cells += ["–", _pm(*mean_se([_num(c.accuracy, 0.0) for c in per])),
                          _pm(*mean_se([c.normalized_return for c in per]))]
            out.append(f"| {model} | {name} (paper, these envs) | {budget} | " + " | ".join(cells) + " |")
    return out


def render(results: dict[str, Any], figures: list[str], figure_note: str | None) -> str:
    rows: list[dict[str, Any]] = results["runs"]
    bench, versions = results["bench"], results["versions"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    described = ", ".join(sorted({str(r.get("describe")) for r in rows})) or bench.get("describe")
    out = ["# cwm bench report", "",
           f"LLM `{bench['llm']}` (models reported: {', '.join(versions['models']) or 'none'}), budget "
           f"{bench['budget']} calls, {bench['seeds']} seed(s), methods {', '.join(bench['methods'])}, describe "
           f"{described}; planning {bench['plan_episodes']} episodes (MCTS "
           f"{bench['simulations']} simulations, CEM `{bench['cem']}`"
           f"{'' if not bench.get('plan_max_steps') else ', episodes cut at ' + str(bench['plan_max_steps'])}).",
           f"cwm {versions['cwm']}, gymnasium {versions['gymnasium']}, mujoco {versions['mujoco']}, numpy "
           f"{versions['numpy']}, prompt set {versions['prompt_set']}, algorithm {versions.get('algorithm')}.",
           f"Status: {results['status'].get('state')}; {len(rows)} of {results['status'].get('runs')} runs "
           "evaluated." + _missing(results["status"]), "",
           "Published figures: " + paper.citation() + ". Rows marked *ours* are not configurations of the paper "
           "(only `gif-mcts-paper` and `worldcoder` with `--describe docs` are); the paper computed accuracy "
           "with the official metric, so compare its accuracy with the *official* columns.", "",
           "## Table 2 layout (mean ± standard error over environments; number of environments)", "",
           "| model | method | budget | discrete acc (cwm) | discrete acc (official) | discrete 𝓡 | "
           "continuous acc (cwm) | continuous acc (official) | continuous 𝓡 |",
           "|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        s = split_summary(rows, m)
        seeds = len({r["seed"] for r in rows if r["method"] == m})
        model = f"{', '.join(versions['models']) or bench['llm']} ({seeds} seed{'s' if seeds != 1 else ''})"
        out.append(f"| {model} | {_label(rows, m)} | {bench['budget']} | "
                   + " | ".join(_pm(*s[f"{sp}_{k}"]) for sp in ("discrete", "continuous")
                                for k in ("accuracy", "official_accuracy", "normalized_return")) + " |")
    for p in paper.table2():
        out.append(f"| {p['model']} | {p['method']} (paper) | {p['budget']} | – | "
                   f"{_pm(p['discrete_accuracy']['mean'], p['discrete_accuracy']['err'])} | "
                   f"{_pm(p['discrete_normalized_return']['mean'], p['discrete_normalized_return']['err'])} | – | "
                   f"{_pm(p['continuous_accuracy']['mean'], p['continuous_accuracy']['err'])} | "
                   f"{_pm(p['continuous_normalized_return']['mean'], p['continuous_normalized_return']['err'])} |")
    out += _paper_on_these_envs(list(bench.get("envs") or dict.fromkeys(r["env"] for r in rows)))
    out += ["", "Errors: ours and the *these envs* rows are standard errors over environments. So are the paper's "
            "accuracy errors (Table 11 reproduces them), but not its 𝓡 errors, which are smaller than the standard "
            "error over Table 11's environments (GPT-4 Turbo GIF-MCTS: 0.06 published, 0.14 recomputed, "
            "discrete; 0.01 and 0.10, continuous): computed some other way, perhaps over episodes too (the return "
            "is also averaged over 10 episodes). Compare 𝓡 means, "
            "not 𝓡 errors, with the paper's rows."]
    out += ["", "## Per environment (Tables 10/11 layout)", ""]
    for m in methods:
        per_env = env_rows(rows, m)
        out += [f"### {_label(rows, m)}", "",
                "| environment | actions | acc (cwm) | acc (official) | ceiling (cwm) | 𝓡 | baselines | "
                + " | ".join(f"acc / 𝓡, {title}" for _, title in PAPER_TABLES) + " |",
                "|---|---|---|---|---|---|---|" + "---|" * len(PAPER_TABLES)]
        for env, v in per_env.items():
            src = _sources([r for r in rows if r["env"] == env and r["method"] == m])
            cells = []
            for table, _ in PAPER_TABLES:
                c = paper.per_env(table, env, m)
                cells.append("–" if c is None else f"{_f(c.accuracy)} / {_f(c.normalized_return)}")
            out.append(f"| {env} | {split_of(env)} | {_f(v['accuracy'])} | {_f(v['official_accuracy'])} | "
                       f"{_f(v['ceiling'])} | {_f(v['normalized_return'])} | {src} | "
                       + " | ".join(cells) + " |")
        out.append("")
    out += ["Ceiling: the cwm accuracy the real environment itself reaches on these recorded transitions "
            "(from the dataset's audit; – where it cannot be decided).", "",
            "Baselines: *computed* = shipped measurements with these planner settings, *cache* = measured on "
            "this machine, *paper* = Table 12's figures (used where no measurement with these settings exists), "
            "*None* = no baseline with these settings, 𝓡 left blank. A run without a program counts as accuracy "
            "0 in the means (the paper does not say whether it counted or dropped its two N/A accuracies).", ""]
    if figures:
        out += ["## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures] + [""]
    if figure_note:
        out += [figure_note, ""]
    return "\n".join(out)


def figures(results: dict[str, Any], out_dir: Path) -> tuple[list[str], str | None]:
    """Three PNGs (accuracy against the paper's, best accuracy against calls, 𝓡 per env), or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return [], "Figures skipped: matplotlib is not installed (pip install 'cwm[plot]')."
    rows: list[dict[str, Any]] = results["runs"]
    if not rows:
        return [], None
    methods = list(dict.fromkeys(r["method"] for r in rows))
    envs = list(dict.fromkeys(r["env"] for r in rows))
    paths = []
    width = 0.8 / (2 * len(methods))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(envs)), 4))
    for i, m in enumerate(methods):
        per = env_rows(rows, m)
        xs = [k + (2 * i) * width for k in range(len(envs))]
        ax.bar(xs, [per.get(e, {}).get("official_accuracy") or 0 for e in envs], width, label=f"{m} (official)")
        pap = [paper.per_env("table11", e, m) for e in envs]
        ax.bar([x + width for x in xs], [(c.accuracy or 0) if c else 0 for c in pap], width, alpha=0.5,
               label=f"paper GPT-4 {m}")
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(envs))], envs, rotation=30, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(str(out_dir / "accuracy_vs_paper.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(envs), figsize=(3.2 * len(envs), 3), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for r in (r for r in rows if r["env"] == env):
            curve = r.get("curve") or []
            if curve:  # markers, so a run solved at its first call still shows
                ax.step([p["call"] for p in curve], [p["best"] for p in curve], where="post", marker="o",
                        markersize=3, label=f"{r['method']} s{r['seed']}")
        ax.set_title(env, fontsize=9)
        ax.set_xlabel("LLM calls")
        ax.set_xlim(0, max(1, int(results["bench"].get("budget") or 1)) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 1.05)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    axes[0][0].set_ylabel("best accuracy (feedback set)")
    fig.tight_layout()
    paths.append(str(out_dir / "accuracy_vs_calls.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(envs)), 4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        per = env_rows(rows, m)
        values = [per.get(e, {}).get("normalized_return") for e in envs]
        xs = [k + i * width for k in range(len(envs))]
        ax.bar(xs, [v or 0.0 for v in values], width, label=m)
        for x, v in zip(xs, values, strict=True):
            if v is None:  # undefined (no baselines, oracle = random, or not planned), not a return of 0
                ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90, color="grey")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(envs))], envs, rotation=30, ha="right")
    ax.set_ylabel("normalized return")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(str(out_dir / "normalized_return.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths, None


def write_report(results: dict[str, Any], bench_dir: Path) -> Path:
    figs, note = figures(results, bench_dir)
    path = bench_dir / "report.md"
    path.write_text(render(results, figs, note), encoding="utf-8")
    return path
