"""What an epoch decides, as pure functions over `ValidatorState` (DESIGN.md §4).

The validator's `forward()` calls these in order: `reconcile` (chain → state),
the pre-check queue and its strikes (`distil.scoring.prechecks`), `plan_round` (who reaches the GPU), `apply_round` (a
finished round's scores → new king, disqualifications), `weights_for` (the vector to set).
Each returns a new state and never touches the chain, the hub or a GPU; the caller only
saves the state once a whole round is done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping

from distil.commitment import CommitmentError, parse_commitment
from distil.checks.hashing import Claim, DuplicateRegistry
from distil.fingerprint import parse_fingerprint
from distil.precedence import precedence
from distil.scoring.coldkeys import MAX_PER_COLDKEY, cap_per_coldkey
from distil.scoring.fingerprints import COPY_DISTANCE, copies_of
from distil.scoring.contender import Contender, new_contender, step
from distil.scoring.crowning import Probe, crown_candidates, crown_first_sound, first_sound
from distil.scoring.prechecks import precheck_queue
from distil.scoring.rules import (
    CONFIRM_ALPHA,
    COPY_COSINE,
    KL_LIMIT,
    MAX_CHALLENGERS,
    V3_ALPHA,
    V3_EPSILON,
    WinTwice,
    functional_copies,
    kl_failure,
    rank_key,
)
from distil.scoring.verdicts import (  # noqa: F401  (re-exported for callers)
    EVAL_FAILED_REPEATEDLY,
    Event,
    crown,
    disqualify,
    eval_strike,
    note_pending,
)
from distil.state import (
    COPY,
    DISQUALIFIED,
    EVALUATED,
    INVALID,
    KING,
    KL_TOO_HIGH,
    PENDING,
    MinerRecord,
    ValidatorState,
)


@dataclass(frozen=True)
class ScoredModel:
    """A model's result in a round (all on the same prompts and continuations)."""

    kl_mean: float
    kl_se: float
    kl_median: float
    kl_p99: float
    top1_agreement: float
    per_prompt_kl: tuple[float, ...]
    copy_vector: tuple[float, ...] = ()  # per-position KL of the round's first prompts
    fingerprint: dict | None = None  # spec v3: `Fingerprint.to_dict()` on the validator's fingerprint inputs


@dataclass(frozen=True)
class RoundFingerprints:
    """Spec v3: the inputs a round's models were fingerprinted on and the teacher's own
    fingerprint on them, the reference (`FingerprintInputs.to_dict()`, `Fingerprint.to_dict()`)."""

    inputs: dict
    reference: dict


@dataclass(frozen=True)
class FailedModel:
    """A model that could not be scored: `invalid` (the model's fault, final) or `transient`
    (no verdict: a strike when the round scored another model, unless `ours`)."""

    kind: str  # "invalid" | "transient"
    code: str
    detail: str
    ours: bool = False  # our disk, our stop: never the model's strike


DEFAULT_MAX_EVAL_STRIKES = 3

# Spec v3: a round seeded by block S scores only commitments made before S − COMMIT_DELAY
# (docs/scoring.md, "Who is scored"). One epoch at the default epoch length: a commitment a
# round may score was on chain, final, when the epoch before it began, so every validator
# had that epoch to pre-check it and they agree on who the round scores.
DEFAULT_COMMIT_DELAY = 50


@dataclass(frozen=True)
class RoundParams:
    """The decision rules' parameters (spec v3: win twice, `rules.WinTwice`)."""

    epsilon: float = V3_EPSILON
    alpha: float = V3_ALPHA  # the first stage's level per round: each challenger at alpha / max_challengers
    kl_limit: float = KL_LIMIT
    copy_cosine: float = COPY_COSINE
    max_strikes: int = DEFAULT_MAX_EVAL_STRIKES  # evaluation strikes before EVAL_FAILED_REPEATEDLY
    # spec v3 (win twice, rules.WinTwice(epsilon, alpha, confirm_alpha, max_challengers)): the contender's
    # confirmation level, and the first stage's fixed divisor (--eval.max_challengers, never the number scored)
    confirm_alpha: float = CONFIRM_ALPHA
    max_challengers: int = MAX_CHALLENGERS
    copy_distance: float = COPY_DISTANCE  # spec v3: fingerprints closer than this are one model (scoring/fingerprints.py)


