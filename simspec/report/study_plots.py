"""Study figures (PNG): optimisation history, knob importances, Pareto front, gamma vs batch."""

from __future__ import annotations

from pathlib import Path

from simspec.report.mpl import pyplot, save
from simspec.study import results

PNG = {"dpi": 110, "bbox_inches": "tight"}


def history(study, label: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    trials = results.complete(study)
    maximize = study.directions[0].name == "MAXIMIZE"
    xs_f = [t.number for t in trials if results.is_feasible(t)]
    ys_f = [t.values[0] for t in trials if results.is_feasible(t)]
    xs_i = [t.number for t in trials if not results.is_feasible(t)]
    ys_i = [t.values[0] for t in trials if not results.is_feasible(t)]
    ax.scatter(xs_f, ys_f, s=12, label="feasible trial")
    if xs_i:
        ax.scatter(xs_i, ys_i, s=12, marker="x", color="0.6", label="violates an SLO")
    best, bx, by = None, [], []
    for t in sorted(trials, key=lambda t: t.number):
        if results.is_feasible(t):
            v = t.values[0]
            if best is None or (v > best if maximize else v < best):
                best = v
        if best is not None:
            bx.append(t.number)
            by.append(best)
    ax.step(bx, by, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(label)
    ax.set_title("Optimisation history")
    ax.legend(fontsize=8)
    save(fig, path, **PNG)


def importances(imp: dict[str, float], how: str, path: Path) -> None:
    """Bars of the knob importances for the first objective (`how`: the method, for the axis)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * max(1, len(imp))))
    if imp:
        order = sorted(imp, key=imp.get)
        ax.barh(order, [imp[k] for k in order])
        ax.set_xlabel(f"importance for the first objective ({how})")
    else:
        ax.text(0.5, 0.5, "too few trials", ha="center", va="center")
    ax.set_title("Knob importance")
    save(fig, path, **PNG)


def pareto(study, names: list[str], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    trials = results.complete(study)
    front = {t.number for t in results.pareto(study)}

    def xy(t):
        s = t.user_attrs.get("summary") or {}
        if len(names) >= 2:
            return t.values[0], t.values[1]
        return s.get("tpot_p99_s", float("nan")), s.get("throughput_tok_s", float("nan"))

    xl, yl = (names[0], names[1]) if len(names) >= 2 else ("tpot_p99_s", "throughput_tok_s")
    pts = [(xy(t), t.number in front, results.is_feasible(t)) for t in trials]
    ax.scatter([p[0][0] for p in pts if not p[1]], [p[0][1] for p in pts if not p[1]],
               s=10, color="0.65", label="trials")
    fr = sorted([p[0] for p in pts if p[1]])
    if fr:
        ax.plot([p[0] for p in fr], [p[1] for p in fr], "o-", color="C3",
                label="Pareto front" if len(names) >= 2 else "best")
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_title("Pareto front" if len(names) >= 2 else "Throughput against p99 TPOT")
    ax.legend(fontsize=8)
    save(fig, path, **PNG)


def gamma_vs_batch(points, path: Path) -> None:
    from simspec.study.schedule import best_per_bucket

    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    best = best_per_bucket(points)
    if best:
        bs = list(best)
        a1.step(bs, [best[b].gamma for b in bs], where="mid", color="C3")
        a1.scatter(bs, [best[b].gamma for b in bs], color="C3")
        for b in bs:
            a1.annotate(best[b].drafter, (b, best[b].gamma), fontsize=7, xytext=(3, 3), textcoords="offset points")
        a1.set_xscale("log", base=2)
        a1.set_xticks(bs, [str(b) for b in bs])
    top = max([p.gamma for p in points] + [1])
    if top <= 16:
        a1.set_yticks(range(0, top + 1))
    else:  # one tick per gamma would be thousands of ticks: let matplotlib pick a few integers
        from matplotlib.ticker import MaxNLocator

        a1.yaxis.set_major_locator(MaxNLocator(integer=True))
    a1.set_ylim(-0.3, top + 0.3)
    a1.set_xlabel("batch size (running sequences)")
    a1.set_ylabel("best gamma")
    a1.set_title("Best gamma against batch size")
    kinds = sorted({p.drafter for p in points if p.drafter != "none"})
    plain = {p.batch: p.throughput_tok_s for p in points if p.drafter == "none"}
    for kind in kinds:
        per = best_per_bucket([p for p in points if p.drafter == kind])
        xs = [b for b in per if plain.get(b)]
        a2.plot(xs, [per[b].throughput_tok_s / plain[b] for b in xs], "o-", label=kind)
    a2.axhline(1.0, color="0.5", lw=0.8)
    a2.set_xscale("log", base=2)
    if plain:
        a2.set_xticks(sorted(plain), [str(b) for b in sorted(plain)])
    a2.set_xlabel("batch size")
    a2.set_ylabel("throughput / plain decoding (drafter's best gamma >= 1)")
    a2.set_title("Speed-up by drafter")
    if kinds:
        a2.legend(fontsize=8)
    save(fig, path, **PNG)
