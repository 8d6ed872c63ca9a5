"""Distil validator: king-of-the-hill epochs, forever, unattended.

    python neurons/validator.py --wallet.name W --wallet.hotkey H --netuid 97 \\
        --neuron.device cuda --wandb.project distil
    python -m distil.demo build demo-output
    python neurons/validator.py --mock --mock.scenario demo-output/scenario.json --neuron.epochs 3 \\
        --neuron.full_path demo-output/validator --wandb.off --eval.prompts_file demo-output/prompts.jsonl \\
        --eval.n_prompts 8 --eval.max_new_tokens 32 --checks.max_params 100000000

Each epoch (`--neuron.epoch_length` blocks): sync; read commitments; pre-check new ones on
CPU; check that the king and the models about to be scored are still public; if there is
a new challenger (or no king), score king and challengers head to head on prompts seeded
by the epoch's first block hash; apply the dethrone rule; save the state; set weights
(king 1.0). See docs/validators.md.
"""

# No `from __future__ import annotations`: Axon.attach inspects the handlers' real annotations.

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loguru import logger  # noqa: E402

from distil import SCORING_VERSION, SPEC_VERSION, TEACHER_REPO, __version__  # noqa: E402
from distil.checks import REMOVED, TRANSIENT, CheckLimits, check_commitment, check_integrity, load_reference  # noqa: E402
from distil.checks.args import add_check_args  # noqa: E402
from distil.commitment import Commitment, parse_commitment  # noqa: E402
from distil.eval.fanout import parse_devices  # noqa: E402
from distil.eval.prompts import seed_from_block_hash  # noqa: E402
from distil.eval.spec import EvalSpec  # noqa: E402
from distil.hub import HuggingFaceStore, LocalModelStore, ModelStore  # noqa: E402
from distil.metrics import make_logger  # noqa: E402
from distil.protocol import DistilStatus  # noqa: E402
from distil.scoring import epoch as ep  # noqa: E402
from distil.scoring.rules import ALPHA, COPY_COSINE, EPSILON, KL_LIMIT  # noqa: E402
from distil.scoring.prechecks import DEFAULT_MAX_STRIKES  # noqa: E402
from distil.scoring.coldkeys import MAX_PER_COLDKEY  # noqa: E402  (issue 12 §2)
from distil.eval.spec import warn_score_changing_overrides  # noqa: E402  (issue 12 §4)
from distil.state import (  # noqa: E402
    DISQUALIFIED,
    KING,
    StateError,
    ValidatorState,
    load_state,
    pending_requests,
    save_state,
)
from distil.validator.precheck import apply_strikes, run_prechecks  # noqa: E402
from distil.validator.prompt_source import check_prompt_source, make_prompt_source  # noqa: E402
from distil.validator.scorer import EngineScorer, RoundScorer, RoundScores, save_round  # noqa: E402
from distil.validator.status import status_for  # noqa: E402
from distil.validator.timing import TimedDownloads  # noqa: E402
from template.axon import RateLimiter, registered_only_blacklist  # noqa: E402
from template.base import BaseValidatorNeuron  # noqa: E402
from template.base.validator import one_line  # noqa: E402
from template.chain import ChainError  # noqa: E402
from template.mock_chain import InMemoryChain  # noqa: E402
from template.config import parse_config  # noqa: E402
from template.wallet import MockWallet, WalletError  # noqa: E402