@dataclass(frozen=True)
class RoundPlan:
    """Who is scored this epoch: the king (if any) plus challengers, or a rematch without a king."""

    king: str | None
    challengers: tuple[str, ...]
    rematch: tuple[str, ...] = ()  # evaluated models re-scored because there is no king
    deferred: tuple[str, ...] = ()  # ready challengers over their coldkey's cap: a later round
    later: tuple[str, ...] = ()  # checked, but committed too late for this round's seed: a later round
    commit_deadline: int | None = None  # the round scores commitments made before this block
    contender: str | None = None  # spec v3: the model under confirmation, scored beside the king

    @property
    def models(self) -> list[str]:
        return (([self.king] if self.king else []) + ([self.contender] if self.contender else [])
                + list(self.rematch) + list(self.challengers))

    @property
    def needs_gpu(self) -> bool:
        """A new challenger, a contender to confirm (even with no new challenger), or an empty hill to fill."""
        return bool(self.challengers) or self.contender is not None or (self.king is None and len(self.rematch) > 0)


@dataclass
class RoundOutcome:
    state: ValidatorState
    events: list[Event] = field(default_factory=list)
    applied: bool = True  # False: the round changed nothing (the king could not be scored)


# -- chain → state ----------------------------------------------------------------------


def reconcile(
    state: ValidatorState,
    hotkey_uids: Mapping[str, int],
    commitments: Mapping[str, tuple[str, int]],
    now_block: int,
    coldkeys: Mapping[str, str] | None = None,
) -> tuple[ValidatorState, list[Event]]:
    """Bring the state in line with the metagraph and the commitments on chain.

    * A hotkey no longer registered loses its record (a new hotkey on the same UID
      inherits nothing); if it was king, there is no king until the next round. Hash
      ownership is kept: copies of a deregistered model are still copies.
    * A new commitment becomes a `pending` record at its commit block; one that does not
      parse is disqualified `INVALID` (code `COMMITMENT_FORMAT`), final for that hotkey.
    * One commitment per hotkey: a commitment that differs from the recorded one is
      ignored (and reported).
    * `coldkeys` (hotkey → owner coldkey, from the metagraph) is recorded on each record,
      for the per-coldkey challenger cap.
    """
    state = state.copy()
    events: list[Event] = []
    for hotkey in sorted(set(state.miners) - set(hotkey_uids)):
        events.append(Event("deregistered", hotkey, f"uid {state.miners[hotkey].uid} no longer holds this hotkey"))
        del state.miners[hotkey]
        if state.king == hotkey:
            state.king = None
            events.append(Event("king_lost", hotkey, "the king was deregistered; next round has no king"))
        if state.legacy_king == hotkey:
            state.legacy_king = None
    for hotkey, uid in sorted(hotkey_uids.items(), key=lambda kv: kv[1]):
        record = state.miners.get(hotkey)
        on_chain = commitments.get(hotkey)
        coldkey = (coldkeys or {}).get(hotkey)
        if record is not None:
            if record.uid != uid or (coldkey and record.coldkey != coldkey):
                record = state.miners[hotkey] = replace(record, uid=uid, coldkey=coldkey or record.coldkey)
            if on_chain is not None and not _same_commitment(record, on_chain):
                events.append(
                    Event(
                        "commitment_change_ignored",
                        hotkey,
                        f"chain now holds {on_chain[0]!r} at block {on_chain[1]}; "
                        f"keeping {record.commitment!r} from block {record.commit_block} (one commitment per hotkey)",
                    )
                )
            continue
        if on_chain is None:
            continue
        data, block = on_chain
        try:
            commitment = str(parse_commitment(data))
        except CommitmentError as e:
            state.miners[hotkey] = MinerRecord(
                uid=uid,
                commitment=data,
                commit_block=int(block),
                status=DISQUALIFIED,
                reason=INVALID,
                code="COMMITMENT_FORMAT",
                detail=str(e),
                first_seen_block=now_block,
                coldkey=coldkey,
            )
            events.append(Event("disqualified", hotkey, f"INVALID commitment: {e}"))
            continue
        state.miners[hotkey] = MinerRecord(uid=uid, commitment=commitment, commit_block=int(block), first_seen_block=now_block,
                                           coldkey=coldkey)
        events.append(Event("new_commitment", hotkey, f"{commitment} at block {block}"))
    return state, events


