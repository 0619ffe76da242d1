"""`agentkit improve SUITE.yaml`: the agent gets better from its own runs, on the user's machine.

One round: collect (the train goals, several sampled attempts each, new seeds each round) -> export
(the successful steps and plans as SFT rows, with earlier rounds' rows under `tune.data: all`;
success-vs-failure steps as DPO pairs) -> tune (a LoRA, from the
champion adapter or the base) -> evaluate (champion and candidate on the held-out goals, the same
seeds, interleaved on one loaded base; `workers` > 1 runs that many goals at a time, each worker a
process with its own copy) -> decide (promote the candidate only if its paired gain in
success rate is at least `promote.min_gain_se` standard errors and `promote.min_goals` goals).

Every stage leaves its result in `$AGENTKIT_HOME/improve/<suite name>/round-<k>/` and the stage
reached in `state.json` (temp file + rename, under a lock): a killed `improve` resumes at that
stage, and inside collect and evaluate at the first attempt not yet recorded. A candidate that is
not promoted stays registered, marked "candidate" on its card with the evaluation that kept it out.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentkit.agents.improve_runs import run_goals
from agentkit.agents.improve_suite import load_suite, paired_gain, should_promote
from agentkit.config_io import write_jsonl_atomic
from agentkit.errors import BadInputError
from agentkit.registry.store import write_json_atomic

STAGES = ("collect", "export", "tune", "evaluate", "decide", "done")
STATE_FILE = "state.json"
LOG_FILE = "log.jsonl"


# ---- state on disk -------------------------------------------------------------------------------
def _append_line(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill mid-write: that attempt runs again
            continue
    return rows


@contextmanager
def _suite_lock(folder: Path) -> Iterator[None]:
    """One `improve` per suite at a time; a second one is refused at once rather than interleaved."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInputError(f"another `agentkit improve` is running the suite in {folder}.",
                                fix="wait for it to end (or stop it), then run again; it resumes.") from None  # fmt: skip
        yield


def collect_seed(seed: int, round_number: int, attempt: int) -> int:
    """The sampling seed of a collect attempt: new in every round, so a round after one that was not
    promoted (the same champion) does not repeat its runs."""
    return seed + 1000 * (round_number - 1) + attempt