# EvalSpec fields the validator exposes as --eval.<field> (the rest keep the spec's defaults).
EVAL_SPEC_FLAGS = (
    "n_prompts", "max_new_tokens", "max_prompt_chars", "max_prompt_tokens", "dataset", "dataset_revision",
    "dataset_data_dir", "text_column", "dataset_shards", "rows_per_shard", "generation_batch_size", "chunk_size",
    "dtype", "student_timeout_s", "prompt_cache_dir",
    "probe_prompts", "probe_min_loops", "probe_loop_margin", "probe_repeat_margin",  # degeneration guard
)


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("evaluation (scoring spec v1 defaults)")
    defaults = EvalSpec()
    for name in EVAL_SPEC_FLAGS:
        default = getattr(defaults, name)
        group.add_argument(f"--eval.{name}", type=type(default), default=default, help="default: %(default)s")
    group.add_argument("--eval.teacher", default=TEACHER_REPO, help="teacher directory or hub repo (default: %(default)s)")
    group.add_argument("--eval.teacher_revision", default=None, help="teacher commit to pin (default: the repo's current one, logged)")
    group.add_argument("--eval.prompts_file", default=None, help="JSONL prompts instead of the dataset (offline runs)")
    group.add_argument("--eval.max_challengers", type=int, default=8, help="challengers per round, earliest commit first (default: %(default)s)")
    group.add_argument("--eval.max_per_coldkey", type=int, default=MAX_PER_COLDKEY,  # issue 12 §2
                       help="challengers of one owner coldkey per round; the rest wait for a later round (default: %(default)s)")
    group.add_argument("--eval.rematch", type=int, default=4, help="evaluated models re-scored in a round without a king (default: %(default)s)")
    group.add_argument("--eval.epsilon", type=float, default=EPSILON, help="dethrone margin (default: %(default)s)")
    group.add_argument("--eval.alpha", type=float, default=ALPHA, help="paired t-test level; 1 turns it off (default: %(default)s)")
    group.add_argument("--eval.kl_limit", type=float, default=KL_LIMIT, help="KL above this is KL_TOO_HIGH (default: %(default)s)")
    group.add_argument("--eval.copy_cosine", type=float, default=COPY_COSINE, help="functional-copy cosine threshold (default: %(default)s)")


class ScenarioError(ValueError):
    """A mock scenario that cannot be used; the message says what is wrong."""


def load_scenario(path: str | Path, netuid: int, validator_hotkey: str, epoch_length: int, chain_path: str | None = None):
    """A mock world from a scenario file: the in-memory chain and a local model store.

    Each miner's directory is served as a repo (`repo`, default `mock/<dirname>`) whose
    revision is derived from its contents, registered and committed as `repo@revision` at
    its `commit_block`. The chain starts at `start_block` (default: the highest commit
    block, so every commitment is visible to the first epoch). With `chain_path`, an
    existing chain file is resumed instead of rebuilt (a restarted validator).
    """
    try:
        scenario = json.loads(Path(path).read_text())
        base = Path(path).resolve().parent
        teacher = base / scenario["teacher"]  # an absolute path stays as it is
        miners = scenario.get("miners", [])
        store = LocalModelStore()
        commitments = []
        for miner in miners:
            model = base / miner["model"]
            if not model.is_dir():
                raise ScenarioError(f"miner {miner.get('hotkey')}: model directory {model} does not exist")
            repo = miner.get("repo") or f"mock/{model.name}"
            commitments.append((miner["hotkey"], f"{repo}@{store.add(repo, model)}", int(miner["commit_block"]),
                                miner.get("coldkey")))  # issue 12 §2: optional owner coldkey
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ScenarioError(f"cannot use scenario {path}: {type(e).__name__}: {e}") from None
    if not teacher.is_dir():
        raise ScenarioError(f"scenario {path}: teacher directory {teacher} does not exist")
    teacher = str(teacher)
    if chain_path and Path(chain_path).exists():
        return InMemoryChain(netuid=netuid, path=chain_path), store, teacher
    start = int(scenario.get("start_block", max([c[2] for c in commitments], default=0)))
    chain = InMemoryChain(netuid=netuid, start_block=start, path=chain_path)
    chain.register(validator_hotkey, validator_permit=True, stake=1000.0)
    for hotkey, data, block, coldkey in commitments:
        chain.register(hotkey, coldkey=coldkey)
        chain.put_commitment(hotkey, data, block=block)
    return chain, store, teacher