def _same_commitment(record: MinerRecord, on_chain: tuple[str, int]) -> bool:
    data, block = on_chain
    if int(block) != record.commit_block:
        return False
    try:
        return str(parse_commitment(data)) == record.commitment
    except CommitmentError:
        return data == record.commitment


# -- pre-checks -------------------------------------------------------------------------


def to_check(state: ValidatorState, limit: int | None = None) -> list[str]:
    """This epoch's pre-checks: never-attempted commitments first, then retries (see `prechecks`)."""
    return precheck_queue(state, len(state.miners) if limit is None else limit)


def mark_checked(
    state: ValidatorState,
    hotkey: str,
    content_hash: str | None,
    files_hash: str | None,
    params: int | None,
) -> tuple[ValidatorState, list[Event]]:
    """A commitment passed its pre-checks: claim its hashes (the earliest commit owns one).

    A later claimant of an owned hash is a `COPY`; an earlier one takes the hash over and
    the previous owner becomes the `COPY`, whatever its standing.
    """
    state = state.copy()
    record = state.miners[hotkey]
    state.miners[hotkey] = replace(
        record, checked=True, seen_public=True, content_hash=content_hash, files_hash=files_hash, params=params,
        detail=None, code=None,
    )
    events = [Event("checked", hotkey, f"pre-checks passed ({params} parameters)")]
    for digest in (h for h in (files_hash, content_hash) if h):
        state, more = claim_hash(state, hotkey, digest)
        events.extend(more)
        if state.miners[hotkey].status == DISQUALIFIED:
            break
    return state, events


def registry_of(state: ValidatorState) -> DuplicateRegistry:
    """The state's hash owners as a `DuplicateRegistry` (earliest commit block owns a hash;
    in one block, the block's draw: `distil.precedence`)."""
    return DuplicateRegistry(
        {d: Claim(int(o["commit_block"]), o["hotkey"], o["commitment"], o.get("block_hash"))
         for d, o in state.hash_owners.items()}
    )


def claim_of(state: ValidatorState, hotkey: str) -> Claim:
    record = state.miners[hotkey]
    return Claim(record.commit_block, hotkey, record.commitment, record.commit_block_hash)


def claim_hash(state: ValidatorState, hotkey: str, digest: str) -> tuple[ValidatorState, list[Event]]:
    state = state.copy()
    claim = claim_of(state, hotkey)
    registry, owner, displaced = registry_of(state).claim(digest, claim)
    state.hash_owners[digest] = {"hotkey": owner.hotkey, "commit_block": owner.commit_block, "commitment": owner.commitment,
                                 "block_hash": owner.block_hash}
    loser = displaced if owner == claim else claim
    if loser is None or loser.hotkey == owner.hotkey or loser.hotkey not in state.miners:
        return state, []
    if state.miners[loser.hotkey].reason == COPY:  # already the copy (of the files hash, say): one verdict
        return state, []
    detail = (
        f"same weights as {owner.commitment} of {owner.hotkey}, committed earlier "
        f"(block {owner.commit_block} < {loser.commit_block})"
        if owner.commit_block < loser.commit_block
        else f"same weights as {owner.commitment} of {owner.hotkey}, committed in the same block {owner.commit_block}, "
        "which the block's draw puts first"
    )
    return disqualify(state, loser.hotkey, COPY, "DUPLICATE_CONTENT", detail)


# -- who reaches the GPU ----------------------------------------------------------------


def first_seed_block(commit_block: int, epoch_length: int, commit_delay: int = DEFAULT_COMMIT_DELAY) -> int:
    """The seed block of the first round that may score a commitment made at `commit_block`:
    the first epoch boundary S with commit_block < S − commit_delay."""
    length = int(epoch_length)
    return (int(commit_block) + int(commit_delay)) // length * length + length


