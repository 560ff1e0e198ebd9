"""What a search shows: its progress line, leaderboard files and plots.

- `leaderboard.md` / `.csv` / `.json`: every trained candidate ordered by
  reward (formula, reward, steps, seconds, the equivalent candidates
  collapsed into it, the error of a failed child; the `.json` also the
  worker), then the rejected ones with their reason. Rewritten after every
  trial, atomically, as are the plots.
- `curves.png`: the top functions on [−6, 6] with β = 1 (the paper's Fig. 3).
- `rewards.png`: the reward of every trial in order of completion and its
  running best; for the RNN search, of every controller sample instead
  (rejected and collapsed proposals too, as PPO sees them), with its
  running best and the moving-average baseline.
"""

import csv
import io
import os
import time

import numpy as np

from keras_swish.files import json_text
from keras_swish.recipes.core.config import write_atomic
from keras_swish.recipes.search.oracles import reward_of


def entries(oracle):
    """Finished trials as leaderboard rows, best first; then the rejected candidates."""
    rows = []
    for trial_id in oracle.reward_order:
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        steps = trial.metrics.get_last_value("steps") if trial.metrics.exists("steps") else None
        error = values.get("error")
        if error is None and trial.status != "COMPLETED":  # failed inside KerasTuner
            error = f"trial {trial.status.lower()}" + (
                f": {trial.message.strip().splitlines()[-1]}" if trial.message else ""
            )
        seconds = oracle.durations.get(trial_id)
        rows.append(
            {
                "formula": values["formula"],
                "reward": reward_of(trial),
                "steps": int(steps) if steps is not None else None,
                "seconds": round(seconds, 1)
                if seconds is not None and seconds == seconds
                else None,
                "collapsed": list(oracle.duplicates.get(trial_id, [])),
                "error": error,
                "trial": trial_id,
                "worker": values.get("worker"),
            }
        )
    rows.sort(key=lambda r: (-r["reward"], r["trial"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def counts(oracle):
    running = len(oracle.ongoing_trials)
    return {
        "trained": len(oracle.reward_order),
        "failed": sum(
            1
            for t in oracle.reward_order
            if oracle.trials[t].hyperparameters.values.get("error")
            or oracle.trials[t].status != "COMPLETED"
        ),
        "running": running,
        "rejected": len(oracle.rejected),
        "collapsed": sum(len(v) for v in oracle.duplicates.values()),
    }


def progress_line(oracle, started):
    """`search: 7 trained (1 failed), 1 running, ...; best 0.4310 max(x, sigmoid(x)); ETA 2m10s`."""
    from keras_swish.recipes.compare import _eta

    c = counts(oracle)
    rows = entries(oracle)
    best = f"; best {rows[0]['reward']:.4f} {rows[0]['formula']}" if rows else ""
    left = _trials_left(oracle)
    durations = list(oracle.durations.values())
    eta = ""
    if durations and left is not None:
        parallel = max(1, c["running"], len(oracle.tuner_ids))
        eta = f"; ETA {_eta(np.mean(durations) * left / parallel)}"
    return (
        f"search: {c['trained']} trained ({c['failed']} failed), {c['running']} running, "
        f"{c['rejected']} rejected, {c['collapsed']} collapsed into an equivalent one"
        f"{best}{eta} ({_eta(time.monotonic() - started)} elapsed)"
    )


def _trials_left(oracle):
    """Trials still to train (an estimate for the exhaustive search), or None if unknown."""
    if oracle.max_trials:
        return max(0, oracle.max_trials - len(oracle.trials))
    cursor = getattr(oracle, "cursor", None)
    if cursor:
        new_per_proposal = len(oracle.trials) / cursor
        return int(round((oracle.space.size - cursor) * new_per_proposal))
    return None


def write_leaderboard(oracle, output, header):
    """Writes leaderboard.json, .csv and .md into `output` (each file whole)."""
    rows = entries(oracle)
    rejected = list(oracle.rejected)
    record = dict(header, counts=counts(oracle), leaderboard=rows, rejected=rejected)
    if getattr(oracle, "history", None) is not None:
        record["controller_rewards"] = oracle.history
    write_atomic(os.path.join(output, "leaderboard.json"), json_text(record, indent=2))
    write_atomic(os.path.join(output, "leaderboard.csv"), _csv(rows, rejected))
    write_atomic(os.path.join(output, "leaderboard.md"), _markdown(header, rows, rejected, oracle))


def _csv(rows, rejected):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "formula", "reward", "steps", "seconds", "collapsed", "status"])
    for row in rows:
        status = f"failed: {row['error']}" if row["error"] else "trained"
        writer.writerow(
            [
                row["rank"],
                row["formula"],
                f"{row['reward']:.4f}",
                row["steps"],
                row["seconds"],
                " | ".join(row["collapsed"]),
                status,
            ]
        )
    for item in rejected:
        writer.writerow(["", item["formula"], "", "", "", "", f"rejected: {item['reason']}"])
    return out.getvalue()


def _markdown(header, rows, rejected, oracle):
    c = counts(oracle)
    lines = [
        f"# Activation search: {header['strategy']} over {header['space']}",
        "",
        f"Child: {header['experiment']}, {header['child_steps']} steps "
        f"(batch {header['batch_size']}); reward: best validation {header['monitor']}. "
        f"{c['trained']} trained ({c['failed']} failed), {c['rejected']} rejected before "
        f"training, {c['collapsed']} collapsed into an equivalent candidate.",
        "",
        "| rank | formula | reward | steps | seconds | equivalent candidates collapsed into it |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        collapsed = row["collapsed"]
        shown = ", ".join(f"`{f}`" for f in collapsed[:3])
        if len(collapsed) > 3:
            shown += f" and {len(collapsed) - 3} more"
        reward = f"{row['reward']:.4f}" + (f" (failed: {row['error']})" if row["error"] else "")
        lines.append(
            f"| {row['rank']} | `{row['formula']}` | {reward} | {row['steps']} | "
            f"{row['seconds']} | {shown} |"
        )
    if rejected:
        reasons = {}
        for item in rejected:
            reasons.setdefault(item["reason"], []).append(item["formula"])
        lines += ["", "Rejected before training (reward 0):", ""]
        for reason, formulas in reasons.items():
            example = ", ".join(f"`{f}`" for f in formulas[:3])
            lines.append(f"- {reason}: {len(formulas)}, e.g. {example}")
    return "\n".join(lines) + "\n"


def write_plots(oracle, output, top=8):
    """curves.png (the top functions on [−6, 6], β = 1) and rewards.png."""
    from keras_swish.expressions import parse
    from keras_swish.recipes.compare.plots import _pyplot, save_png

    plt = _pyplot()
    rows = [r for r in entries(oracle) if not r["error"]][:top]
    x = np.linspace(-6, 6, 601)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        y = parse(row["formula"]).numpy(x, beta=1.0)
        ax.plot(x, np.clip(y, -8, 8), label=f"{row['reward']:.3f}  {row['formula']}")
    ax.set_xlim(-6, 6)
    ax.set_ylim(-3, 6)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_title(f"top {len(rows)} functions (β = 1), reward = validation accuracy")
    if rows:
        ax.legend(fontsize=7, loc="upper left")
    save_png(fig, os.path.join(output, "curves.png"))

    rewards = [reward_of(oracle.trials[t]) for t in oracle.reward_order]
    history = getattr(oracle, "history", None)
    fig, ax = plt.subplots(figsize=(7, 4))
    if history:
        ax.plot(range(1, len(history) + 1), history, ".", alpha=0.4, label="controller sample")
        decay = oracle.controller.baseline_decay
        ema, baseline = [], None
        for r in history:  # the controller's baseline: its first reward, then the EMA
            baseline = r if baseline is None else decay * baseline + (1 - decay) * r
            ema.append(baseline)
        ax.plot(range(1, len(ema) + 1), ema, label="moving average (PPO baseline)")
        ax.plot(range(1, len(history) + 1), np.maximum.accumulate(history), label="best")
        ax.set_xlabel("controller sample")
    else:
        if rewards:
            ax.plot(range(1, len(rewards) + 1), rewards, "o", label="trial")
            ax.plot(range(1, len(rewards) + 1), np.maximum.accumulate(rewards), label="best")
        ax.set_xlabel("trial (in order of completion)")
    ax.set_ylabel("reward (validation accuracy)")
    ax.grid(alpha=0.3)
    if rewards or history:
        ax.legend()
    save_png(fig, os.path.join(output, "rewards.png"))
