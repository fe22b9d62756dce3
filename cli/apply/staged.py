"""What `gpuprov apply` does once the inventory is loaded: dry run, infrastructure hosts,
then the staged rollout of the GPU hosts (or the resume of one). Returns exit codes."""

from __future__ import annotations

import sys
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
        self.steps: StepSelection | None = None  # --only/--skip (deploys/steps.py); None: all

    # ---- a new rollout ----------------------------------------------------------------
    def apply(self, hosts: list[Host], *, dry_run: bool) -> int:
        from gpuprov.cli._options import open_session
        from gpuprov.cli.plan import nothing_would_change, plan_exit_code, show_plan
        from gpuprov.deploys.playbook import default_deploys

        from gpuprov.engine.connect import sudo_password
        from gpuprov.engine.plan import prepare
        from gpuprov.rollout.planner import plan_rollout
        from gpuprov.rollout.wave_work import split

        if not dry_run:
            self.check_unlocked()
        self.password = sudo_password(self.cluster, hosts, sys.stdin.isatty())
        policy = self.cluster.rollout
        with open_session(self.app, self.cluster, hosts, self.accept_new, self.password) as s:
            plan = prepare(s, default_deploys(self.steps))
            targets = split(hosts, plan)
            rplan = plan_rollout(
                targets.gpu, policy, converged=targets.converged, seed=self.cluster.name,
                excluded=targets.blocked,
            )  # fmt: skip
            if self.steps is not None and not self.steps.everything:
                rplan = replace(rplan, steps=self.steps.steps)  # stored: --resume runs them
            if not self.json:
                show_plan(self.app, plan)
                if rplan.waves:
                    self.show_waves(rplan, "staged rollout")
            self.doc = {
                "summary": {"hosts": len(hosts), "changed": 0, "failed": 0},
                "skipped": targets.converged,
                "excluded": targets.blocked,
                "refusals": plan.refusals(),
            }
            # No ready host has a change: refused/unreachable hosts are no work to do.
            idle = not any(h.ready and h.changes for h in plan.hosts.values())
            if idle and plan.blocked:  # stderr: a JSON document on stdout stays clean
                self.app.error(nothing_would_change(plan, len(targets.converged)))
            if dry_run:
                if self.json:
                    self.app.json({"plan": plan.to_dict(), "rollout_plan": rplan.to_dict()})
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
            if targets.infra:
                code = self.apply_infra(s, plan, targets.infra)
                if code:
                    return code
        if not rplan.waves:
            self.doc["summary"]["status"] = "completed"
            self.finish_json()
            return ExitCode.OK
        return self.rollout(rplan, None)

    def check_unlocked(self) -> None:
        """Fail before the dry run, not after it, when another rollout holds the lock."""
        from gpuprov.errors import LockedError
        from gpuprov.rollout.state import RolloutLock

        holder = RolloutLock(self.state_path.with_name(self.state_path.name + ".lock")).holder()
        if holder:
            raise LockedError(
                f"another rollout using {self.state_path} is running ({holder}); "
                "wait for it or stop it first"
            )

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
        from gpuprov.engine.connect import sudo_password
        from gpuprov.rollout.state import StateStore

        if not self.state_path.exists():
            self.app.abort(
                f"nothing to resume: no rollout state at {self.state_path}", ExitCode.BAD_INPUT
            )
        store = StateStore.for_inventory(self.inventory, self.state_path)
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
        return self.rollout(plan, record.id, store)

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
    def rollout(self, rplan: RolloutPlan, resume: int | None, store=None) -> int:
        from gpuprov.cli.plan import excluded_exit_code
        from gpuprov.deploys.playbook import default_deploys

        from gpuprov.rollout.gates import HealthGates
        from gpuprov.rollout.hooks import make_hook_runner
        from gpuprov.rollout.progress import make_progress
        from gpuprov.rollout.runner import run_rollout
        from gpuprov.rollout.state import StateStore
        from gpuprov.rollout.wave_work import WaveWork

        cluster, policy = self.cluster, self.cluster.rollout
        store = store or StateStore.for_inventory(self.inventory, self.state_path)
        work = WaveWork(
            cluster, default_deploys(self.steps), password=self.password, accept_new=self.accept_new
        )
        gate = HealthGates(cluster, policy, password=self.password)
        approve = None
        if policy.pause_between_waves and not self.yes:

            def approve(wave) -> bool:
                return click.confirm(f"Start {wave.name} ({len(wave.hosts)} hosts)?", err=True)

        try:
            hooks = make_hook_runner(policy, cluster.hosts, cluster.known_hosts_path)
            report = run_rollout(
                rplan, policy, store, work=work, gate=gate, hooks=hooks, approve=approve,
                progress=make_progress(self.app.err if self.json else self.app.out),
                resume=resume, hosts=cluster.hosts,
            )  # fmt: skip
        finally:
            store.close()
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
            self.app.json(self.doc)

    def show_waves(self, rplan: RolloutPlan, title: str) -> None:
        from gpuprov.cli.rollout.plan import show_waves

        show_waves(self.app, rplan, self.cluster.rollout, title)