def ready_challengers(state: ValidatorState, exclude: frozenset[str] = frozenset(),
                      before_block: int | None = None) -> list[str]:
    """Valid, never evaluated, committed before `before_block` (None: any block); those
    without evaluation strikes first, then earliest commit block (a model that keeps
    failing when scored cannot hold a seat ahead of new ones)."""
    ready = [
        hk for hk, m in state.miners.items()
        if m.status == PENDING and m.checked and not m.evaluated and hk not in exclude
        and (before_block is None or m.commit_block < before_block)
    ]
    ready.sort(key=lambda hk: (state.miners[hk].eval_strikes > 0, state.miners[hk].commit_block, hk))
    return ready


def contender_of(state: ValidatorState) -> Contender | None:
    """The model under confirmation (spec v3), or None: also when its record is gone or
    disqualified, is another commitment now, or the king it beat no longer reigns (the record
    is then void; `apply_round` drops it)."""
    if state.contender is None:
        return None
    contender = Contender.from_dict(state.contender)
    record = state.miners.get(contender.hotkey)
    if (record is None or record.status == DISQUALIFIED or record.commit_block != contender.commit_block
            or contender.king != state.king):
        return None
    return contender


def plan_round(
    state: ValidatorState, seed_block: int, max_challengers: int = 8, rematch_size: int = 4,
    exclude: frozenset[str] = frozenset(), max_per_coldkey: int = MAX_PER_COLDKEY,
    commit_delay: int = DEFAULT_COMMIT_DELAY,
) -> RoundPlan:
    """King + new challengers for the round seeded by `seed_block`; without a king, also the
    best few evaluated models.

    Spec v3: only commitments made before `seed_block − commit_delay` are challengers; a
    later one, checked or not, waits for a later round (`later`): whoever commits once the
    seed block's hash is public could fit a model to the round's prompts.
    Scores from different prompt sets are never compared, so when there is no king the
    best evaluated models are scored again beside the challengers and the round decides.
    `exclude`: models to leave out this epoch (their integrity check could not run).
    `max_per_coldkey`: new challengers of one owner coldkey per round (applied before
    `max_challengers`; the king and rematch models do not count); the others are
    `deferred` to later rounds, earliest commit first.
    """
    deadline = int(seed_block) - int(commit_delay)
    admitted, deferred = cap_per_coldkey(
        ready_challengers(state, exclude, before_block=deadline), lambda hk: state.miners[hk].coldkey, max_per_coldkey)
    new = tuple(admitted[: max(0, int(max_challengers))])
    later = tuple(hk for hk in ready_challengers(state, exclude) if state.miners[hk].commit_block >= deadline)
    if state.king is not None:
        contender = contender_of(state)
        seat = contender.hotkey if contender is not None and contender.hotkey not in exclude else None
        return RoundPlan(state.king, new, deferred=tuple(deferred), later=later, commit_deadline=deadline,
                         contender=seat)
    evaluated = [hk for hk, m in state.miners.items()
                 if m.status == EVALUATED and m.kl is not None and m.checked and hk not in exclude]
    evaluated.sort(key=lambda hk: rank_key(state.miners[hk].kl["mean"], state.miners[hk].commit_block, hk))
    return RoundPlan(None, new, tuple(evaluated[: max(0, int(rematch_size))]), tuple(deferred), later, deadline)


# -- a finished round -------------------------------------------------------------------


