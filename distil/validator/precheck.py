"""An epoch's pre-checks: the queue's budget, each result turned into state, the strikes.

`run_prechecks` checks `--checks.max_per_epoch` commitments from the queue
(`distil.scoring.prechecks.precheck_queue`: never-checked first, then retries) and turns
each `CheckResult` into state: passed → checked (hash claims), INVALID/COPY/REMOVED →
disqualified, UNAVAILABLE → pending or a verdict by the grace period, TRANSIENT → pending
as a retry. It returns the attempts so that, once the integrity checks have run,
`apply_strikes` can tell a repo's own failures from an outage. `Prechecks` is the
validator's step: it binds the store, the limits and the teacher's tokenizer reference.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from loguru import logger

from distil.checks import COPY, INVALID, REMOVED, UNAVAILABLE, CheckLimits, CheckResult, check_commitment, load_reference, publication_verdict
from distil.checks.clock import Deadlines
from distil.commitment import Commitment, parse_commitment
from distil.hub import ModelStore
from distil.scoring import epoch as ep
from distil.scoring import ownership
from distil.scoring import prechecks as pq
from distil.state import ValidatorState
from distil.validator.timing import TimedDownloads
from template.base.validator import one_line

BUDGET_CODE = "PRECHECK_BUDGET"  # distil.checks.codes: the epoch's download budget ran out

# (commitment, owner_of, hotkey, owner_exempt) -> CheckResult: the validator binds the store, limits and
# teacher; `hotkey` is the committer distil.json must name, `owner_exempt` why it need not (spec v3)
Checker = Callable[[Commitment, Callable[[str], "str | None"], str, "str | None"], CheckResult]


@dataclass
class PrecheckRound:
    state: ValidatorState
    attempts: list[pq.Attempt] = field(default_factory=list)
    events: list[ep.Event] = field(default_factory=list)
    out_of_time: bool = False  # the epoch's download budget ran out: the rest wait for the next epoch


class Prechecks:
    """The epoch's pre-check step (docs/rounds.md, step 2).

    The teacher's tokenizer reference (`--checks.teacher`) is loaded once; if it cannot
    be, no commitment is checked this epoch (no verdict could be fair). The seconds spent
    downloading snapshots are kept in `download_seconds`, per epoch.
    """

    def __init__(self, store: ModelStore, limits: CheckLimits, teacher: str, budget: int, grace_blocks: int,
                 deadlines: Deadlines | None = None, budget_s: float | None = None):
        self.store, self.limits, self.teacher = store, limits, teacher
        self.budget, self.grace_blocks = budget, grace_blocks
        self.deadlines = deadlines
        self.budget_s = budget_s  # the epoch's pre-check time (None: unbounded); see run
        self.download_seconds = 0.0
        self._reference = None

    def reference(self):
        if self._reference is None:
            self._reference = load_reference(self.teacher, store=self.store)
        return self._reference

    def run(self, state: ValidatorState, now: int) -> PrecheckRound:
        self.download_seconds = 0.0
        try:
            teacher = self.reference()
        except Exception as e:  # the teacher's tokenizer could not be read: no verdict can be fair
            logger.warning(f"no pre-checks this epoch: the teacher's tokenizer reference failed ({type(e).__name__}: {one_line(e)})")
            return PrecheckRound(state)
        store = TimedDownloads(self.store)

        def check(commitment, owner_of, hotkey, owner_exempt):
            return check_commitment(store, commitment, self.limits, teacher=teacher, owner_of=owner_of, hotkey=hotkey,
                                    owner_exempt=owner_exempt, deadlines=self.deadlines)

        # No check starts after the budget, and every hub call of this epoch's pre-checks ends by
        # its end (PRECHECK_BUDGET: the check resumes next epoch, as if not tried), so neither a
        # slow hub nor slow steps can hold the round; each step has its own deadline too.
        budget_end = None if self.budget_s is None else time.monotonic() + self.budget_s
        try:
            with self.store.deadline_at(budget_end):
                return run_prechecks(state, now, check, self.budget, self.grace_blocks, self.budget_s)
        finally:
            self.download_seconds = store.seconds


def run_prechecks(state: ValidatorState, now: int, check: Checker, budget: int, grace_blocks: int,
                  budget_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> PrecheckRound:
    """Check up to `budget` commitments from the queue; no new check starts once `budget_s`
    seconds have passed (the rest wait for the next epoch, in the queue's order)."""
    out = PrecheckRound(state)
    started = clock()
    queue = ep.to_check(state, budget)
    for n, hotkey in enumerate(queue):
        if budget_s is not None and clock() - started >= budget_s:
            logger.info(f"pre-check budget of {budget_s:.0f}s spent after {n} check(s); "
                        f"{len(queue) - n} wait for the next epoch")
            break
        out.state = _one(out, hotkey, now, check, grace_blocks)
        if out.out_of_time:
            break
    return out


def _one(out: PrecheckRound, hotkey: str, now: int, check: Checker, grace_blocks: int) -> ValidatorState:
    state = out.state
    record = state.miners[hotkey]
    owner_of = ep.registry_of(state).copy_lookup(ep.claim_of(state, hotkey))
    try:
        result = check(parse_commitment(record.commitment), owner_of, hotkey, ownership.owner_exemption(state, hotkey))
    except Exception as e:  # the checker must never raise; if it does, it is a checker failure
        logger.opt(exception=e).debug(f"pre-check of {hotkey} raised")
        result = CheckResult.failure("CHECKER_ERROR", f"the checker raised {type(e).__name__}: {' '.join(str(e).split())[:300]}")
    if result.code == BUDGET_CODE:  # our schedule, not the repo's: not an attempt, its place in the queue kept
        out.out_of_time = True
        logger.info(f"pre-check of {hotkey} ({record.commitment}) waits for the next epoch: {result.detail}")
        return state
    if result.seen_public and not record.seen_public:
        state = state.copy()
        state.miners[hotkey] = dataclasses.replace(state.miners[hotkey], seen_public=True)
    if result.ok:
        out.attempts.append(pq.Attempt(hotkey, pq.VERDICT))
        return _note(out, ep.mark_checked(state, hotkey, result.content_hash, result.files_hash, result.params))
    if result.reason in (INVALID, COPY, REMOVED):
        out.attempts.append(pq.Attempt(hotkey, pq.VERDICT, result.code))
        return _note(out, ep.disqualify(state, hotkey, result.reason, result.code, result.detail))
    if result.reason == UNAVAILABLE:
        out.attempts.append(pq.Attempt(hotkey, pq.UNAVAILABLE, result.code))
        verdict = publication_verdict(record.commit_block, now, grace_blocks, state.miners[hotkey].seen_public)
        if verdict == REMOVED:
            return _note(out, ep.disqualify(state, hotkey, REMOVED, "REMOVED", f"was public, now: {result.detail}"))
        if verdict == INVALID:
            return _note(out, ep.disqualify(state, hotkey, INVALID, result.code, f"{result.detail} (not public within the grace period)"))
        until = record.commit_block + grace_blocks
        return pq.note_attempt(state, hotkey, result.code, f"{result.detail}; re-checked each epoch until block {until}", now)
    # TRANSIENT: a retry, after the never-checked commitments of later epochs
    out.attempts.append(pq.Attempt(hotkey, pq.TRANSIENT, result.code))
    logger.warning(f"pre-check of {hotkey} ({record.commitment}) transient, {result.code}: {result.detail}; retried later")
    return pq.note_attempt(state, hotkey, result.code, f"{result.detail}; retried next epoch", now)


def apply_strikes(
    state: ValidatorState, attempts: list[pq.Attempt], hub_answered: Iterable[str], max_strikes: int
) -> tuple[ValidatorState, list[ep.Event]]:
    """Strike the repos whose failure this epoch was their own (see `prechecks`)."""
    strikers = pq.repo_specific_failures(attempts, hub_answered)
    transient = [a.hotkey for a in attempts if a.outcome == pq.TRANSIENT]
    if transient and not strikers:
        logger.warning(f"{len(transient)} pre-check(s) failed this epoch as every repo did (an outage): no strikes")
    return pq.add_strikes(state, strikers, max_strikes)


def _note(out: PrecheckRound, result: tuple[ValidatorState, list[ep.Event]]) -> ValidatorState:
    state, events = result
    out.events.extend(events)
    return state
