"""What `gpuprov apply` does once the inventory is loaded: dry run, infrastructure hosts,
then the staged rollout of the GPU hosts (or the resume of one). Returns exit codes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gpuprov.errors import ExitCode
from gpuprov.terminal import cell

if TYPE_CHECKING:
    from gpuprov.cli.app import App
    from gpuprov.deploys.steps import StepSelection

    from gpuprov.engine.connect import SudoPasswords
    from gpuprov.engine.plan import Plan
    from gpuprov.inventory.model import Cluster, Host
    from gpuprov.rollout.planner import RolloutPlan
    from gpuprov.rollout.runner import RolloutReport
    from gpuprov.rollout.state import StateStore

STYLE = {"changed": "yellow", "ok": "green", "failed": "red"}


class Staged:
    def __init__(
        self,
        app: App,
        cluster: Cluster,
        inventory: Path,
        state: Path | None,
        *,
        output: str,
        yes: bool,
        accept_new: bool,
    ):
        from gpuprov.rollout.state import default_state_path

        self.app, self.cluster, self.inventory = app, cluster, inventory
        self.state_path = state or default_state_path(inventory)
        self.json = output == "json"
        self.yes, self.accept_new = yes, accept_new
        self.password: SudoPasswords | None = None
        self.doc: dict[str, Any] = {}  # the --output json document
        self.store: StateStore | None = None  # open, with its lock held, once apply starts
        self.drained: set[str] = set()  # hosts earlier rollouts left drained
        self.abandoned: dict[str, Any] | None = None
        self.exits = contextlib.ExitStack()  # holds the lock once taken (lock_state)
        self.steps: StepSelection | None = None  # --only/--skip (deploys/steps.py); None: all
        self.timings = False  # --timings: "timings" in the JSON document

    # ---- a new rollout ----------------------------------------------------------------
    def apply(self, hosts: list[Host], *, dry_run: bool, abandon: bool = False) -> int:
        """Settle an unfinished rollout first (resume it or abandon it), and hold the lock,
        with the state open, before anything can change (mirror and controller hosts
        included). An apply with nothing to change writes no state at all."""
        from gpuprov.engine.timings import mark

        if dry_run:
            self.read_state(refuse=False)
            mark("state read")
            return self.plan_and_apply(hosts, dry_run=True)
        with contextlib.ExitStack() as self.exits:
            if abandon:  # undrain hooks are changes: under the lock, before the dry run
                store = self.lock_state(abandoning=True)
                self.abandon()
                self.drained = set(store.drained_hosts())
            else:
                self.read_state(refuse=True)  # fail fast: locked (5) or unfinished (2)
            mark("state read")
            return self.plan_and_apply(hosts, dry_run=False)

    def lock_state(self, *, abandoning: bool = False) -> StateStore:
        """Take the lock and open the state (once); called before the first change."""
        if self.store is None:
            self.store = self.exits.enter_context(self.locked_state())
            if not abandoning:
                self.refuse_if_resumable()  # one may have stopped since read_state looked
        return self.store

    def plan_and_apply(self, hosts: list[Host], *, dry_run: bool) -> int:
        from gpuprov.cli._options import open_session
        from gpuprov.cli.plan import nothing_would_change, plan_exit_code, show_plan
        from gpuprov.deploys.playbook import default_deploys

        from gpuprov.engine.connect import sudo_password
        from gpuprov.engine.plan import prepare
        from gpuprov.engine.timings import mark
        from gpuprov.rollout.planner import plan_rollout
        from gpuprov.rollout.wave_work import split

        # The deploys (and pyinfra with them) imported before connecting, so each phase
        # of --timings is what it says: "connect" the SSH sessions, "facts" the round trip.
        deploys = default_deploys(self.steps)
        mark("imports")
        self.password = sudo_password(self.cluster, hosts, sys.stdin.isatty())
        policy = self.cluster.rollout
        with open_session(self.app, self.cluster, hosts, self.accept_new, self.password) as s:
            mark("connect")
            plan = prepare(s, deploys)  # marks "facts", "evaluate"
            targets = split(hosts, plan, self.drained)
            rplan = plan_rollout(
                targets.gpu, policy, converged=targets.converged, seed=self.cluster.name,
                excluded=targets.blocked,
            )  # fmt: skip
            if self.steps is not None and not self.steps.everything:
                rplan = replace(rplan, steps=self.steps.steps)  # stored: --resume runs them
            mark("rollout plan")
            if not self.json:
                show_plan(self.app, plan)
                if rplan.waves:
                    self.show_waves(rplan, "staged rollout")
                mark("output")
            self.doc = {
                "summary": {"hosts": len(hosts), "changed": 0, "failed": 0},
                "skipped": targets.converged,
                "excluded": targets.blocked,
                "refusals": plan.refusals(),
            }
            if self.abandoned is not None:
                self.doc["abandoned"] = self.abandoned
            # No ready host has a change: refused/unreachable hosts are no work to do. A host
            # an earlier rollout left drained is work (a wave undrains it) even without one.
            idle = not any(h.ready and h.changes for h in plan.hosts.values()) and not rplan.waves
            if idle and plan.blocked:  # stderr: a JSON document on stdout stays clean
                self.app.error(nothing_would_change(plan, len(targets.converged)))
            if dry_run:
                if self.json:
                    doc = {"plan": plan.to_dict(), "rollout_plan": rplan.to_dict()}
                    self.app.json(self.with_timings(doc))
                return plan_exit_code(plan)
            if idle:
                summary = self.doc["summary"]
                summary["failed"] = len(plan.blocked)
                summary["status"] = "nothing-to-change" if plan.blocked else "up-to-date"
                self.finish_json()
                if not self.json and not plan.blocked:
                    self.app.success("Nothing to change: every selected host is up to date.")
                return plan_exit_code(plan)
            if not self.yes and not click.confirm("Apply these changes?", err=True):
                self.app.abort("nothing changed", ExitCode.INTERRUPTED)
            self.lock_state()  # before the first change of any kind
            if targets.infra:
                code = self.apply_infra(s, plan, targets.infra)
                if code:
                    return code
        if not rplan.waves:
            self.doc["summary"]["status"] = "completed"
            self.finish_json()
            return ExitCode.OK
        return self.rollout(rplan, None)

    @contextlib.contextmanager
    def locked_state(self) -> Iterator[StateStore]:
        """The state store, open and checked, with the rollout lock held until the end."""
        import sqlite3

        from gpuprov.rollout.state import StateStore

        try:
            self.store = StateStore.for_inventory(self.inventory, self.state_path)
        except (sqlite3.Error, OSError) as exc:
            self.app.abort(
                f"{self.state_path}: cannot open the rollout state ({exc}); move it away "
                "or name another with --state",
                ExitCode.BAD_INPUT,
            )
        lock = self.store.lock()
        try:
            lock.acquire()  # LockedError (exit 5, naming the holder) goes up as it is
        except BaseException:
            self.store.close()
            raise
        try:
            yield self.store
        finally:
            lock.release()
            self.store.close()

    def read_state(self, *, refuse: bool) -> None:
        """Before the dry run, writing nothing: fail at once when another rollout holds
        the lock; read what earlier rollouts left drained; an unfinished rollout is
        refused (`refuse`) or, for a dry run, warned about."""
        import sqlite3

        from gpuprov.errors import LockedError
        from gpuprov.rollout.state import RolloutLock, StateStore

        holder = RolloutLock(self.state_path.with_name(self.state_path.name + ".lock")).holder()
        if holder and refuse:
            raise LockedError(
                f"another rollout using {self.state_path} is running ({holder}); "
                "wait for it or stop it first"
            )
        if not self.state_path.exists():
            return
        try:
            store = StateStore.for_inventory(self.inventory, self.state_path)
            try:
                self.drained = set(store.drained_hosts())
                record = store.latest_resumable()
            finally:
                store.close()
        except sqlite3.Error as exc:
            if refuse:
                self.app.abort(
                    f"{self.state_path}: cannot read the rollout state ({exc}); move it away "
                    "or name another with --state",
                    ExitCode.BAD_INPUT,
                )
            self.app.warning(f"{self.state_path}: unreadable rollout state ({exc})")
            return
        if record is None or holder:
            return
        if refuse:
            self.app.abort(self.resumable_message(record.id, record.status), ExitCode.BAD_INPUT)
        self.app.warning(self.resumable_message(record.id, record.status))  # stderr

    def resumable_message(self, rid: int, status: str) -> str:
        drained = ", ".join(sorted(self.drained)) or "none"
        return (
            f"rollout {rid} of {self.inventory} did not finish ({status}; hosts it may "
            f"have left drained: {drained}): resume it with `gpuprov apply {self.inventory} --resume`, "
            f"or abandon it with `gpuprov apply {self.inventory} --abandon` (undrains the "
            "hosts whose gates passed, lists what stays drained, then applies)"
        )

    def refuse_if_resumable(self) -> None:
        assert self.store is not None
        record = self.store.latest_resumable()
        if record is not None:
            self.drained = set(self.store.drained_hosts())
            self.app.abort(self.resumable_message(record.id, record.status), ExitCode.BAD_INPUT)

    def abandon(self) -> None:
        from gpuprov.rollout.abandon import abandon_rollout
        from gpuprov.rollout.hooks import make_hook_runner

        assert self.store is not None
        record = self.store.latest_resumable()
        if record is None:
            if not self.json:
                self.app.info("--abandon: no interrupted or halted rollout to abandon")
            return
        cluster = self.cluster
        hooks = make_hook_runner(cluster.rollout, cluster.hosts, cluster.known_hosts_path)
        report = abandon_rollout(self.store, record.id, cluster.rollout, hooks, cluster.hosts)
        self.abandoned = report.to_dict()
        out = self.app.err if self.json else self.app.out
        undrained = ", ".join(report.undrained) or "none"
        out.print(cell(f"Rollout {record.id} abandoned; undrained: {undrained}"))
        for host, why in report.still_drained.items():
            out.print(cell(f"stays drained: {host}: {why}", "yellow"))

    def apply_infra(self, session, plan: Plan, infra: list[Host]) -> int:
        """Run the dry run's operations on the infrastructure hosts only (the session
        holds every selected host: the others are taken out of the State first)."""
        from gpuprov.cli._options import exit_code

        from gpuprov.engine.apply import execute
        from gpuprov.engine.plan import Plan

        names = {h.name for h in infra}
        state = session.state
        for name in plan.hosts:
            if name not in names:
                state.active_hosts.discard(state.inventory.get_host(name))
        sub = Plan({n: p for n, p in plan.hosts.items() if n in names})
        if not self.json:
            self.app.info(f"Infrastructure hosts first: {', '.join(sorted(names))}")
        result = execute(session, sub, self.op_progress)
        self.doc["infrastructure"] = result.to_dict()
        self.doc["summary"]["changed"] += result.changed
        self.doc["summary"]["failed"] += len(result.failed)
        if not result.failed:
            return ExitCode.OK
        for h in result.failed:
            self.app.error(f"{h.name}: {h.status}: {h.error or ''}")
        self.app.error("infrastructure hosts failed: the rollout of the GPU hosts did not start")
        self.doc["summary"]["status"] = "infrastructure-failed"
        self.finish_json()
        unreachable = sum(1 for h in result.failed if h.status == "unreachable")
        return exit_code(unreachable, len(result.failed) - unreachable)

    def op_progress(self, host: str, op: str, outcome: str) -> None:
        if not self.json and outcome != "ok":
            self.app.out.print(cell(f"{host}: {outcome}: {op}", STYLE[outcome]))

    # ---- resume -------------------------------------------------------------------------
    def resume(self) -> int:
        if not self.state_path.exists():
            self.app.abort(
                f"nothing to resume: no rollout state at {self.state_path}", ExitCode.BAD_INPUT
            )
        with self.locked_state() as store:
            return self.resume_locked(store)

    def resume_locked(self, store: StateStore) -> int:
        from gpuprov.engine.connect import sudo_password

        record = store.latest_resumable()
        if record is None:
            latest = store.latest()
            what = f"rollout {latest.id} is {latest.status}" if latest else "no rollout recorded"
            self.app.abort(f"nothing to resume for {self.inventory}: {what}", ExitCode.BAD_INPUT)
        if store.inventory_changed(record):
            self.app.warning(
                f"warning: {self.inventory} changed since rollout {record.id} started; its "
                "stored waves are kept (hosts no longer in the inventory fail their wave)"
            )
        plan = store.load_plan(record.id)
        self.steps = self.resumed_steps(plan, record.id)
        self.password = sudo_password(
            self.cluster, list(self.cluster.hosts.values()), sys.stdin.isatty()
        )
        if not self.yes and not click.confirm(f"Resume rollout {record.id}?", err=True):
            self.app.abort("nothing changed", ExitCode.INTERRUPTED)
        self.doc = {"summary": {"hosts": 0, "changed": 0, "failed": 0}, "skipped": []}
        self.doc["summary"]["hosts"] = len(plan.host_names) + len(plan.skipped)
        self.doc["skipped"] = list(plan.skipped)
        self.doc["excluded"] = dict(plan.excluded)
        return self.rollout(plan, record.id)

    def resumed_steps(self, plan: RolloutPlan, rollout_id: int):
        """The steps rollout `rollout_id` started with: a resumed CUDA-only rollout stays
        CUDA-only. Other steps asked for now are refused, not silently used."""
        from gpuprov.deploys.steps import ALL, StepSelection

        stored = ALL if plan.steps is None else StepSelection(
            tuple(plan.steps), f"--only {','.join(plan.steps)}, as rollout {rollout_id} started"
        )  # fmt: skip
        asked = self.steps
        if asked is not None and not asked.everything and asked.steps != stored.steps:
            started = "every step" if stored.everything else ", ".join(stored.steps)
            self.app.abort(
                f"rollout {rollout_id} runs {started}; --resume continues it with the same "
                f"steps (drop {asked.flag})",
                ExitCode.BAD_INPUT,
            )
        return stored

    # ---- the rollout --------------------------------------------------------------------
    def rollout(self, rplan: RolloutPlan, resume: int | None) -> int:
        """Run the waves; the caller holds the lock (locked_state) and the open store."""
        from gpuprov.cli.plan import excluded_exit_code
        from gpuprov.deploys.playbook import default_deploys

        from gpuprov.rollout.gates import HealthGates
        from gpuprov.rollout.hooks import make_hook_runner
        from gpuprov.rollout.progress import make_progress
        from gpuprov.rollout.runner import run_rollout
        from gpuprov.rollout.wave_work import WaveWork

        cluster, policy, store = self.cluster, self.cluster.rollout, self.store
        assert store is not None
        work = WaveWork(
            cluster, default_deploys(self.steps), password=self.password, accept_new=self.accept_new
        )
        gate = HealthGates(cluster, policy, password=self.password)
        approve = None
        if policy.pause_between_waves and not self.yes:

            def approve(wave) -> bool:
                return click.confirm(f"Start {wave.name} ({len(wave.hosts)} hosts)?", err=True)

        hooks = make_hook_runner(policy, cluster.hosts, cluster.known_hosts_path)
        report = run_rollout(
            rplan, policy, store, work=work, gate=gate, hooks=hooks, approve=approve,
            progress=make_progress(self.app.err if self.json else self.app.out),
            resume=resume, hosts=cluster.hosts, locked=True,
        )  # fmt: skip
        self.summarise(report, work, rplan)
        return report.exit_code or excluded_exit_code(rplan)

    def summarise(self, report: RolloutReport, work, rplan: RolloutPlan) -> None:
        from gpuprov.cli.rollout.plan import excluded_text

        summary = self.doc["summary"]
        summary["changed"] += work.changed
        summary["failed"] += len(report.failed) + len(rplan.excluded)
        summary["status"] = report.status
        if self.json:
            self.doc["rollout"] = report.to_dict() | {"plan": rplan.to_dict()}
            self.doc["hosts"] = {n: vars(r) for n, r in work.results.items()}
            self.finish_json()
            return
        if report.failed:
            rows = [
                (f.host, f.wave, f.step, " | ".join(f.error.strip().splitlines()[-3:]))
                for f in report.failed
            ]
            self.app.table(("host", "wave", "step", "error (last lines)"), rows, title="failed")
        self.app.info(
            f"Rollout {report.rollout_id} {report.status}: {len(report.done)} hosts done, "
            f"{len(report.failed)} failed, {len(report.pending)} not started, "
            f"{len(report.skipped)} up to date; {summary['changed']} changes" + excluded_text(rplan)
        )
        if report.status in ("halted", "interrupted"):
            self.app.info(f"resume with `gpuprov apply {self.inventory} --resume`")

    def finish_json(self) -> None:
        if self.json:
            self.app.json(self.with_timings(self.doc))

    def with_timings(self, doc: dict[str, Any]) -> dict[str, Any]:
        """`doc` with "timings" added under --timings (the phases up to now: what follows
        is printing this document and closing the connections)."""
        if not self.timings:
            return doc
        from gpuprov.cli._timings import report

        from gpuprov.engine.timings import mark

        mark("output")
        return {**doc, "timings": report()}

    def show_waves(self, rplan: RolloutPlan, title: str) -> None:
        from gpuprov.cli.rollout.plan import show_waves

        show_waves(self.app, rplan, self.cluster.rollout, title)