def apply_round(
    state: ValidatorState,
    plan: RoundPlan,
    results: Mapping[str, ScoredModel | FailedModel],
    round_info: dict,
    params: RoundParams = RoundParams(),
    probe: Probe | None = None,
    fingerprints: RoundFingerprints | None = None,
) -> RoundOutcome:
    """Apply a completed round: disqualifications, evaluation strikes, KL records, the dethrone
    rule, the degeneration guard.

    Every model of `plan` must have a result. A transient failure is the model's strike when
    the round scored another model (the fault is its own) and it is not `ours`; at
    `params.max_strikes` the model is INVALID `EVAL_FAILED_REPEATEDLY`. If the king failed
    transiently, the challengers' scores are evidence for the king's strike and nothing
    else: they stay pending with no strike and no KL, and meet the king next round (the king
    keeps its weights until its last strike). Before a model is crowned, `probe(hotkey)` is
    asked about it, best candidate first (`distil.scoring.crowning`); None crowns unprobed. A
    round that crowns a king ends a previous scoring version's interim king (`legacy_king`).
    With `fingerprints` (spec v3), every scored model's fingerprint is kept, and a model
    fingerprinted for the first time that matches an earlier commitment's is a COPY
    (`judge_fingerprints`), before anyone is crowned.
    """
    missing = [hk for hk in plan.models if hk not in results]
    if missing:
        raise ValueError(f"round results missing for {missing}")
    state = state.copy()
    events: list[Event] = []
    seed_block = round_info.get("seed_block")
    scored = {hk for hk in plan.models if isinstance(results[hk], ScoredModel)}
    king = plan.king
    if king is not None and isinstance(results[king], FailedModel) and results[king].kind == "transient":
        return _king_failed(state, plan, results, scored, params)

    valid: dict[str, ScoredModel] = {}
    for hotkey in plan.models:
        result = results[hotkey]
        if isinstance(result, FailedModel):
            if result.kind == "invalid":
                state, more = disqualify(state, hotkey, INVALID, result.code, result.detail)
                events.extend(more)
            else:
                state, more = _transient(state, hotkey, result, bool(scored - {hotkey}), params.max_strikes)
                events.extend(more)
            continue
        problem = kl_failure(result.kl_mean, params.kl_limit)
        if problem:
            state, more = disqualify(state, hotkey, KL_TOO_HIGH, "KL_TOO_HIGH", problem)
            measured = _kl_record(result, seed_block)
            if measured is not None:  # the measured KL stays on record
                state.miners[hotkey] = replace(state.miners[hotkey], kl=measured)
            events.extend(more)
            continue
        valid[hotkey] = result

    copies = functional_copies(
        {hk: r.copy_vector for hk, r in valid.items() if r.copy_vector},
        {hk: state.miners[hk].commit_block for hk in valid},
        params.copy_cosine,
        block_hashes={hk: state.miners[hk].commit_block_hash for hk in valid},
    )
    for copy, original in sorted(copies.items()):
        state, more = disqualify(
            state, copy, COPY, "FUNCTIONAL_COPY",
            f"per-position KL matches {original} (cosine > {params.copy_cosine}); {original} committed earlier"
            + (f" (same block {state.miners[copy].commit_block}: the block's draw)"
               if state.miners[copy].commit_block == state.miners[original].commit_block else ""),
        )
        events.extend(more)
        del valid[copy]

    if fingerprints is not None:
        state, more = judge_fingerprints(state, results, fingerprints, params.copy_distance)
        events.extend(more)
        for hotkey in [hk for hk in valid if state.miners[hk].status == DISQUALIFIED]:
            del valid[hotkey]

    commit_blocks = {hk: state.miners[hk].commit_block for hk in valid}
    current = state.king if state.king in valid else None
    rule = WinTwice(params.epsilon, params.alpha, params.confirm_alpha, params.max_challengers)
    contender = contender_of(state) if current is not None else None
    if state.contender is not None and contender is None:
        events.append(Event("contender_dropped", Contender.from_dict(state.contender).hotkey,
                            "the contender or the king it beat left: its confirmation is void"))
    decision = step(contender, current, valid, commit_blocks, seed_block, rule) if current is not None else None
    waiting = set(decision.waiting) if decision is not None else set()

    for hotkey, result in valid.items():
        record = state.miners[hotkey]
        if hotkey in waiting:  # passed the first stage while the contender's confirmation is open: next round
            state.miners[hotkey] = replace(record, code="CONTENDER_OPEN", kl=None, eval_strikes=0,
                                           detail="passed the first stage; the contender's confirmation is still "
                                                  "open: scored again next round")
            events.append(Event("retry_later", hotkey, "passed the first stage while the contender's confirmation is open"))
            continue
        state.miners[hotkey] = replace(
            record,
            status=KING if hotkey == state.king else EVALUATED,
            code=None,
            detail=None,
            kl=_kl_record(result, seed_block),
            eval_strikes=0,  # scored: its failures were not in a row
        )

    probes: dict[str, str] = {}
    if decision is None:  # no king in this round (an empty hill, or the king just disqualified): v2's walk
        state.contender = None
        candidates, decisions = crown_candidates(valid, None, commit_blocks, params.epsilon, params.alpha)
        why = {hk: f"no king: best valid model of the round (KL {valid[hk].kl_mean:.6f})" for hk in candidates}
        state, more, probes = crown_first_sound(state, candidates, probe, why, params.max_strikes)
        events.extend(more)
    else:
        decisions = dict(decision.decisions)
        state.contender = None if decision.contender is None else decision.contender.to_dict()
        reigning = current
        if decision.crowned is not None:
            reigning = decision.crowned
            state = crown(state, reigning)
            events.append(Event("new_king", reigning, f"dethroned {model_label(state, current)}: "
                                                      f"{decisions[reigning]}"))
        elif contender is not None and decision.confirmation is not None:
            events.append(Event("contender", contender.hotkey, decisions[contender.hotkey]))
        if decision.candidates:
            state, more, probes, sound = first_sound(state, decision.candidates, probe, params.max_strikes)
            events.extend(more)
            if sound is not None:
                record = new_contender(sound, reigning, valid, commit_blocks, seed_block, rule)
                state.contender = record.to_dict()
                events.append(Event("contender", sound, f"won the first stage against {model_label(state, reigning)} "
                                                        f"(KL {record.kl:.6f} vs {record.king_kl:.6f}, p = "
                                                        f"{record.p_value:.3g}): confirmed or not in the next round, "
                                                        "on fresh prompts"))
        if decision.crowned is None:
            why = (f"the contender {model_label(state, Contender.from_dict(state.contender).hotkey)} "
                   "is confirmed or not next round" if state.contender is not None
                   else f"no challenger beat KL {valid[current].kl_mean:.6f} twice")
            events.append(Event("king_holds", current, why))
    if state.king is not None:  # crowned under this scoring version: the previous version's king steps down
        state.legacy_king = None  # (a round that crowned nobody, e.g. every model transient, leaves it weighted)
    state.last_round = {
        **round_info,
        "models": plan.models,
        "king_before": plan.king,
        "king_after": state.king,
        "kl": {hk: r.kl_mean for hk, r in valid.items()},
        "decisions": decisions,
        "probes": probes,
        "contender": state.contender,
        "confirmation": None if decision is None else decision.confirmation,
    }
    return RoundOutcome(state, events)


