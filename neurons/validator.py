"""Distil validator: king-of-the-hill epochs, forever, unattended.

    python neurons/validator.py --wallet.name W --wallet.hotkey H --netuid 97 \\
        --neuron.device cuda --wandb.project distil
    python -m distil.demo build demo-output
    python neurons/validator.py --mock --mock.scenario demo-output/scenario.json --neuron.epochs 3 \\
        --neuron.full_path demo-output/validator --wandb.off --eval.prompts_file demo-output/prompts.jsonl \\
        --eval.n_prompts 8 --eval.max_new_tokens 32 --checks.max_params 100000000

Each epoch (`--neuron.epoch_length` blocks): sync; read commitments; pre-check new ones on
CPU; check that the king and the models about to be scored are still public; if there is
a new challenger committed before the epoch's first block − `--eval.commit_delay` (or no
king), score king and challengers head to head on prompts seeded by that block's hash; apply the dethrone rule; save the state; set weights
(king 1.0). See docs/validators.md and docs/rounds.md; each step lives in `distil/`.
"""

# No `from __future__ import annotations`: Axon.attach inspects the handlers' real annotations.

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# model loading and downloads log their progress; tqdm bars would interleave with the log (and
# the worker processes inherit this). Set before huggingface_hub and transformers are imported.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from loguru import logger  # noqa: E402

from distil import CHECKS_VERSION, SCORING_VERSION, SPEC_VERSION  # noqa: E402
from distil.checks.sandbox import terminate_children  # noqa: E402
from distil.commitment import parse_commitment  # noqa: E402
from distil.eval.workers import parse_devices  # noqa: E402
from distil.eval.prompts import seed_from_block_hash  # noqa: E402
from distil.exits import EXIT_ERROR, EXIT_OK  # noqa: E402
from distil.hub import ModelStore  # noqa: E402
from distil.metrics import make_logger  # noqa: E402
from distil.metrics.report import report_epoch, run_config  # noqa: E402
from distil.metrics.rounds import RoundFiles  # noqa: E402
from distil.protocol import DistilStatus  # noqa: E402
from distil.scoring import epoch as ep  # noqa: E402
from distil.scoring import ownership  # noqa: E402
from distil.state import StateError, ValidatorState, load_state, save_state  # noqa: E402
from distil.scoring.prechecks import migrate_checks_version  # noqa: E402
from distil.validator.args import EVAL_SPEC_FLAGS, add_validator_args, check_limits, deadlines, eval_spec, hub_store, round_params  # noqa: E402,F401
from distil.validator.integrity import check_round_integrity  # noqa: E402
from distil.validator.mock import ScenarioError, mock_world  # noqa: E402
from distil.validator.precheck import Prechecks, apply_strikes  # noqa: E402
from distil.validator.prompt_source import check_prompt_source, make_prompt_source  # noqa: E402
from distil.validator.requests import apply_requests  # noqa: E402
from distil.fingerprint import parse_fingerprint_inputs  # noqa: E402
from distil.validator.scorer import EngineScorer, RoundScorer, RoundScores  # noqa: E402
from distil.validator.status import status_for  # noqa: E402
from distil.validator.teacher import PinnedTeacher  # noqa: E402
from template.axon import RateLimiter, registered_only_blacklist  # noqa: E402
from template.base import BaseValidatorNeuron  # noqa: E402
from template.base.validator import one_line  # noqa: E402
from template.chain import ChainError, TransientChainError  # noqa: E402
from template.config import parse_config  # noqa: E402
from template.log import setup_logging_from_config  # noqa: E402
from template.wallet import MockWallet, WalletError  # noqa: E402