# ---- the loop ------------------------------------------------------------------------------------
class Improver:
    """Runs rounds of a suite; `say` gets one line per event (the CLI prints them). `workers` goal
    runs go at a time in collect and evaluate, each worker a process with its own model copy."""

    def __init__(self, suite_file: str | Path, *, home: str | Path | None = None,
                 say: Callable[[str], None] = lambda line: None, workers: int = 1) -> None:  # fmt: skip
        from agentkit.registry import Registry

        if workers < 1:
            raise BadInputError(f"workers must be at least 1, not {workers}.", fix="pass --workers 1 or more.")
        self.workers = workers
        self.suite_file = Path(suite_file).resolve()
        self.suite, self.goals = load_suite(self.suite_file)
        self.registry = Registry(home)
        self.folder = self.registry.root / "improve" / self.suite.name
        self.suite_sha256 = hashlib.sha256(self.suite_file.read_bytes()).hexdigest()
        self.say = say

    # state.json: {"round": k, "stage": s, "champion": id|None, "candidate": id, ...}
    def _state(self) -> dict[str, Any]:
        path = self.folder / STATE_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def _save(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.folder / STATE_FILE, state)

    def champion(self) -> str | None:
        """The adapter the champion runs with (None: the base alone)."""
        target = self.registry.aliases().get(self.suite.promote.alias, {}).get("target")
        if target is None:
            return self.suite.model.adapter
        return None if target == self.suite.model.model else target

    def run(self, rounds: int = 1) -> list[dict[str, Any]]:
        """Run (or resume) until `rounds` rounds of this suite are done in all; returns their log rows."""
        with _suite_lock(self.folder):
            self._check_models()
            self._ensure_indexes()
            state = self._state()
            if state and state.get("stage") != "done" and state.get("suite_sha256") not in (None, self.suite_sha256):
                raise BadInputError(
                    f"{self.suite_file} changed since round {state['round']} started (it is at stage {state['stage']}).",
                    fix=f"restore the file to resume that round, or remove {self.folder} to start the suite over.",
                )
            while True:
                if not state or state.get("stage") == "done":
                    done = int(state.get("round", 0)) if state else 0
                    if done >= rounds:
                        break
                    state = {"round": done + 1, "stage": "collect", "champion": self.champion(),
                             "suite_sha256": self.suite_sha256}  # fmt: skip
                    self._save(state)
                    self.say(f"round {state['round']}: champion {state['champion'] or self.suite.model.model}")
                self._advance(state)
            return _read_lines(self.folder / LOG_FILE)

    def _check_models(self) -> None:
        card = self.registry.card(self.suite.model.model)
        champion = self.champion()
        if champion is not None and self.registry.card(champion).base != card.id:
            raise BadInputError(
                f"alias {self.suite.promote.alias!r} points at {champion!r}, an adapter of "
                f"{self.registry.card(champion).base!r}, not of {card.id!r}.",
                fix="give this suite its own promote.alias (one per base model).",
            )
        if self.suite.model.adapter:
            adapter = self.registry.card(self.suite.model.adapter)
            if adapter.base != card.id:
                raise BadInputError(f"model.adapter {adapter.id!r} is an adapter of {adapter.base!r}, not of {card.id!r}.",
                                    fix="name the adapter's own base in model.model.")  # fmt: skip

    def _ensure_indexes(self) -> None:
        from agentkit.indexes import create_index, list_indexes

        have = {spec.name for spec in list_indexes(self.registry.root)}
        for name, folder in self.suite.indexes.items():
            if name in have:
                continue
            source = (self.suite_file.parent / folder).resolve()
            if not source.is_dir():
                raise BadInputError(f"{self.suite_file}: field 'indexes.{name}': {source} is not a folder.",
                                    fix="point it at the documents the index is built from.")  # fmt: skip
            self.say(f"building index {name} from {source}")
            create_index(name, home=self.registry.root).add([source])

    def _round_dir(self, state: dict[str, Any]) -> Path:
        folder = self.folder / f"round-{state['round']}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _advance(self, state: dict[str, Any]) -> None:
        stage = state["stage"]
        step = {"collect": self._collect, "export": self._export, "tune": self._tune,
                "evaluate": self._evaluate, "decide": self._decide}[stage]  # fmt: skip
        step(state, self._round_dir(state))
        state["stage"] = STAGES[STAGES.index(stage) + 1]
        self._save(state)

    def _run_args(self, goal_file: Path, into: Path, adapter: str | None, temperature: float,
                  seed: int) -> dict[str, Any]:  # fmt: skip
        """`run_goal`'s arguments for one run of this suite's model."""
        return {"goal_file": goal_file, "into": into, "model": self.suite.model.model, "adapter": adapter,
                "engine": self.suite.model.engine, "strategy": self.suite.strategy, "temperature": temperature,
                "seed": seed, "home": self.registry.root}  # fmt: skip

    def evaluation_jobs(self, goal_files: list[Path], models: dict[str, str | None], folders: dict[str, Path],
                        done: set[tuple[str, str, int]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:  # fmt: skip
        """`run_goals` jobs that run `models` ({side: adapter}) on `goal_files` as the evaluate stage
        does: the suite's evaluate temperature, seeds and attempts, the sides interleaved so both see
        the same machine state, each run in `folders[side]/<goal>/<attempt>`; those in `done`
        ((side, goal file, attempt)) are left out."""
        settings = self.suite.evaluate
        return [({"who": who, "goal_file": str(goal_file), "attempt": attempt},
                 self._run_args(goal_file, folders[who] / goal_file.stem / str(attempt), adapter,
                                settings.temperature, settings.seed + attempt))
                for goal_file in goal_files for attempt in range(settings.attempts)
                for who, adapter in models.items() if (who, str(goal_file), attempt) not in done]  # fmt: skip

    # -- collect: the train goals, `attempts` sampled runs each -----------------------------------
    def _collect(self, state: dict[str, Any], folder: Path) -> None:
        settings = self.suite.collect
        log = folder / "collect.jsonl"
        done = {(r["goal_file"], r["attempt"]) for r in _read_lines(log)}
        jobs = [({"goal_file": str(goal_file), "attempt": attempt},
                 self._run_args(goal_file, folder / "collect" / goal_file.stem / str(attempt), state["champion"],
                                settings.temperature, collect_seed(settings.seed, state["round"], attempt)))
                for goal_file in self.goals.train for attempt in range(settings.attempts)
                if (str(goal_file), attempt) not in done]  # fmt: skip

        def record(key: dict[str, Any], row: dict[str, Any]) -> None:
            _append_line(log, {**key, **row})
            self.say(f"  collect {row['goal']} #{key['attempt']}: {row['status']} ({row['steps']} steps, {row['seconds']}s)")

        run_goals(jobs, self.workers, record)

    # -- export: SFT rows from successes, DPO pairs success vs failure ----------------------------
    def _export(self, state: dict[str, Any], folder: Path) -> None:
        from agentkit.agents.export import dpo_pairs, plan_examples, sft_examples
        from agentkit.agents.trace import RunStore

        rows = _read_lines(folder / "collect.jsonl")
        wins = sum(1 for r in rows if r["ok"])
        state["collect"] = {"runs": len(rows), "succeeded": wins, "goals_succeeded": len({r["goal"] for r in rows if r["ok"]})}
        if not wins:
            aside = folder / f"collect-failed-{int(time.time())}"
            aside.mkdir()
            for item in ("collect.jsonl", "collect"):
                if (folder / item).exists():
                    os.replace(folder / item, aside / item)
            state["stage"] = "collect"  # a later call collects again (with the suite as it is then)
            state.pop("suite_sha256", None)
            self._save(state)
            raise BadInputError(
                f"round {state['round']}: none of the {len(rows)} train runs succeeded, so there is nothing to learn "
                f"from; nothing was tuned (the runs are kept in {aside}).",
                fix="use easier train goals, more collect.attempts, or a higher collect.temperature, then run again.",
            )
        stores = [RunStore(d) for d in sorted((folder / "collect").glob("*/*/runs"))]
        sft = _unique_rows(row for store in stores for row in [*sft_examples(store), *plan_examples(store)])
        dpo: list[dict[str, Any]] = []
        # DPO pairs need runs of the same goal side by side: one store per goal
        for goal_dir in sorted((folder / "collect").glob("*")):
            dpo += list(dpo_pairs(_MultiStore(sorted(goal_dir.glob("*/runs")))))
        this_round = len(sft)
        if self.suite.tune.data == "all":  # earlier rounds' rows too, each once
            sft = _unique_rows([*sft, *(row for earlier in range(1, state["round"])
                                        for row in _read_lines(self.folder / f"round-{earlier}" / "sft.jsonl"))])  # fmt: skip
        write_jsonl_atomic(folder / "sft.jsonl", sft)
        write_jsonl_atomic(folder / "dpo.jsonl", dpo)
        state["data"] = {"sft_rows": len(sft), "sft_rows_this_round": this_round, "dpo_pairs": len(dpo)}
        self.say(f"  export: {wins}/{len(rows)} runs succeeded; {this_round} SFT rows"
                 f"{f' ({len(sft)} with earlier rounds)' if len(sft) != this_round else ''}, {len(dpo)} DPO pairs")  # fmt: skip

    # -- tune: a LoRA candidate ---------------------------------------------------------------------
    def _tune(self, state: dict[str, Any], folder: Path) -> None:
        from agentkit.tuning.config import TuneConfig
        from agentkit.tuning.trainer import train

        candidate = f"{self.suite.name}-r{state['round']}"
        state["candidate"] = candidate
        data_sha256 = hashlib.sha256((folder / "sft.jsonl").read_bytes()).hexdigest()
        if candidate in self.registry:  # tuned and registered before a kill
            tuned_on = self.registry.card(candidate).lineage.data_sha256
            if tuned_on != data_sha256:
                raise BadInputError(
                    f"{candidate!r} is already registered, tuned on other data than round {state['round']}'s "
                    f"({folder / 'sft.jsonl'}).",
                    fix=f"`agentkit models rm {candidate}` (it is not this round's), or rename the suite.",
                )
            self.say(f"  tune: {candidate} already registered")
        else:
            lora = dict(self.suite.tune.lora)
            if self.suite.tune.start == "champion" and state["champion"]:
                lora = {k: v for k, v in lora.items() if k not in ("r", "alpha", "target_modules")}
                lora["init_adapter"] = state["champion"]
            config = TuneConfig.model_validate({
                "base": self.suite.model.model, "task": "causal_lm", "method": "lora", "lora": lora,
                "data": {"train": str(folder / "sft.jsonl"), "format": "openai", "eval_fraction": 0},
                "train": self.suite.tune.train, "output": candidate,
            })  # fmt: skip
            self.say(f"  tune: {candidate} from {lora.get('init_adapter') or self.suite.model.model} "
                     f"on {state['data']['sft_rows']} rows")  # fmt: skip
            train(config, registry=self.registry, resume=(self.registry.root / "runs" / candidate).is_dir())
        metrics = self.registry.card(candidate).metrics
        state["tune"] = {k: metrics.get(k) for k in ("train_loss_first", "train_loss_last", "steps", "train_seconds")}
        if self.registry.card(candidate).stage is None:  # marked once: a kill before decide leaves a candidate
            self.registry.mark_candidate(candidate)

    # -- evaluate: champion and candidate on the held-out goals, same seeds ----------------------
    def _evaluate(self, state: dict[str, Any], folder: Path) -> None:
        log = folder / "evaluate.jsonl"
        done = {(r["who"], r["goal_file"], r["attempt"]) for r in _read_lines(log)}
        models = {"champion": state["champion"], "candidate": state["candidate"]}
        jobs = self.evaluation_jobs(self.goals.heldout, models, {who: folder / "evaluate" / who for who in models}, done)

        def record(key: dict[str, Any], row: dict[str, Any]) -> None:
            _append_line(log, {**key, **row})
            self.say(f"  evaluate {key['who']} {row['goal']} #{key['attempt']}: {row['status']}")

        run_goals(jobs, self.workers, record)

    # -- decide: promote or keep as a candidate ------------------------------------------------------
    def _decide(self, state: dict[str, Any], folder: Path) -> None:
        rows = _read_lines(folder / "evaluate.jsonl")
        summary = evaluation_summary(rows, [str(g) for g in self.goals.heldout])
        stats = paired_gain(summary["champion"]["per_goal"], summary["candidate"]["per_goal"])
        promote, why = should_promote(stats, self.suite.promote)
        record = {"suite": self.suite.name, "round": state["round"],
                  "champion": state["champion"] or self.suite.model.model, "candidate": state["candidate"],
                  **{k: round(v, 4) for k, v in stats.items()}, "reason": why,
                  "champion_eval": summary["champion"], "candidate_eval": summary["candidate"]}  # fmt: skip
        decision = folder / "decision.json"
        recorded = json.loads(decision.read_text(encoding="utf-8")) if decision.is_file() else {}
        if not recorded.get("registered"):  # a kill after the registry change must not make it twice
            write_json_atomic(decision, {**record, "promoted": promote, "registered": False})
            serving = self.registry.aliases().get(self.suite.promote.alias, {}).get("target")
            if promote and serving != state["candidate"]:
                self.registry.promote(state["candidate"], self.suite.promote.alias,
                                      evaluation={k: v for k, v in record.items() if k != "champion_eval"},
                                      beat={"id": record["champion"], **summary["champion"]})  # fmt: skip
            elif not promote:
                self.registry.mark_candidate(state["candidate"], evaluation={**record, "promoted": False})
            write_json_atomic(decision, {**record, "promoted": promote, "registered": True})
        row = {"round": state["round"], "champion": record["champion"], "candidate": state["candidate"],
               "train_runs": state.get("collect", {}).get("runs"), "train_succeeded": state.get("collect", {}).get("succeeded"),
               **state.get("data", {}), **state.get("tune", {}),
               "heldout_before": round(stats["champion_rate"], 4), "heldout_after": round(stats["candidate_rate"], 4),
               "gain": round(stats["gain"], 4), "se": round(stats["se"], 4), "promoted": promote, "reason": why,
               "time": time.time()}  # fmt: skip
        if not any(r.get("round") == state["round"] for r in _read_lines(self.folder / LOG_FILE)):
            _append_line(self.folder / LOG_FILE, row)  # once, even when a kill repeats this stage
        self.say(f"round {state['round']}: held-out {stats['champion_rate']:.2f} -> {stats['candidate_rate']:.2f} "
                 f"(gain {stats['gain']:+.3f} +- {stats['se']:.3f}); {'PROMOTED' if promote else 'not promoted'}: {why}")  # fmt: skip


def evaluation_summary(rows: list[dict[str, Any]], goal_files: list[str]) -> dict[str, dict[str, Any]]:
    """Per model: success rate per held-out goal (in `goal_files` order), steps and tokens per
    success, and median seconds per run."""
    out: dict[str, dict[str, Any]] = {}
    for who in ("champion", "candidate"):
        mine = [r for r in rows if r["who"] == who]
        per_goal = []
        for goal_file in goal_files:
            runs = [r for r in mine if r["goal_file"] == goal_file]
            per_goal.append(sum(r["ok"] for r in runs) / len(runs) if runs else 0.0)
        wins = [r for r in mine if r["ok"]]
        out[who] = {
            "success_rate": round(sum(per_goal) / len(per_goal), 4) if per_goal else 0.0,
            "per_goal": per_goal,
            "runs": len(mine),
            "steps_per_success": round(sum(r["steps"] for r in wins) / len(wins), 2) if wins else None,
            "tokens_per_success": round(sum(r["tokens"] for r in wins) / len(wins), 1) if wins else None,
        }
    return out


def _unique_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """SFT rows as `{messages, tools}`, each once (sampled attempts, and rounds, repeat each other)."""
    seen: set[str] = set()
    unique = []
    for row in rows:
        key = json.dumps([row["messages"], row.get("tools")], sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append({k: v for k, v in row.items() if k in ("messages", "tools")})
    return unique


class _MultiStore:
    """Several run folders read as one RunStore (DPO pairs need every attempt at a goal)."""

    def __init__(self, folders: list[Path]) -> None:
        from agentkit.agents.trace import RunStore

        self.stores = [RunStore(f) for f in folders]

    def run_ids(self) -> list[tuple[int, str]]:
        return [(i, run_id) for i, store in enumerate(self.stores) for run_id in store.run_ids()]

    def records(self, key: tuple[int, str]) -> list[dict[str, Any]]:
        return self.stores[key[0]].records(key[1])