def _owner_precedence(owner: dict) -> tuple:
    return precedence(owner["commit_block"], owner.get("block_hash"), owner["hotkey"])


def judge_fingerprints(state: ValidatorState, results: Mapping[str, ScoredModel | FailedModel],
                       fingerprints: RoundFingerprints, threshold: float = COPY_DISTANCE) -> tuple[ValidatorState, list[Event]]:
    """Spec v3's functional copies across rounds (docs/scoring.md, "Functional copies").

    Every model scored with a fingerprint leaves it in `state.fingerprints`, keyed by its
    commitment (kept after the miner record is gone: a thief could wait for the original to
    deregister). A commitment fingerprinted for the first time is compared with every kept
    fingerprint this validator computed on the same inputs, device kind and dtype
    (`scoring.fingerprints.copies_of`); of two that match, the earlier commitment
    (`distil.precedence`: block, then the block's draw) owns the model and the later one is
    COPY `FINGERPRINT_COPY`, whichever was scored first. The king is never judged again
    (it was judged as a challenger, or predates spec v3). The first round that computes
    fingerprints sets `state.fingerprint_inputs`. Mutates and returns `state`.
    """
    events: list[Event] = []
    if state.fingerprint_inputs is None:
        state.fingerprint_inputs = fingerprints.inputs
    if fingerprints.inputs.get("sha256") != state.fingerprint_inputs.get("sha256"):
        return state, events  # not this validator's inputs: nothing to compare with
    reference = parse_fingerprint(fingerprints.reference)
    new = {}
    for hotkey, result in results.items():
        record = state.miners.get(hotkey)
        if isinstance(result, ScoredModel) and result.fingerprint is not None and record is not None \
                and record.commitment not in state.fingerprints:
            new[hotkey] = {"hotkey": hotkey, "commitment": record.commitment, "commit_block": record.commit_block,
                           "block_hash": record.commit_block_hash, "fingerprint": result.fingerprint}
    for hotkey, owner in sorted(new.items(), key=lambda item: _owner_precedence(item[1])):
        kept = sorted(state.fingerprints.values(), key=_owner_precedence)
        state.fingerprints[owner["commitment"]] = owner
        mine = parse_fingerprint(owner["fingerprint"])
        earlier = [(o["commitment"], parse_fingerprint(o["fingerprint"])) for o in kept
                   if _owner_precedence(o) < _owner_precedence(owner)]
        later = [(o["commitment"], parse_fingerprint(o["fingerprint"])) for o in kept
                 if _owner_precedence(o) > _owner_precedence(owner)]
        matches = copies_of(mine, earlier, reference, threshold)
        if matches:
            state, more = _fingerprint_copy(state, hotkey, owner["commitment"], matches[0], threshold)
            events.extend(more)
            continue
        for match in copies_of(mine, later, reference, threshold):  # an earlier original scored after its copy
            copier = state.fingerprints[match.owner]["hotkey"]
            state, more = _fingerprint_copy(state, copier, match.owner, replace(match, owner=owner["commitment"]), threshold)
            events.extend(more)
    return state, events


