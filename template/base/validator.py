"""BaseValidatorNeuron: the epoch loop, weight setting with retries, and the axon.

`run()` calls `forward(epoch_block)` once per epoch window of `--neuron.epoch_length`
blocks (the window starts at `block - block % epoch_length`), waits for the next window
through the chain client (the in-memory chain jumps there at once), and keeps going when
an epoch fails: the failure is logged in one line and the next window starts fresh. A
failed epoch is never retried within its window, and it counts towards `--neuron.epochs`.

SIGTERM (systemd, docker, pm2's kill) and SIGINT (Ctrl-C) stop it alike: one log line, the
work in progress is abandoned (state is only ever replaced whole, by rename, so a round cut
short leaves the state of the last finished step and is scored again after a restart), and
`run()` returns. `stop()` is then the one stop path: it marks the neuron as stopping
(`self.stopping`, an Event any code may ask), ends what `on_stop` registered (child
processes first), then the axon and the chain.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
import time
from abc import abstractmethod
from typing import Callable, Iterator, Sequence

from loguru import logger

from template.args import one_line  # noqa: F401  (re-exported: logs stay one line per failure)
from template.axon import RequestLimits, limit_requests
from template.base.neuron import BaseNeuron
from template.chain import ChainError, TransientChainError, WeightsRateLimited
from template.config import add_wandb_args


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown(BaseException):
    """A stop signal arrived: leave whatever is running (a BaseException, like KeyboardInterrupt,
    so the epoch loop's `except Exception` never swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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
        self.stopping = threading.Event()  # set once a stop began: long work may ask `stopping.is_set()`
        self._stop_callbacks: list[tuple[str, Callable[[], None]]] = []
        self._stopped = False
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
        self._attempted = 0
        with self.stop_on_signals():
            try:
                self._epochs(epochs)
            except Shutdown as e:
                logger.warning(f"received {e}; stopping (state is saved whole: a round cut short is scored again)")
            except KeyboardInterrupt:  # SIGINT outside the main thread's handler (e.g. tests)
                logger.warning("interrupted; stopping")
        return self._attempted

    def _epochs(self, epochs: int) -> None:
        last_attempt = self.last_epoch_block  # a window finished before a restart is not redone
        while (not epochs or self._attempted < epochs) and not self.stopping.is_set():
            try:
                epoch_block = self.next_window(last_attempt)
            except Exception as e:  # the chain cannot say which block it is: back off, count the attempt
                self._attempted += 1
                self._log_failure("could not read the chain's block", e)
                self._back_off()
                continue
            last_attempt = epoch_block
            self._attempted += 1
            started = time.monotonic()
            try:
                logger.info(f"epoch starting at block {epoch_block}")
                self.sync()
                self.forward(epoch_block)
                self.last_epoch_block = epoch_block
                self.step += 1
                logger.info(f"epoch {epoch_block} finished in {time.monotonic() - started:.1f}s")
            except Exception as e:  # one bad epoch must not stop an unattended validator
                self._log_failure(f"epoch {epoch_block} failed", e)

    @contextlib.contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """While inside: SIGTERM and SIGINT mark the neuron as stopping and raise `Shutdown` in the
        main thread (the first one only; later ones are logged while the stop runs). The previous
        handlers are restored on the way out. Outside the main thread, nothing is installed."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.stopping.is_set():
                logger.warning(f"received {signal.Signals(signum).name} again; already stopping")
                return
            self.stopping.set()
            raise Shutdown(signum)

        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    # -- the stop path ---------------------------------------------------------------------

    def on_stop(self, name: str, callback: Callable[[], None]) -> None:
        """Run `callback` when the neuron stops, before the axon and the chain close; the last
        registered runs first (end child processes here: scoring workers, downloads...)."""
        self._stop_callbacks.append((name, callback))

    def stop(self) -> None:
        """The one stop path (a signal, the end of `--neuron.epochs`, a failed start); runs once.

        1. `self.stopping` is set, so any code still running can see it is shutting down;
        2. the `on_stop` callbacks, newest first (child processes, then reporting);
        3. the axon stops and the chain connection closes.
        A failing step is logged and the others still run. Signals that arrive meanwhile are
        logged, not acted on (`stop_on_signals`)."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping.set()
        for name, callback in reversed(self._stop_callbacks):
            try:
                callback()
            except Exception as e:  # one failed cleanup must not skip the others
                logger.warning(f"stopping: {name} failed: {type(e).__name__}: {one_line(e)}")
        if self.axon is not None:
            try:
                self.axon.stop()
            except Exception as e:
                logger.debug(f"stopping: the axon: {e}")
        self.chain.close()

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