class Validator(BaseValidatorNeuron):
    """Score new challengers against the king by full-vocabulary KL; give the king all the weight."""

    spec_version = SPEC_VERSION

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        super().add_args(parser)
        add_eval_args(parser)
        add_check_args(parser)
        parser.add_argument("--checks.max_per_epoch", type=int, default=16,
                            help="commitments pre-checked per epoch, never-checked ones first (default: %(default)s)")
        parser.add_argument("--checks.max_strikes", type=int, default=DEFAULT_MAX_STRIKES,
                            help="pre-checks failing for the repo alone before it is INVALID CHECK_FAILED_REPEATEDLY "
                                 "(default: %(default)s; outages never count)")
        parser.add_argument("--neuron.devices", default=None,
                            help="score students in parallel, one worker process per device, e.g. cuda:0,cuda:1 "
                                 "(the teacher runs on the first; overrides --neuron.device)")
        parser.add_argument("--mock.scenario", dest="mock_scenario", default=None, help="with --mock: scenario JSON (see docs/validators.md)")
        parser.add_argument("--status.rate_limit", dest="status_rate_limit", type=int, default=30, help="DistilStatus requests per caller per minute")

    def __init__(self, config, chain=None, wallet=None, store: ModelStore | None = None, scorer: RoundScorer | None = None,
                 setup_logs: bool = True):
        self.events: list[ep.Event] = []
        teacher = config.eval.teacher
        if config.mock and chain is None and not config.mock_scenario:
            raise ScenarioError("--mock needs --mock.scenario FILE (a mock chain and models to serve; see docs/validators.md)")
        if config.mock and chain is None:
            wallet = wallet or MockWallet(str(config.wallet.name), str(config.wallet.hotkey))
            chain, store, teacher = load_scenario(
                config.mock_scenario, int(config.netuid), wallet.hotkey.ss58_address,
                int(config.neuron.epoch_length), config.mock_chain_state,
            )
            if config.checks.teacher == TEACHER_REPO:
                config.checks.teacher = teacher
        super().__init__(config, chain=chain, wallet=wallet, setup_logs=setup_logs)
        self.store = store or HuggingFaceStore(
            endpoint=os.environ.get("HF_ENDPOINT"),
            cache_dir=config.checks.cache_dir,
            max_cache_bytes=int(config.checks.max_cache_gb * 2**30) if config.checks.max_cache_gb else None,
        )
        self.limits = CheckLimits(max_params=int(config.checks.max_params), vocab_size=int(config.checks.vocab_size))
        self.params = ep.RoundParams(config.eval.epsilon, config.eval.alpha, config.eval.kl_limit, config.eval.copy_cosine)
        self.devices = parse_devices(config.neuron.devices, "--neuron.devices") if config.neuron.devices else None
        self.spec = EvalSpec(
            **{name: getattr(config.eval, name) for name in EVAL_SPEC_FLAGS},
            device=self.devices[0] if self.devices else config.neuron.device,
            vocab_size=int(config.checks.vocab_size),
        )
        warn_score_changing_overrides(self.spec)  # issue 12 §4
        self._teacher = teacher
        self._teacher_commitment: Commitment | None = None
        self._pinned_king: Commitment | None = None
        self._teacher_ref = None
        self.precheck_downloads = TimedDownloads(self.store)
        self.scorer = scorer
        self.prompt_source = make_prompt_source(self.spec, config.eval.prompts_file)
        if scorer is None:  # the rounds will draw prompts: refuse a source that cannot serve them
            check_prompt_source(self.prompt_source, int(config.eval.n_prompts), offline=bool(config.mock))
        self.metrics = make_logger(config, config.neuron.full_path, self._run_config())
        if not config.neuron.axon_off:
            if config.mock and not config.axon.external_ip:
                config.axon.external_ip = "127.0.0.1"
            self.serve_axon()

    # -- state ---------------------------------------------------------------------------

    def load_state(self) -> None:
        state, events = ep.migrate_scoring_version(load_state(self.config.neuron.full_path), SCORING_VERSION)
        for event in events:
            logger.warning(event.detail)
        self.state: ValidatorState = state
        self.last_epoch_block = self.state.last_epoch_block
        logger.info(
            f"state: {len(self.state.miners)} miners, king {self.state.king or '-'}, last epoch {self.state.last_epoch_block}"
        )

    def save_state(self) -> None:
        save_state(self.state, self.config.neuron.full_path)

    def commit(self, state: ValidatorState) -> None:
        """Make `state` current: write it atomically first, then swap it in."""
        save_state(state, self.config.neuron.full_path)
        self.state = state

    # -- the epoch ------------------------------------------------------------------------

    def forward(self, epoch_block: int) -> None:
        """One epoch (DESIGN.md §4). Saved twice: after the CPU work, and after a finished round.

        The king gets its weights whenever its integrity check passed, whatever happens to
        the round: a round that fails changes nothing, says why in one line, and is
        retried next epoch.
        """
        started = time.monotonic()
        self.events = []
        self.protect_snapshots()
        now = self.chain.block()
        hotkey_uids = {n.hotkey: n.uid for n in self.metagraph.neurons}
        state = self.apply_requests(self.state)
        coldkeys = {n.hotkey: n.coldkey for n in self.metagraph.neurons}  # issue 12 §2
        state = self.note(ep.reconcile(state, hotkey_uids, self.chain_commitments(), now, coldkeys))
        state, attempts = self.precheck(state, now)
        state, king_ok, unreachable, answered = self.check_integrity(state)
        state = self.note(apply_strikes(state, attempts, answered, int(self.config.checks.max_strikes)))
        plan = ep.plan_round(state, self.config.eval.max_challengers, self.config.eval.rematch, exclude=unreachable,
                             max_per_coldkey=self.config.eval.max_per_coldkey)  # issue 12 §2
        self.commit(state)  # the CPU work is done: a crash from here on does not redo it

        scores = None
        if plan.needs_gpu and king_ok:
            logger.info(f"round {epoch_block}: king {plan.king or '-'}, {len(plan.challengers)} challenger(s), rematch {len(plan.rematch)}")
            try:
                scores = self.score(plan, epoch_block)
                outcome = ep.apply_round(state, plan, scores.results, self.round_info(epoch_block, scores), self.params,
                                         probe=scores.probe)  # issue 12 §1: the degeneration guard
                save_round(scores.round_json, self.config.neuron.full_path)  # issue 12: rounds/round-<block>.json
            except Exception as e:  # whatever failed, the round changes nothing; the king keeps its weights
                scores = None
                why = f"{type(e).__name__}: {one_line(e)}"
                logger.warning(f"round {epoch_block} failed ({why}); nothing changes, retried next epoch")
                logger.opt(exception=e).debug(f"round {epoch_block} failed: traceback")
                self.events.append(ep.Event("round_failed", None, why))
            else:
                self.events.extend(outcome.events)
                state = outcome.state
        elif plan.needs_gpu:
            logger.warning("the king's repo could not be checked this epoch; no round, no weights")
        else:
            logger.info(f"no challenger: no GPU work this epoch (king {state.king or '-'})")
        state.last_epoch_block = epoch_block
        self.commit(state)
        self.protect_snapshots()
        self.report(epoch_block, plan, scores, time.monotonic() - started)
        weights = ep.weights_for(state, hotkey_uids)
        if weights is None:
            logger.info("no king yet: no weights set")
        elif king_ok:
            self.set_weights(*weights)

    def note(self, result):
        state, events = result
        self.events.extend(events)
        for event in events:
            logger.info(f"{event.kind}: {event.hotkey or ''} {event.detail}")
        return state

    def chain_commitments(self) -> dict[str, tuple[str, int]]:
        return {hotkey: (r.data, r.block) for hotkey, r in self.chain.commitments().items()}

    def apply_requests(self, state: ValidatorState) -> ValidatorState:
        """Operator requests dropped by `distil-state requeue`."""
        for path, request in pending_requests(self.config.neuron.full_path):
            hotkey = request["hotkey"]
            if hotkey in state.miners:
                state = ep.requeue(state, hotkey)
                self.events.append(ep.Event("requeued", hotkey, "requeued by the operator"))
                logger.info(f"requeued {hotkey} at the operator's request")
            else:
                logger.warning(f"requeue of unknown hotkey {hotkey} ignored")
            path.unlink(missing_ok=True)
        return state

    def teacher_reference(self):
        if self._teacher_ref is None:
            self._teacher_ref = load_reference(self.config.checks.teacher, store=self.store)
        return self._teacher_ref

    def precheck(self, state: ValidatorState, now: int):
        """Pre-check `--checks.max_per_epoch` commitments, never-checked ones first; (state, attempts)."""
        try:
            teacher = self.teacher_reference()
        except Exception as e:  # the teacher's tokenizer could not be read: no verdict can be fair
            logger.warning(f"no pre-checks this epoch: the teacher's tokenizer reference failed ({type(e).__name__}: {one_line(e)})")
            return state, []

        store = self.precheck_downloads = TimedDownloads(self.store)  # the epoch's download seconds

        def check(commitment, owner_of):
            return check_commitment(store, commitment, self.limits, teacher=teacher, owner_of=owner_of)

        done = run_prechecks(state, now, check, int(self.config.checks.max_per_epoch), int(self.config.checks.public_grace_blocks))
        self.note((done.state, done.events))
        return done.state, done.attempts

    def check_integrity(self, state: ValidatorState) -> tuple[ValidatorState, bool, frozenset[str], frozenset[str]]:
        """The king and every model a round would score must still resolve publicly.

        Returns (state, king_ok, unreachable, answered): REMOVED models are disqualified;
        models whose check could not run (TRANSIENT) sit this epoch out; king_ok is False
        when the king's check could not run (no weights, no round until it can); answered:
        the models whose check got an answer (evidence that the hub is up, for strikes).
        """
        unreachable: set[str] = set()
        answered: set[str] = set()
        king_ok = True
        checked: set[str] = set()
        while True:
            plan = ep.plan_round(state, self.config.eval.max_challengers, self.config.eval.rematch, exclude=frozenset(unreachable),
                                 max_per_coldkey=self.config.eval.max_per_coldkey)  # issue 12 §2
            todo = [hk for hk in plan.models if hk not in checked]
            if not todo:
                break
            for hotkey in todo:
                checked.add(hotkey)
                result = check_integrity(self.store, parse_commitment(state.miners[hotkey].commitment))
                if result.status != TRANSIENT:
                    answered.add(hotkey)
                if result.status == REMOVED:
                    state = self.note(ep.disqualify(state, hotkey, REMOVED, "REMOVED", result.detail))
                elif result.status == TRANSIENT:
                    unreachable.add(hotkey)
                    if hotkey == state.king:
                        king_ok = False
                    logger.warning(f"integrity of {hotkey} could not be checked: {result.detail}")
        return state, king_ok, frozenset(unreachable), frozenset(answered)

    def score(self, plan: ep.RoundPlan, epoch_block: int) -> RoundScores:
        seed = seed_from_block_hash(self.chain.block_hash(epoch_block))
        models = [(hk, parse_commitment(self.state.miners[hk].commitment)) for hk in plan.models]
        scorer = self.scorer or self.engine_scorer()
        scores = scorer.score(models, epoch_block, seed)
        if scores.round_json is not None:
            scores.round_json["king"] = plan.king  # issue 12: distil.sim dethrone --round finds the king
        return scores

    def engine_scorer(self) -> EngineScorer:
        teacher_dir, teacher_name = self.teacher_dir()
        self.scorer = EngineScorer(self.store, self.spec, teacher_dir, teacher_name, self.prompt_source, devices=self.devices)
        return self.scorer

    def teacher_commitment(self) -> Commitment | None:
        """The teacher's repo at its pinned revision (resolved once, then logged); None for a directory."""
        if os.path.isdir(self._teacher):
            return None
        if self._teacher_commitment is None:
            revision = self.config.eval.teacher_revision or self.store.resolve_revision(self._teacher)
            self._teacher_commitment = Commitment(self._teacher, revision)
            logger.info(f"teacher pinned at {self._teacher_commitment}")
        return self._teacher_commitment

    def teacher_dir(self) -> tuple[str, str]:
        """A local directory with the teacher, downloaded once at its pinned revision."""
        commitment = self.teacher_commitment()
        if commitment is None:
            return self._teacher, self._teacher
        logger.info(f"teacher {commitment}: downloading (once; kept out of cache eviction)")
        return str(self.store.download(commitment)), str(commitment)

    def protect_snapshots(self) -> None:
        """The teacher and the king are needed every round: keep them out of cache eviction.

        A cache nicety: if the hub cannot resolve the teacher now, the epoch goes on (the
        king's weights must not wait for it).
        """
        try:
            self._protect_snapshots()
        except Exception as e:
            logger.warning(f"could not pin the teacher and king snapshots this epoch: {type(e).__name__}: {one_line(e)}")

    def _protect_snapshots(self) -> None:
        teacher = self.teacher_commitment()
        if teacher is not None:
            self.store.pin(teacher)
        king = self.state.miners.get(self.state.king) if self.state.king else None
        current = parse_commitment(king.commitment) if king is not None else None
        if self._pinned_king is not None and self._pinned_king != current:
            self.store.unpin(self._pinned_king)  # a dethroned king may be evicted again
        if current is not None:
            self.store.pin(current)
        self._pinned_king = current

    def round_info(self, epoch_block: int, scores: RoundScores) -> dict:
        doc = scores.round_json or {}
        return {"seed_block": epoch_block, "seed": doc.get("seed"), "spec": doc.get("spec")}

    # -- reporting ------------------------------------------------------------------------

    def report(self, epoch_block: int, plan: ep.RoundPlan, scores: RoundScores | None, seconds: float) -> None:
        state = self.state
        evaluated = sorted(
            ((hk, m) for hk, m in state.miners.items() if m.kl is not None and m.status != DISQUALIFIED),
            key=lambda kv: (kv[1].status != KING, kv[1].kl["mean"], kv[1].commit_block),
        )
        leaderboard = [
            {"rank": i + 1, "uid": m.uid, "hotkey": hk, "commitment": m.commitment, "status": m.status,
             "kl_mean": m.kl["mean"], "kl_se": m.kl["se"], "kl_median": m.kl["median"], "kl_p99": m.kl["p99"],
             "top1_agreement": m.kl["top1"]}
            for i, (hk, m) in enumerate(evaluated)
        ]
        disqualified = [
            {"uid": m.uid, "hotkey": hk, "commitment": m.commitment, "reason": m.reason, "code": m.code, "detail": m.detail}
            for hk, m in sorted(state.miners.items()) if m.status == DISQUALIFIED
        ]
        king = state.miners.get(state.king) if state.king else None
        king_kl = king.kl["mean"] if king and king.kl else None
        challengers = ", ".join(plan.challengers) or "none"
        print(
            f"epoch {epoch_block}: king {state.king or '-'}"
            + (f" (KL {king_kl:.6f})" if king_kl is not None else "")
            + f" | challengers: {challengers} | {len(disqualified)} disqualified | {seconds:.1f}s",
            flush=True,
        )
        for row in leaderboard:
            print(f"  #{row['rank']} uid {row['uid']} {row['status']:<9} KL {row['kl_mean']:.6f}  {row['commitment']}", flush=True)
        for event in self.events:
            if event.kind in ("disqualified", "new_king", "king_holds", "round_aborted", "round_failed", "retry_later", "strike",
                              "probe"):  # issue 12 §1
                who = f"{event.hotkey} " if event.hotkey else ""
                print(f"  {event.kind}: {who}{event.detail}", flush=True)
        timings = dict(scores.timings) if scores else {}
        timings["precheck_download_s"] = self.precheck_downloads.seconds
        timings["epoch"] = seconds
        if scores is not None and scores.round_json is not None:
            scores.round_json.setdefault("timings", {})["precheck_download_s"] = timings["precheck_download_s"]
        summary = {"king": state.king, "king_kl": king_kl, "epoch_block": epoch_block}
        try:
            if scores is not None:
                self.metrics.log_round(self.step, summary, leaderboard, disqualified, timings, scores.round_json)
            else:
                self.metrics.log_epoch(self.step, {"king": state.king, "king_kl": king_kl, "timings/epoch_s": seconds,
                                                   "timings/precheck_download_s": timings["precheck_download_s"]})
        except Exception as e:  # reporting must never stop the validator
            logger.warning(f"W&B logging failed: {e}")

    def _run_config(self) -> dict:
        return {
            "version": __version__,
            "spec_version": self.spec_version,
            "netuid": int(self.config.netuid),
            "hotkey": self.hotkey,
            "spec": self.spec.to_dict(),
            "epsilon": self.params.epsilon,
            "alpha": self.params.alpha,
        }

    # -- axon -------------------------------------------------------------------------------

    def attach_axon(self, axon) -> None:
        limiter = RateLimiter(max_requests=int(self.config.status_rate_limit), window_s=60.0)
        guard = registered_only_blacklist(lambda hotkey: self.metagraph.uid_of(hotkey) is not None, limiter)

        def status(synapse: DistilStatus) -> DistilStatus:
            synapse.hotkey = synapse.hotkey or synapse.dendrite.hotkey
            return synapse.fill(status_for(self.state, synapse.hotkey))

        def blacklist(synapse: DistilStatus) -> Tuple[bool, str]:  # typing.Tuple: Axon.attach compares signatures
            return guard(synapse)

        axon.attach(forward_fn=status, blacklist_fn=blacklist)


def main(argv: Sequence[str] | None = None) -> int:
    parser = Validator.build_parser(__doc__.split("\n\n")[0])
    config = parse_config(parser, argv)
    if config.mock and config.neuron.epochs <= 0:
        # the in-memory chain jumps to the next epoch at once: without a bound, it never stops
        parser.error("--mock needs --neuron.epochs N (the mock chain does not wait for blocks)")
    try:
        validator = Validator(config)
    except (StateError, ChainError, ScenarioError, WalletError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        from distil.eval.preflight import check_validator

        if (code := check_validator(validator)) is not None:  # device, teacher, memory plan, disk: before epoch 1
            return code
        validator.run()
    finally:
        validator.metrics.finish()
        validator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