def _fingerprint_copy(state: ValidatorState, hotkey: str, commitment: str, match, threshold: float
                      ) -> tuple[ValidatorState, list[Event]]:
    """`hotkey`'s `commitment` copies the earlier `match.owner`: COPY, unless it is the king, or
    the record has moved on (another commitment) or is already disqualified."""
    record = state.miners.get(hotkey)
    if record is None or record.commitment != commitment or record.status == DISQUALIFIED or hotkey == state.king:
        return state, []
    original = state.fingerprints.get(match.owner)
    who = f"{original['commitment']} (committed at block {original['commit_block']})" if original else match.owner
    return disqualify(state, hotkey, COPY, "FINGERPRINT_COPY",
                      f"computes the same function as the earlier commitment {who}: fingerprint distance "
                      f"{match.distance:.3f} < {threshold} (docs/scoring.md, functional copies)")


def model_label(state: ValidatorState, hotkey: str | None) -> str:
    """`uid 3 ns/name` for events a person reads."""
    record = state.miners.get(hotkey) if hotkey else None
    return f"uid {record.uid} {record.commitment.split('@', 1)[0]}" if record is not None else str(hotkey)


def _transient(state: ValidatorState, hotkey: str, failure: FailedModel, others_scored: bool,
               max_strikes: int) -> tuple[ValidatorState, list[Event]]:
    """A transient failure: the model's strike if the round scored another model and it is not
    ours; otherwise only a note. Pending either way (scored again in a later round)."""
    if failure.ours or not others_scored:
        why = "ours" if failure.ours else "no other model was scored either"
        state = note_pending(state, hotkey, failure.code, f"not scored this round ({why}): {failure.detail}")
        return state, [Event("retry_later", hotkey, f"{failure.code}: {failure.detail}")]
    return eval_strike(state, hotkey, failure.code, failure.detail, max_strikes)


def _king_failed(state: ValidatorState, plan: RoundPlan, results: Mapping[str, ScoredModel | FailedModel],
                 scored: set[str], params: RoundParams) -> RoundOutcome:
    """The king could not be scored. The challengers' scores only say whether the fault is the
    king's (the round scored them): they are not kept, no challenger takes a strike, and they
    meet the king next round. Their own final verdicts (INVALID) still stand."""
    king = plan.king
    failure = results[king]
    events: list[Event] = []
    if scored - {king} and not failure.ours:
        state, more = eval_strike(state, king, failure.code, failure.detail, params.max_strikes)
        events.extend(more)
    else:
        state = note_pending_king(state, king, failure)
    for hotkey in plan.models:
        result = results[hotkey]
        if hotkey == king:
            continue
        if isinstance(result, FailedModel) and result.kind == "invalid":
            state, more = disqualify(state, hotkey, INVALID, result.code, result.detail)
            events.extend(more)
        elif state.miners[hotkey].status == PENDING:
            state = note_pending(state, hotkey, "KING_NOT_SCORED",
                                 "the king could not be scored this round; scored against it again next round")
    events.append(Event("round_aborted", king, f"the king could not be scored ({failure.code}: {failure.detail}); "
                                               "the challengers meet it next round"))
    return RoundOutcome(state, events, applied=False)


