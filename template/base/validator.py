"""BaseValidatorNeuron: the epoch loop, weight setting with retries, and the axon.

`run()` calls `forward(epoch_block)` once per epoch window of `--neuron.epoch_length`
blocks (the window starts at `block - block % epoch_length`), waits for the next window
through the chain client (the in-memory chain jumps there at once), and keeps going when
an epoch fails: the failure is logged in one line and the next window starts fresh. A
failed epoch is never retried within its window, and it counts towards `--neuron.epochs`.
"""

from __future__ import annotations

import argparse
import time
from abc import abstractmethod
from typing import Sequence

from loguru import logger

from template.axon import RequestLimits, limit_requests
from template.base.neuron import BaseNeuron
from template.chain import ChainError, TransientChainError, WeightsRateLimited
from template.config import add_wandb_args


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to `limit` characters (logs stay one line per failure)."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class BaseValidatorNeuron(BaseNeuron):
    neuron_type = "ValidatorNeuron"
    neuron_name = "validator"
    spec_version = 1

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        import bittensor as bt

        super().add_args(parser)
        bt.Axon.add_args(parser)
        add_wandb_args(parser)
        parser.add_argument(
            "--neuron.epoch_length", type=int, default=50, help="blocks per epoch (default: %(default)s, about 10 minutes)"
        )
        parser.add_argument(
            "--neuron.epochs", type=int, default=0, help="stop after this many epochs (default: 0, run forever)"
        )
        parser.add_argument("--neuron.axon_off", action="store_true", help="do not serve an axon")
        parser.add_argument(
            "--neuron.disable_set_weights", action="store_true", help="compute everything but never set weights"
        )
        parser.add_argument(
            "--neuron.weights_retries", type=int, default=3, help="attempts per weight set (default: %(default)s)"
        )

    def __init__(self, config, chain=None, wallet=None, setup_logs: bool = True):
        self.last_epoch_block: int | None = None
        self.axon = None
        self.request_gate = None
        super().__init__(config, chain=chain, wallet=wallet, setup_logs=setup_logs)
        if self.config.neuron.epoch_length <= 0:
            raise ValueError("--neuron.epoch_length must be positive")

    # -- epochs ------------------------------------------------------------------------

    def epoch_start(self, block: int) -> int:
        length = int(self.config.neuron.epoch_length)
        return block - block % length

    @abstractmethod
    def forward(self, epoch_block: int) -> None:
        """One epoch of work for the window starting at `epoch_block`."""

    def run(self, epochs: int | None = None) -> int:
        """Run epochs until `epochs` windows were attempted (0 or None: forever).

        Every attempt counts, the failed ones too, so `--neuron.epochs N` always ends after
        N attempts. Each window is attempted once: after a failure the loop waits for the
        next window (on the in-memory chain too) instead of hammering a hub or chain that
        is down. A failure is one log line saying why; its traceback is logged at DEBUG.
        Returns the number of attempts.
        """
        epochs = self.config.neuron.epochs if epochs is None else epochs
        attempted = 0
        last_attempt = self.last_epoch_block  # a window finished before a restart is not redone
        while not epochs or attempted < epochs:
            try:
                epoch_block = self.next_window(last_attempt)
            except KeyboardInterrupt:
                logger.warning("interrupted; stopping")
                break
            except Exception as e:  # the chain cannot say which block it is: back off, count the attempt
                attempted += 1
                self._log_failure("could not read the chain's block", e)
                self._back_off()
                continue
            last_attempt = epoch_block
            attempted += 1
            started = time.monotonic()
            try:
                logger.info(f"epoch starting at block {epoch_block}")
                self.sync()
                self.forward(epoch_block)
                self.last_epoch_block = epoch_block
                self.step += 1
                logger.info(f"epoch {epoch_block} finished in {time.monotonic() - started:.1f}s")
            except KeyboardInterrupt:
                logger.warning("interrupted; stopping")
                break
            except Exception as e:  # one bad epoch must not stop an unattended validator
                self._log_failure(f"epoch {epoch_block} failed", e)
        return attempted

    def next_window(self, last_attempt: int | None) -> int:
        """The start of the first epoch window after `last_attempt`, waiting for it if need be."""
        epoch_block = self.epoch_start(self.chain.block())
        if last_attempt is not None and epoch_block <= last_attempt:
            target = last_attempt + int(self.config.neuron.epoch_length)
            logger.info(f"epoch {last_attempt} done; waiting for block {target}")
            self.chain.wait_for_block(target)
            epoch_block = self.epoch_start(self.chain.block())
        return epoch_block

    @staticmethod
    def _log_failure(what: str, e: BaseException) -> None:
        if isinstance(e, TransientChainError):
            logger.warning(f"{what}: chain unavailable ({one_line(e)}); trying again next epoch")
        else:
            logger.error(f"{what}: {type(e).__name__}: {one_line(e)}; trying again next epoch")
        logger.opt(exception=e).debug(f"{what}: traceback")

    retry_delay_s = 12.0  # one block: how long to wait when the chain cannot even say which block it is

    def _back_off(self) -> None:
        time.sleep(self.retry_delay_s)

    def _pause(self) -> None:
        try:
            self.chain.wait_for_block(self.chain.block() + 1)
        except Exception:
            time.sleep(self.retry_delay_s)

    # -- weights -----------------------------------------------------------------------

    def set_weights(self, uids: Sequence[int], weights: Sequence[float]) -> bool:
        """Set weights with `version_key=spec_version`, retrying; True once the chain accepted them."""
        if self.config.neuron.disable_set_weights:
            logger.info(f"not setting weights (--neuron.disable_set_weights): {dict(zip(uids, weights))}")
            return False
        attempts = max(1, int(self.config.neuron.weights_retries))
        for attempt in range(1, attempts + 1):
            try:
                self.chain.set_weights(self.wallet, uids, weights, version_key=self.spec_version)
                logger.info(f"weights set: {dict(zip(uids, weights))}")
                return True
            except WeightsRateLimited as e:
                logger.info(f"weights not set this epoch: {e}")
                return False
            except ChainError as e:
                logger.warning(f"set_weights attempt {attempt}/{attempts} failed: {e}")
                if attempt < attempts:
                    self._pause()
        logger.error("could not set weights this epoch; will try again next epoch")
        return False

    # -- axon --------------------------------------------------------------------------

    def attach_axon(self, axon) -> None:
        """Subclasses attach their synapse handlers here."""

    request_limits = RequestLimits()  # what the axon admits (size, requests in flight); see template/axon.py

    def serve_axon(self) -> None:
        """Start an axon, bounded by `request_limits`, attach handlers, publish it on chain.
        Failures are logged, not fatal."""
        import bittensor as bt

        try:
            axon = bt.Axon(wallet=self.wallet, config=self.config)
            self.request_gate = limit_requests(axon, self.request_limits)
            self.attach_axon(axon)
            axon.start()
            self.axon = axon
            logger.info(f"axon listening on {axon.ip}:{axon.port}")
        except Exception as e:
            logger.error(f"could not start the axon: {e}")
            return
        try:
            self.chain.serve_axon(self.wallet, axon)
        except ChainError as e:
            logger.error(f"could not publish the axon on chain: {e}")

    def stop(self) -> None:
        if self.axon is not None:
            try:
                self.axon.stop()
            except Exception:
                pass
        self.chain.close()
