"""Reports of ``mem1 eval``: seeds pooled per cell, a Markdown table, PNG plots.

The plots draw score (EM summed over objectives, or the WebShop score) and
peak tokens against the number of objectives, one line per memory policy,
with the paper's reference figures (arXiv 2506.15841) as black markers.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Iterable

import numpy as np

RESULTS_CSV = "results.csv"

#: The paper's figures (arXiv 2506.15841), drawn alongside our curves:
#: env id fragment -> (label, N, score, peak tokens or None).
PAPER_REFERENCES: dict[str, list[tuple[str, int, float, float | None]]] = {
    "MultiObjectiveQA": [
        ("MEM1-7B (paper)", 16, 1.97, 1040.0),
        ("Qwen2.5-14B-Instruct (paper)", 16, 0.567, 3840.0),
    ],
    "WebShop": [("MEM1 WebShop (paper)", 1, 70.87, None)],
}


def _references(env_id: str) -> list[tuple[str, int, float, float | None]]:
    return [ref for frag, refs in PAPER_REFERENCES.items() if frag in env_id for ref in refs]


def _score_name(env_id: str) -> tuple[str, str, float]:
    """(column, axis label, scale) of an env's headline score."""
    if "WebShop" in env_id:
        return "reward", "WebShop score (reward x 100)", 100.0
    return "em", "EM (sum over objectives)", 1.0