def note_pending_king(state: ValidatorState, hotkey: str, failure: FailedModel) -> ValidatorState:
    """The king failed for a reason that is not its own: its record says so; nothing else changes."""
    state = state.copy()
    state.miners[hotkey] = replace(state.miners[hotkey], code=failure.code,
                                   detail=f"not scored this round (not its fault): {failure.detail}")
    return state


def _kl_record(result: ScoredModel, seed_block: int | None) -> dict | None:
    """A model's KL summary for its state record; None if any figure is not finite.

    KL is never negative, but the kernel's float rounding puts a position the student
    matches to ~1e-6 nats slightly below zero; the record (whose schema refuses negative
    KL, so the state could not be saved) holds 0 there. Decisions use the raw figures.
    """
    figures = {"mean": result.kl_mean, "se": result.kl_se, "median": result.kl_median, "p99": result.kl_p99,
               "top1": result.top1_agreement}
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in figures.values()):
        return None
    return {**{k: max(0.0, float(v)) for k, v in figures.items()}, "seed_block": seed_block}


# -- weights ----------------------------------------------------------------------------


def weights_for(state: ValidatorState, hotkey_uids: Mapping[str, int]) -> tuple[list[int], list[float]] | None:
    """King 1.0, every other uid 0.0; None while there is no registered king.

    Right after a scoring-version change there is no king yet: the previous version's king
    (`legacy_king`) keeps the weights until a round under the new version crowns a king.
    """
    king = state.king or state.legacy_king
    if king is None or king not in hotkey_uids:
        return None
    king_uid = hotkey_uids[king]
    uids = sorted(set(hotkey_uids.values()))
    return uids, [1.0 if uid == king_uid else 0.0 for uid in uids]


def requeue(state: ValidatorState, hotkey: str) -> ValidatorState:
    """Undo a wrong disqualification: the hotkey goes back to pending, to be checked again."""
    if hotkey not in state.miners:
        raise KeyError(f"no miner record for {hotkey}")
    try:  # a malformed commitment (COMMITMENT_FORMAT) is final: pending, it could not even be saved
        parse_commitment(state.miners[hotkey].commitment)
    except CommitmentError as e:
        raise ValueError(f"{hotkey}'s commitment does not parse ({e}); only a new hotkey can commit again") from None
    state = state.copy()
    record = state.miners[hotkey]
    state.miners[hotkey] = replace(
        record, status=PENDING, reason=None, code=None, detail="requeued by the operator", kl=None, checked=False,
        strikes=0, last_check_block=None, eval_strikes=0,  # a fresh start at the front of the pre-check queue
    )
    for digest, owner in list(state.hash_owners.items()):
        if owner["hotkey"] == hotkey:
            del state.hash_owners[digest]
    if state.king == hotkey:
        state.king = None
    return state


def migrate_scoring_version(state: ValidatorState, scoring_version: int) -> tuple[ValidatorState, list[Event]]:
    """A state scored under another `SCORING_VERSION`: its KLs are not comparable any more.

    The king stays king, with its weights, and enters the first round under the new version
    as its king, defended by the new rule (an empty hill would crown the best KL of a round
    without any dethrone rule, and could leave the old king out). Every other evaluated model
    goes back to `pending` with its pre-checks kept, so the next rounds score it again, as a
    challenger, under the new spec; KL_TOO_HIGH verdicts are lifted for the same reason.
    COPY, REMOVED and INVALID verdicts do not depend on the scoring spec and stay. Evaluation
    strikes are reset, and there is no contender.
    """
    if state.scoring_version == scoring_version:
        return state, []
    state = state.copy()
    events = [Event("scoring_version", None, f"state was scored under v{state.scoring_version}; re-scoring under v{scoring_version}")]
    for hotkey, record in list(state.miners.items()):
        if record.status == EVALUATED or record.reason == KL_TOO_HIGH:
            state.miners[hotkey] = replace(
                record, status=PENDING, reason=None, code=None, kl=None,
                detail=f"re-scored under scoring version {scoring_version}",
            )
        if state.miners[hotkey].eval_strikes:  # the new version's evaluation starts every model afresh
            state.miners[hotkey] = replace(state.miners[hotkey], eval_strikes=0)
    if state.king is not None:
        events.append(Event("king_kept", state.king, f"enters the first v{scoring_version} round as its king"))
    state.contender = None
    state.scoring_version = scoring_version
    return state, events