class Validator(BaseValidatorNeuron):
    """Score new challengers against the king by full-vocabulary KL; give the king all the weight."""

    spec_version = SPEC_VERSION

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        super().add_args(parser)
        add_validator_args(parser)

    def __init__(self, config, chain=None, wallet=None, store: ModelStore | None = None, scorer: RoundScorer | None = None,
                 setup_logs: bool = True):
        self.events: list[ep.Event] = []
        teacher = config.eval.teacher
        if setup_logs:  # before the mock world logs anything: its chain's DEBUG lines only with --logging.debug
            setup_logging_from_config(config)
        if config.mock and chain is None:
            wallet = wallet or MockWallet(str(config.wallet.name), str(config.wallet.hotkey))
            chain, store, teacher = mock_world(config, wallet.hotkey.ss58_address)
        super().__init__(config, chain=chain, wallet=wallet, setup_logs=setup_logs)
        self.store = store or hub_store(config)
        self.params = round_params(config)
        self.devices = parse_devices(config.neuron.devices, "--neuron.devices") if config.neuron.devices else None
        self.spec = eval_spec(config, self.devices)
        self.teacher = PinnedTeacher(teacher, config.eval.teacher_revision, self.store)
        self.deadlines = deadlines(config)  # measures this machine's baseline once (docs/validators.md, "Deadlines")
        self.prechecks = Prechecks(self.store, check_limits(config), config.checks.teacher,
                                   int(config.checks.max_per_epoch), int(config.checks.public_grace_blocks),
                                   self.deadlines, float(config.checks.epoch_budget_s))
        self.scorer = scorer
        self.prompt_source = make_prompt_source(self.spec, config.eval.prompts_file)
        if scorer is None:  # the rounds will draw prompts: refuse a source that cannot serve them
            check_prompt_source(self.prompt_source, int(config.eval.n_prompts), offline=bool(config.mock))
        self.rounds = RoundFiles(Path(config.neuron.full_path) / "rounds", int(config.neuron.keep_rounds))
        self.metrics = make_logger(config, config.neuron.full_path,
                                   run_config(self.spec_version, int(config.netuid), self.hotkey, self.spec, self.params))
        self.on_stop("the W&B run", self.metrics.finish)  # registered first: runs after child processes end
        self.on_stop("the untrusted steps' workers", terminate_children)  # their deaths are ours, no model's strike
        if not config.neuron.axon_off:
            if config.mock and not config.axon.external_ip:
                config.axon.external_ip = "127.0.0.1"
            self.serve_axon()

    # -- state ---------------------------------------------------------------------------

    def load_state(self) -> None:
        state, events = ep.migrate_scoring_version(load_state(self.config.neuron.full_path), SCORING_VERSION)
        state, more = migrate_checks_version(state, CHECKS_VERSION)
        for event in events + more:
            logger.warning(event.detail)
        self.state: ValidatorState = state
        self.last_epoch_block = self.state.last_epoch_block
        logger.info(
            f"state: {len(self.state.miners)} miners, king {self.state.king or '-'}, last epoch {self.state.last_epoch_block}"
        )

    def save_state(self) -> None:
        save_state(self.state, self.config.neuron.full_path)

    def commit(self, state: ValidatorState) -> None:
        """Make `state` current: write it atomically first, then swap it in. A disk that cannot
        take the write (full, failing: OSError) does not stop the epoch: the state goes on in
        memory, so the king the epoch ends with still gets its weights, and one error line per
        epoch says so. The files stay whole (save_state writes by rename): a restart resumes
        from the last state saved."""
        try:
            save_state(state, self.config.neuron.full_path)
        except OSError as e:
            if not any(event.kind == "state_not_saved" for event in self.events):
                why = f"{type(e).__name__}: {one_line(e)}"
                logger.error(f"could not save the state in {self.config.neuron.full_path} ({why}); the epoch goes on in "
                             "memory and weights are set; free space on that disk (a restart resumes from the last "
                             "state saved)")
                self.events.append(ep.Event("state_not_saved", None, why))
        self.state = state

    # -- the epoch (docs/rounds.md) ---------------------------------------------------------

    def forward(self, epoch_block: int) -> None:
        """One epoch. Saved twice: after the CPU work, and after a finished round.

        The king gets its weights whenever its integrity check passed, whatever happens to
        the round: a round that fails changes nothing, says why in one line, and is
        retried next epoch.
        """
        started = time.monotonic()
        self.events = []
        self.teacher.protect_snapshots(self.state)
        now = self.chain.block()
        hotkey_uids = {n.hotkey: n.uid for n in self.metagraph.neurons}
        # 1. sync: operator requests, then the chain's commitments and registrations
        state = self.note(apply_requests(self.state, self.config.neuron.full_path))
        coldkeys = {n.hotkey: n.coldkey for n in self.metagraph.neurons}
        state = self.note(ep.reconcile(state, hotkey_uids, self.chain_commitments(), now, coldkeys))
        # spec v3's ownership rule starts after what an upgraded state already saw; the commit blocks' hashes (the tie draw)
        state = self.note(ownership.adopt_owner_rule(state, now + 1))
        state = self.with_block_hashes(state)
        # 2. pre-checks on CPU
        checked = self.prechecks.run(state, now)
        state = self.note((checked.state, checked.events))
        # 3. integrity of the king and of every model the round would score; strikes for repo-only failures
        integrity = check_round_integrity(state, self.store, epoch_block, self.config.eval.max_challengers,
                                          self.config.eval.rematch, self.config.eval.max_per_coldkey,
                                          int(self.config.eval.commit_delay))
        state = self.note((integrity.state, integrity.events))
        state = self.note(apply_strikes(state, checked.attempts, integrity.answered, int(self.config.checks.max_strikes)))
        # 4. plan: commitments made before epoch_block − --eval.commit_delay (spec v3), at most --eval.max_per_coldkey
        # challengers per owner; the CPU work is saved, so a crash from here on does not redo it
        plan = ep.plan_round(state, epoch_block, self.config.eval.max_challengers, self.config.eval.rematch,
                             exclude=integrity.unreachable, max_per_coldkey=self.config.eval.max_per_coldkey,
                             commit_delay=int(self.config.eval.commit_delay))
        self.commit(state)
        # 5–8. prompts, teacher pass, scores, decision: the round on the GPU
        scores = None
        if plan.needs_gpu and integrity.king_ok:
            state, scores = self.play_round(state, plan, epoch_block)
        elif plan.needs_gpu:
            logger.warning("the king's repo could not be checked this epoch; no round, no weights")
        else:
            logger.info(f"no challenger: no round this epoch (king {state.king or '-'})")
        # 9. save, report, set weights
        state.last_epoch_block = epoch_block
        self.commit(state)
        self.teacher.protect_snapshots(self.state)
        report_epoch(self.metrics, self.step, epoch_block, self.state, plan, scores, self.events,
                     time.monotonic() - started, self.prechecks.download_seconds, self.rounds)
        if (state.king or state.legacy_king) is None:
            logger.info("no king yet: no weights set")
        elif integrity.king_ok and (weights := self.weights_now(state)) is not None:
            self.set_weights(*weights)

    def weights_now(self, state: ValidatorState) -> tuple[list[int], list[float]] | None:
        """The king's weights by the metagraph as it is now, not as it was when the epoch began.

        A round takes tens of minutes; a uid freed meanwhile (a uid that earns nothing is the
        first pruned when someone registers) now belongs to a newcomer. Weight goes only to
        the uid that holds the king's hotkey now; if none does, nothing is set this epoch (the
        next epoch's sync handles the departed king by the usual rules).
        """
        self.sync()
        weights = ep.weights_for(state, {n.hotkey: n.uid for n in self.metagraph.neurons})
        if weights is None:
            king = state.king or state.legacy_king
            logger.warning(f"no weights set this epoch: the king {king} is no longer registered "
                           f"(its uid {state.miners[king].uid if king in state.miners else '?'} was freed during the epoch)")
        return weights

    def play_round(self, state: ValidatorState, plan: ep.RoundPlan, epoch_block: int) -> tuple[ValidatorState, RoundScores | None]:
        """Score the plan's models and apply the dethrone rule; a round that fails changes nothing."""
        logger.info(f"round {epoch_block}: king {plan.king or '-'}, {len(plan.challengers)} challenger(s), rematch {len(plan.rematch)}")
        try:
            scores = self.score(plan, epoch_block)
            doc = scores.round_json or {}
            info = {"seed_block": epoch_block, "seed": doc.get("seed"), "spec": doc.get("spec")}
            # the would-be king is probed for degeneration before it is crowned (spec v2)
            outcome = ep.apply_round(state, plan, scores.results, info, self.params, probe=scores.probe,
                                     fingerprints=scores.fingerprints)
        except Exception as e:  # whatever failed, the round changes nothing; the king keeps its weights
            why = f"{type(e).__name__}: {one_line(e)}"
            logger.warning(f"round {epoch_block} failed ({why}); nothing changes, retried next epoch")
            logger.opt(exception=e).debug(f"round {epoch_block} failed: traceback")
            self.events.append(ep.Event("round_failed", None, why))
            return state, None
        self.events.extend(outcome.events)
        return outcome.state, scores

    def score(self, plan: ep.RoundPlan, epoch_block: int) -> RoundScores:
        seed = seed_from_block_hash(self.chain.block_hash(epoch_block))
        models = [(hk, parse_commitment(self.state.miners[hk].commitment)) for hk in plan.models]
        if self.scorer is None:
            teacher_dir, teacher_name = self.teacher.directory()
            self.scorer = EngineScorer(self.store, self.spec, teacher_dir, teacher_name, self.prompt_source, devices=self.devices,
                                       deadlines=self.deadlines)
        if isinstance(self.scorer, EngineScorer):  # spec v3: the fingerprint inputs this validator keeps
            inputs = self.state.fingerprint_inputs
            self.scorer.fingerprint_inputs = parse_fingerprint_inputs(inputs) if inputs is not None else None
        scores = self.scorer.score(models, epoch_block, seed)
        if scores.round_json is not None:
            scores.round_json["king"] = plan.king  # the king before the round: what `distil.sim dethrone --round` compares with
        return scores

    def note(self, result: tuple[ValidatorState, list[ep.Event]]) -> ValidatorState:
        state, events = result
        self.events.extend(events)
        for event in events:
            logger.info(f"{event.kind}: {event.hotkey or ''} {event.detail}")
        return state

    def with_block_hashes(self, state: ValidatorState) -> ValidatorState:
        """The hash of every commit block the state lacks, read from the chain once each: the
        same-block draw of the copy rules (`distil.precedence`). A chain that is unavailable
        fails the epoch (retried next epoch); one that refuses a block leaves that block
        without a hash (its commitments keep spec v2's hotkey order), asked again next epoch."""
        hashes = {}
        for block in ownership.blocks_without_hash(state):
            try:
                hashes[block] = self.chain.block_hash(block)
            except TransientChainError:
                raise
            except ChainError as e:
                logger.warning(f"no hash for commit block {block} ({one_line(e)}); asked again next epoch")
        try:
            return ownership.note_block_hashes(state, hashes) if hashes else state
        except ValueError as e:  # the chain answered something that is not a block hash
            logger.warning(f"commit block hashes not recorded: {one_line(e)}")
            return state

    def chain_commitments(self) -> dict[str, tuple[str, int]]:
        return {hotkey: (r.data, r.block) for hotkey, r in self.chain.commitments().items()}

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
    """Exit status (docs/cli.md): 0 after the epochs asked for or a stop signal, 2 when it cannot
    start (a bad argument, state, wallet, chain or device); it judges no model on its own."""
    parser = Validator.build_parser(__doc__.split("\n\n")[0])
    parser.prog = "validator.py"  # its usage errors name it, however it was started
    config = parse_config(parser, argv)
    if config.mock and config.neuron.epochs <= 0 and config.mock_block_time <= 0:
        # the in-memory chain jumps to the next epoch at once: without a bound, it never stops
        parser.error("--mock needs --neuron.epochs N (the mock chain does not wait for blocks) or --mock.block_time S")
    try:
        validator = Validator(config)
    except (StateError, ChainError, ScenarioError, WalletError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # the state directory or a file it names: say which, no traceback
        print(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        from distil.eval.preflight import check_validator

        if (code := check_validator(validator)) is not None:  # device, teacher, memory plan, disk: before epoch 1
            return code
        validator.run()  # returns at the end of --neuron.epochs, or on SIGTERM / SIGINT
    finally:
        validator.stop()  # the one stop path: child processes, the W&B run, the axon, the chain
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
