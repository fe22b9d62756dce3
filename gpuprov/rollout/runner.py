"""The wave runner: drain -> work -> health gate -> undrain, wave by wave, with a failure budget.

The per-host work and the health gate are injected callables, so this module knows nothing
about SSH or pyinfra: the engine passes a callable that builds a fresh pyinfra State for the
wave's hosts; tests pass one that runs local subprocesses. The runner owns what must be
right whatever the work is: order (a host is drained before it is touched and undrained
only after its gate passed: a failed host stays drained), counting failures against
`max_fail`, halting before later waves start, and recording every transition in the state
store as it happens so a killed rollout resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gpuprov.errors import ExitCode, InputError
from gpuprov.inventory.model import Host, RolloutPolicy
from gpuprov.rollout.hooks import HookRunner
from gpuprov.rollout.planner import RolloutPlan, Wave, allowed_failures
from gpuprov.rollout.progress import NullProgress, ProgressSink
from gpuprov.rollout.state import RESUMABLE, StateStore

ERROR_EXCERPT = 2000


@dataclass(frozen=True)
class HostResult:
    ok: bool
    step: str = ""  # the step that failed (or the last one run)
    error: str = ""  # stderr excerpt when not ok
    unreachable: bool = False


Report = Callable[[str, str], None]  # (host name, step) -> None
WorkFn = Callable[[list[Host], Report], dict[str, HostResult]]
GateFn = Callable[[list[Host]], dict[str, HostResult]]
ApproveFn = Callable[[Wave], bool]

NO_RESULT = HostResult(
    False, "", "no result for this host (unreachable or vanished)", unreachable=True
)


@dataclass(frozen=True)
class HostFailure:
    host: str
    wave: str
    step: str
    error: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class WaveOutcome:
    index: int
    name: str
    status: str  # pending | running | completed | halted | interrupted
    hosts: int
    failures: int
    allowed: int | None


@dataclass
class RolloutReport:
    rollout_id: int
    status: str  # completed | halted | interrupted | failed
    reason: str | None
    waves: list[WaveOutcome] = field(default_factory=list)
    failed: list[HostFailure] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.status == "completed" and self.failed:
            return ExitCode.HOSTS_FAILED  # finished, within max_fail, but hosts failed
        return {
            "completed": ExitCode.OK,
            "halted": ExitCode.ROLLOUT_HALTED,
            "interrupted": ExitCode.INTERRUPTED,
        }.get(self.status, ExitCode.HOSTS_FAILED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "status": self.status,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "waves": [dataclasses.asdict(w) for w in self.waves],
            "failed": [f.to_dict() for f in self.failed],
            "done": self.done,
            "pending": self.pending,
            "skipped": self.skipped,
        }


def build_report(store: StateStore, rollout_id: int) -> RolloutReport:
    st = store.status(rollout_id)
    assert st is not None
    names = {w.index: w.name for w in st.waves}
    sizes: dict[int, int] = {}
    for h in st.hosts:
        if h.wave is not None:
            sizes[h.wave] = sizes.get(h.wave, 0) + 1
    return RolloutReport(
        rollout_id=rollout_id,
        status=st.rollout.status,
        reason=st.rollout.reason,
        waves=[
            WaveOutcome(w.index, w.name, w.status, sizes.get(w.index, 0), w.failures, w.allowed)
            for w in st.waves
        ],
        failed=[
            HostFailure(
                h.host,
                names.get(h.wave, "") if h.wave is not None else "",
                h.step or "",
                h.error or "",
            )
            for h in st.hosts
            if h.status == "failed"
        ],
        done=[h.host for h in st.hosts if h.status == "done"],
        pending=[h.host for h in st.hosts if h.status not in ("done", "failed", "skipped")],
        skipped=[h.host for h in st.hosts if h.status == "skipped"],
    )


def run_rollout(
    plan: RolloutPlan,
    policy: RolloutPolicy,
    store: StateStore,
    *,
    work: WorkFn,
    gate: GateFn,
    hooks: HookRunner,
    approve: ApproveFn | None = None,
    progress: ProgressSink | None = None,
    resume: int | None = None,
    hosts: Mapping[str, Host] | None = None,
    locked: bool = False,
) -> RolloutReport:
    """Run (or, with `resume=<rollout id>`, continue) a staged rollout.

    Holds the store's lock for the whole run (LockedError if another rollout holds it);
    `locked=True`: the caller already holds it (`apply` takes it before its first change).
    On resume the stored plan is used, not `plan`: hosts already `done` are not run again,
    hosts that were mid-run or failed are. `hosts` maps names to Host objects (default:
    `plan.host_objects`); a planned host missing from it counts as a failure of its wave.
    Returns a report; `report.exit_code` is 0, 4 (halted), 130 (interrupted) or 1.
    """
    with contextlib.nullcontext() if locked else store.lock():
        run = _Run(
            plan, policy, store, work, gate, hooks, approve, progress or NullProgress(), hosts
        )
        with _SigintToFlag(run):
            return run.start(resume)


class _SigintToFlag:
    """The first SIGINT only asks the run to stop; the runner stops at its next step.

    A KeyboardInterrupt raised by the default handler lands in whatever code is running;
    under gevent (how the CLI runs the engine) that can be a worker greenlet in the middle
    of a hook or a lock, which then never finishes. A flag the runner checks between steps
    makes "start nothing new" exact. A second SIGINT raises at once (the state file is then
    as after a kill -9: consistent, resumable). At an approval prompt SIGINT raises too.
    """

    def __init__(self, run: _Run):
        self.run = run
        self.previous: Any = None

    def handler(self, signum: int, frame: object) -> None:
        if self.run.stop_requested or self.run.prompting:
            raise KeyboardInterrupt
        # Only set a flag: this may run in the middle of any code, holding any lock.
        self.run.stop_requested = True

    def __enter__(self) -> _SigintToFlag:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class _Run:
    def __init__(self, plan, policy, store, work, gate, hooks, approve, progress, hosts):
        self.plan: RolloutPlan = plan
        self.policy: RolloutPolicy = policy
        self.store: StateStore = store
        self.work: WorkFn = work
        self.gate: GateFn = gate
        self.hooks: HookRunner = hooks
        self.approve: ApproveFn | None = approve
        self.progress: ProgressSink = progress
        self.hosts: Mapping[str, Host] = hosts if hosts is not None else plan.host_objects
        self.rid = 0
        self.current: Wave | None = None  # the wave in progress, for an interrupt
        self.stop_requested = False  # set by the SIGINT handler
        self.prompting = False  # inside the approval callable

    def check_stop(self) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt

    def start(self, resume: int | None) -> RolloutReport:
        if resume is not None:
            record = self.store.status(resume)
            if record is None:
                raise InputError(f"no rollout {resume} in {self.store.path}")
            if record.rollout.inventory != str(self.store.inventory):
                raise InputError(
                    f"rollout {resume} is of {record.rollout.inventory}, not {self.store.inventory}"
                )
            if record.rollout.status not in RESUMABLE:
                raise InputError(
                    f"rollout {resume} is {record.rollout.status}; only interrupted or halted rollouts resume"
                )
            self.plan = self.store.load_plan(resume)
            self.store.reopen(resume)
            self.rid = resume
        else:
            self.rid = self.store.create_rollout(self.plan)
        self.progress.rollout_started(self.rid, self.plan, resumed=resume is not None)
        try:
            statuses = self.store.wave_statuses(self.rid)
            first = True
            for wave in self.plan.waves:
                if statuses.get(wave.index) == "completed":
                    continue
                self.check_stop()
                if self.approve is not None and not first and not self._approved(wave):
                    self.store.set_rollout(self.rid, "interrupted", f"{wave.name} was not approved")
                    break
                first = False
                if not self._run_wave(wave):
                    break
            else:
                self.store.set_rollout(self.rid, "completed")
        except KeyboardInterrupt:
            # Start nothing new. Hosts keep their in-flight status; a resume re-runs them.
            if self.current is not None:
                self.store.set_wave(self.rid, self.current.index, "interrupted")
            self.store.set_rollout(self.rid, "interrupted", "interrupted (SIGINT)")
        except BaseException as exc:
            self.store.set_rollout(self.rid, "failed", f"{type(exc).__name__}: {exc}")
            raise
        report = build_report(self.store, self.rid)
        self.progress.rollout_finished(report)
        return report

    def _approved(self, wave: Wave) -> bool:
        assert self.approve is not None
        self.prompting = True
        try:
            return self.approve(wave)
        finally:
            self.prompting = False

    # ---- one wave -----------------------------------------------------------------------
    def _run_wave(self, wave: Wave) -> bool:
        """Run one wave; False when it breached its failure budget (rollout halted)."""
        done = self.store.host_statuses(self.rid)
        todo = [n for n in wave.hosts if done.get(n) not in ("done", "skipped")]
        self.store.set_wave(self.rid, wave.index, "running")
        self.current = wave
        self.progress.wave_started(wave, todo)
        failures: list[str] = []

        def fail(name: str, step: str, error: str) -> None:
            failures.append(name)
            self.store.set_host(self.rid, name, "failed", step=step, error=error[-ERROR_EXCERPT:])
            self.progress.host_update(name, "failed", step, error)

        present: list[Host] = []
        for name in todo:
            if name in self.hosts:
                present.append(self.hosts[name])
            else:
                self.store.set_host(self.rid, name, "draining", step="lookup")
                fail(name, "lookup", "host is no longer in the inventory")

        drained = self._hook_phase(present, "draining", "drain", self.policy.drain, fail)
        self.check_stop()

        worked = self._callable_phase(
            drained, "running", "work", fail, lambda hs: self.work(hs, self._report)
        )
        self.check_stop()
        gated = self._callable_phase(worked, "gating", "gate", fail, self.gate)
        self.check_stop()
        finished = self._hook_phase(gated, "undraining", "undrain", self.policy.undrain, fail)
        self.store.set_hosts(self.rid, [h.name for h in finished], "done")
        for host in finished:
            self.progress.host_update(host.name, "done", "done", "")

        allowed = 0 if wave.canary else allowed_failures(len(wave.hosts), self.policy.max_fail)
        halted = len(failures) > allowed
        self.store.set_wave(
            self.rid,
            wave.index,
            "halted" if halted else "completed",
            failures=len(failures),
            allowed=allowed,
        )
        self.current = None
        self.progress.wave_finished(wave, len(failures), allowed, halted)
        if halted:
            limit = (
                "the canary allows none"
                if wave.canary
                else f"max_fail {self.policy.max_fail} allows {allowed}"
            )
            self.store.set_rollout(
                self.rid,
                "halted",
                f"{wave.name}: {len(failures)} of {len(wave.hosts)} hosts failed ({limit})",
            )
        return not halted

    def _report(self, host: str, step: str) -> None:
        self.store.set_step(self.rid, host, step)
        self.progress.host_update(host, "running", step, "")

    def _enter_phase(self, hosts: list[Host], status: str, step: str) -> None:
        """The wave's hosts enter a phase: one transaction for all of them."""
        self.store.set_hosts(self.rid, [h.name for h in hosts], status, step=step)
        for host in hosts:
            self.progress.host_update(host.name, status, step, "")

    def _hook_phase(
        self, hosts: list[Host], status: str, step: str, template: str | None, fail
    ) -> list[Host]:
        """Set each host's status, run the hook (in parallel); return hosts whose hook passed."""
        self._enter_phase(hosts, status, step)
        if template is None or not hosts:
            return hosts
        pool = ThreadPoolExecutor(
            max_workers=min(16, len(hosts)), thread_name_prefix=f"gpuprov-{step}"
        )
        try:
            futures = [(host, pool.submit(self.hooks.run, template, host)) for host in hosts]
            passed = []
            for host, future in futures:
                result = future.result()
                if result.ok:
                    passed.append(host)
                else:
                    rc = "timed out" if result.returncode is None else f"exit {result.returncode}"
                    fail(
                        host.name,
                        step,
                        f"{step} hook failed ({rc}): {result.command}\n{result.excerpt}",
                    )
            return passed
        finally:
            # On SIGINT: hooks already started finish, queued ones never start.
            pool.shutdown(wait=True, cancel_futures=True)

    def _callable_phase(self, hosts: list[Host], status: str, step: str, fail, fn) -> list[Host]:
        if not hosts:
            return []
        self._enter_phase(hosts, status, step)
        try:
            results = fn(list(hosts))
        except Exception as exc:  # the callable's own failure fails its hosts, not the run
            results = {
                h.name: HostResult(False, step, f"{step} raised {type(exc).__name__}: {exc}")
                for h in hosts
            }
        passed = []
        for host in hosts:
            result = results.get(host.name, NO_RESULT)
            if result.ok:
                passed.append(host)
            else:
                fail(host.name, result.step or step, result.error or f"{step} failed")
        return passed