def aggregate(rows: Iterable[dict]) -> list[dict]:
    """Pool the seeds of each (policy, env, memory, N): episode-weighted means, pooled EM std."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["policy"], row.get("policy_settings", ""), row["env"], row["memory"], int(row["objectives"]))
        groups.setdefault(key, []).append(row)
    out = []
    for (policy, settings, env, memory, n), members in groups.items():
        weights = np.array([float(r["episodes"]) for r in members])
        total = float(weights.sum())

        def pooled(col: str) -> float:
            values = np.array([float(r[col]) for r in members])
            return float((values * weights).sum() / total) if not np.isnan(values).all() else math.nan

        em = pooled("em")
        second = sum(w * (float(r["em_std"]) ** 2 + float(r["em"]) ** 2) for w, r in zip(weights, members))
        em_std = math.sqrt(max(second / total - em**2, 0.0)) if not math.isnan(em) else math.nan
        agg = {"policy": policy, "policy_settings": settings, "env": env, "memory": memory, "objectives": n, "episodes": int(total),
               "seeds": len(members), "em_std": em_std, "token_unit": members[0]["token_unit"]}
        for col in ("em", "f1", "reward", "peak_tokens", "dependency", "inference_s", "turns", "invalid_rate", "tool_errors"):
            agg[col] = pooled(col)
        out.append(agg)
    return out


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def markdown_table(rows: Iterable[dict]) -> str:
    """The results as a Markdown table (seeds pooled) plus the paper's reference figures."""
    agg = sorted(aggregate(rows), key=lambda r: (r["policy"], r["policy_settings"], r["env"], r["memory"], r["objectives"]))
    lines = [
        "| policy | env | memory | N | EM | F1 | reward | peak tokens | dependency | infer s/ep | turns | invalid % "
        "| tool errors/ep | episodes | tokens |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in agg:
        em = "–" if math.isnan(r["em"]) else f"{r['em']:.3f} ± {r['em_std']:.2f}"
        lines.append(
            f"| {r['policy']} | {r['env'].split('/')[-1]} | {r['memory']} | {r['objectives']} | {em} | "
            f"{_fmt(r['f1'])} | {_fmt(r['reward'])} | {r['peak_tokens']:.1f} | {r['dependency']:.4g} | "
            f"{r['inference_s']:.3g} | {r['turns']:.2f} | {100 * r['invalid_rate']:.1f} | {_fmt(r['tool_errors'])} | "
            f"{r['episodes']} | "
            f"{r['token_unit']} |"
        )
    settings = sorted({(r["policy"], r["policy_settings"]) for r in agg if r["policy_settings"]})
    if settings:
        lines += ["", "Policy settings:", ""] + [f"- {name}: {text}" for name, text in settings]
    lines += ["", "Paper reference figures (arXiv 2506.15841):", ""]
    for frag, refs in PAPER_REFERENCES.items():
        for label, n, score, peak in refs:
            peak_txt = f", peak tokens {peak:.0f}" if peak is not None else ""
            lines.append(f"- {frag}, N={n}: {label} score {score}{peak_txt}")
    return "\n".join(lines) + "\n"


def tool_error_warning(rows: Iterable[dict]) -> str | None:
    """A warning naming the cells where tools failed (e.g. the retriever was down), or None.

    Their scores reflect the infrastructure as much as the agent: an EM of 0 there is not
    the agent's failure.
    """
    bad = [r for r in aggregate(rows) if not math.isnan(r["tool_errors"]) and r["tool_errors"] > 0]
    if not bad:
        return None
    cells = "; ".join(
        f"{r['policy']} {r['env'].split('/')[-1]} {r['memory']} N={r['objectives']}: {r['tool_errors']:.3g}/episode"
        for r in bad
    )
    return (
        f"warning: tool calls failed (a search backend or retriever down?) in {len(bad)} cell(s): {cells}. "
        "Their scores are not the agent's alone; check the backend and re-run them in another out dir."
    )


_LINE_STYLES = ["-", "--", ":", "-."]
_LINE_MARKERS = ["o", "s", "^", "v"]
_REFERENCE_MARKERS = ["*", "D", "P", "X"]


def _plot_curves(ax_score, ax_peak, mine: list[dict], env_id: str, col: str, scale: float) -> None:
    """Score and peak tokens against N, a line per memory policy, paper points as black markers."""
    # Memory policies can coincide (mem1 == window:1): distinct dashes and markers keep both visible.
    styles = zip(sorted({r["memory"] for r in mine}), _LINE_STYLES * 4, _LINE_MARKERS * 4)
    for memory, linestyle, marker in styles:
        pts = sorted((r for r in mine if r["memory"] == memory), key=lambda r: r["objectives"])
        xs = [r["objectives"] for r in pts]
        for ax, ys in ((ax_score, [scale * r[col] for r in pts]), (ax_peak, [r["peak_tokens"] for r in pts])):
            ax.plot(xs, ys, linestyle=linestyle, marker=marker, markerfacecolor="none", label=memory)
    for (name, n, score, peak), marker in zip(_references(env_id), _REFERENCE_MARKERS):
        for ax, y in ((ax_score, score), (ax_peak, peak)):
            if y is not None:
                ax.scatter([n], [y], marker=marker, s=130, color="black", zorder=5, label=name)
                ax.annotate(f"{y:g}", (n, y), textcoords="offset points", xytext=(-10, 6), ha="right", fontsize=8)
    ns = sorted({r["objectives"] for r in mine} | {n for _, n, _, _ in _references(env_id)})
    for ax in (ax_score, ax_peak):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("number of objectives N")


def _plot_bars(ax_score, ax_peak, mine: list[dict], env_id: str, col: str, scale: float) -> None:
    """One task size only (e.g. WebShop): a bar per memory policy, paper figures of that size as lines."""
    pts = sorted(mine, key=lambda r: r["memory"])
    size = pts[0]["objectives"]
    xs = range(len(pts))
    for ax, ys in ((ax_score, [scale * r[col] for r in pts]), (ax_peak, [r["peak_tokens"] for r in pts])):
        ax.bar(xs, ys, color=[f"C{i}" for i in xs], width=0.6)
        ax.set_xticks(list(xs), [r["memory"] for r in pts])
        ax.set_xlabel(f"memory policy (N = {size})")
    refs = [ref for ref in _references(env_id) if ref[1] == size]
    for (name, _n, score, peak), style in zip(refs, _LINE_STYLES[1:] * 2):
        for ax, y in ((ax_score, score), (ax_peak, peak)):
            if y is not None:
                ax.axhline(y, color="black", linestyle=style, label=f"{name}: {y:g}")


def plot_results(rows: Iterable[dict], out_dir: str | Path) -> list[Path]:
    """One PNG per (policy, env): score and peak tokens per memory policy, paper figures alongside.

    Against the number of objectives (log scale) when the env has several, as bars otherwise.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    agg = aggregate(rows)
    for policy, settings, env_id in sorted({(r["policy"], r["policy_settings"], r["env"]) for r in agg}):
        mine = [r for r in agg if (r["policy"], r["policy_settings"], r["env"]) == (policy, settings, env_id)]
        col, label, scale = _score_name(env_id)
        fig, (ax_score, ax_peak) = plt.subplots(1, 2, figsize=(11, 4.2))
        several_sizes = len({r["objectives"] for r in mine}) > 1
        (_plot_curves if several_sizes else _plot_bars)(ax_score, ax_peak, mine, env_id, col, scale)
        for ax, ylabel in ((ax_score, label), (ax_peak, f"peak tokens ({Path(mine[0]['token_unit']).name})")):
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.margins(y=0.1)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        fig.suptitle(f"{env_id} — policy {policy}" + (f"\n{settings}" if settings else ""), fontsize=11)
        fig.tight_layout()
        # Runs of one policy with other settings get plots of their own, told apart by a short digest.
        digest = "_" + hashlib.sha1(settings.encode()).hexdigest()[:6] if settings else ""
        slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{policy}_{env_id}").strip("_") + digest
        path = Path(out_dir) / f"plot_{slug}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(rows: list[dict], out_dir: str | Path) -> dict[str, Path | list[Path]]:
    """Write ``results.md`` and the PNG plots for ``rows`` (as returned by :func:`run_eval`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "results.md"
    md.write_text(markdown_table(rows), encoding="utf-8")
    return {"csv": out / RESULTS_CSV, "markdown": md, "plots": plot_results(rows, out)}
