"""The template layer: strict flag parsing, base neurons, the epoch loop, weight retries."""

import argparse

import pytest

from template.base import BaseMinerNeuron, BaseNeuron, BaseValidatorNeuron
from template.base.neuron import register_command
from template.chain import NotRegisteredError
from template.mock_chain import InMemoryChain
from template.config import add_chain_args, add_neuron_args, check_config, is_set, parse_config
from template.wallet import MockWallet


def parser():
    p = argparse.ArgumentParser()
    add_chain_args(p)
    add_neuron_args(p, "test")
    return p


@pytest.mark.parametrize("env", [None, "0", "1", "true"])
def test_flags_parse_whatever_BT_NO_PARSE_CLI_ARGS_says(monkeypatch, env):
    if env is None:
        monkeypatch.delenv("BT_NO_PARSE_CLI_ARGS", raising=False)
    else:
        monkeypatch.setenv("BT_NO_PARSE_CLI_ARGS", env)
    config = parse_config(parser(), ["--wallet.name", "w", "--wallet.hotkey", "h", "--netuid", "3", "--logging.debug"])
    assert (config.wallet.name, config.wallet.hotkey, config.netuid, config.logging.debug) == ("w", "h", 3, True)


def test_empty_argv_does_not_read_sys_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["prog", "--netuid", "5"])
    assert parse_config(parser(), []).netuid == 97
    assert parse_config(parser(), None).netuid == 5


def test_unknown_flag_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        parse_config(parser(), ["--wallet.nmae", "w"])
    assert e.value.code == 2
    assert "--wallet.nmae" in capsys.readouterr().err


def test_live_subnet_spellings_are_aliases():
    config = parse_config(parser(), ["--network", "test", "--wallet-name", "w", "--hotkey-name", "h"])
    assert (config.subtensor.network, config.wallet.name, config.wallet.hotkey) == ("test", "w", "h")
    defaults = parse_config(parser(), [])
    assert (defaults.subtensor.network, defaults.wallet.name) == ("finney", "default")


def test_explicit_full_path_is_used_as_given(tmp_path):
    explicit = tmp_path / "exactly" / "here"
    config = check_config(parse_config(parser(), ["--neuron.full_path", str(explicit)]))
    assert is_set(config, "neuron.full_path")
    assert config.neuron.full_path == str(explicit) and explicit.is_dir()
    derived = check_config(
        parse_config(parser(), ["--logging.logging_dir", str(tmp_path), "--wallet.name", "w", "--wallet.hotkey", "h"])
    )
    assert not is_set(derived, "neuron.full_path")
    assert derived.neuron.full_path == str(tmp_path / "w" / "h" / "netuid97" / "test")


def mock_config(tmp_path, extra=(), cls=BaseValidatorNeuron):
    return parse_config(
        cls.build_parser(),
        ["--mock", "--wallet.name", "v", "--wallet.hotkey", "h", "--neuron.full_path", str(tmp_path), "--neuron.axon_off", *extra]
        if cls is not BaseMinerNeuron
        else ["--mock", "--wallet.name", "v", "--wallet.hotkey", "h", "--neuron.full_path", str(tmp_path), *extra],
    )


class RecordingChain(InMemoryChain):
    def __init__(self, log, **kw):
        super().__init__(**kw)
        self.log = log

    def metagraph(self):
        self.log.append("sync")
        return super().metagraph()


class Validator(BaseValidatorNeuron):
    def __init__(self, *a, fail_on=(), **kw):
        self.events = kw.pop("events", [])
        self.forwarded = []
        self.fail_on = set(fail_on)
        super().__init__(*a, **kw)

    def load_state(self):
        self.events.append("load_state")

    def forward(self, epoch_block):
        self.forwarded.append(epoch_block)
        if epoch_block in self.fail_on:
            raise RuntimeError("boom")
        self.set_weights([0], [1.0])


def registered_chain(wallet, **kw):
    chain = InMemoryChain(**kw)
    chain.register(wallet.hotkey.ss58_address, validator_permit=True)
    return chain


def test_state_is_loaded_before_the_first_sync(tmp_path):
    events = []
    wallet = MockWallet("v", "h")
    chain = RecordingChain(events, start_block=0)
    chain.register(wallet.hotkey.ss58_address)
    Validator(mock_config(tmp_path), chain=chain, events=events, setup_logs=False)
    assert events[:2] == ["load_state", "sync"]


def test_unregistered_hotkey_is_a_clear_error_not_exit(tmp_path):
    # a mock chain is registered with its own command: btcli knows nothing of it
    with pytest.raises(NotRegisteredError, match="`python -m template.mock_chain register --mock.chain_state FILE "
                                                 "--netuid 97 --wallet.name v --wallet.hotkey h`, then pass"):
        Validator(mock_config(tmp_path), chain=InMemoryChain(), setup_logs=False)
    real = parse_config(BaseValidatorNeuron.build_parser(), ["--wallet.name", "v", "--wallet.hotkey", "h"])
    assert register_command(real) == "btcli subnets register --netuid 97 --wallet.name v --wallet.hotkey h"
    test = parse_config(BaseValidatorNeuron.build_parser(), ["--subtensor.network", "test", "--netuid", "5"])
    assert register_command(test).endswith("--netuid 5 --wallet.name default --wallet.hotkey default --subtensor.network test")


def test_epoch_loop_runs_each_window_once_and_survives_a_failing_epoch(tmp_path):
    wallet = MockWallet("v", "h")
    chain = registered_chain(wallet, start_block=120)
    v = Validator(mock_config(tmp_path, ["--neuron.epoch_length", "50"]), chain=chain, fail_on={150}, setup_logs=False)
    assert v.run(epochs=3) == 3
    # the window at 150 failed: logged, not retried block after block, and the loop went on
    assert v.forwarded == [100, 150, 200]
    assert v.last_epoch_block == 200
    assert [w.block for w in chain.weight_sets] == [120, 200]  # set at the block the epoch ran
    assert all(w.version_key == BaseValidatorNeuron.spec_version for w in chain.weight_sets)


def test_sigterm_and_sigint_stop_the_loop_and_stop_runs_every_step_once(tmp_path):
    """A stop signal in the middle of an epoch leaves it (nothing after the signal runs), sets
    `stopping`, restores the previous handlers; `stop()` runs each `on_stop` step once,
    newest first, and a failing step does not skip the others."""
    import os
    import signal

    class Stopped(Validator):
        def forward(self, epoch_block):
            self.forwarded.append(epoch_block)
            if len(self.forwarded) == 2:
                os.kill(os.getpid(), self.signal_to_send)
                self.forwarded.append("after the signal")  # never reached: the handler raised

    for sig in (signal.SIGTERM, signal.SIGINT):
        before = signal.getsignal(sig)
        chain = registered_chain(MockWallet("v", "h"), start_block=120)
        v = Stopped(mock_config(tmp_path, ["--neuron.epoch_length", "50"]), chain=chain, setup_logs=False)
        v.signal_to_send = sig
        assert v.run(epochs=5) == 2 and v.forwarded == [100, 150]
        assert v.stopping.is_set() and signal.getsignal(sig) is before
        order = []
        v.on_stop("first", lambda: order.append("first"))
        v.on_stop("broken", lambda: 1 / 0)
        v.on_stop("children", lambda: order.append("children"))
        v.stop()
        v.stop()
        assert order == ["children", "first"]


def test_a_finished_window_is_not_redone_after_restart(tmp_path):
    wallet = MockWallet("v", "h")
    chain = registered_chain(wallet, start_block=120)
    v = Validator(mock_config(tmp_path), chain=chain, setup_logs=False)
    v.last_epoch_block = 100  # as restored from state
    assert v.run(epochs=1) == 1
    assert v.forwarded == [150]


def test_set_weights_retries_then_succeeds(tmp_path):
    wallet = MockWallet("v", "h")
    chain = registered_chain(wallet, start_block=10)
    v = Validator(mock_config(tmp_path, ["--neuron.weights_retries", "3"]), chain=chain, setup_logs=False)
    chain.fail_next("set_weights", "timeout")
    chain.fail_next("set_weights", "reject")
    assert v.set_weights([0], [1.0]) is True
    assert len(chain.weight_sets) == 1 and chain.calls["set_weights"] == 3
    chain.advance(100)
    chain.fail_next("set_weights", "reject", times=3)
    assert v.set_weights([0], [1.0]) is False
    assert len(chain.weight_sets) == 1


def test_rate_limited_weights_are_not_retried(tmp_path):
    wallet = MockWallet("v", "h")
    chain = registered_chain(wallet, start_block=10, weights_rate_limit=100)
    v = Validator(mock_config(tmp_path, ["--neuron.weights_retries", "3"]), chain=chain, setup_logs=False)
    assert v.set_weights([0], [1.0]) is True
    chain.advance(50)
    assert v.set_weights([0], [1.0]) is False
    assert chain.calls["set_weights"] == 2 and chain.block() == 60  # no retries, no blocks waited
    chain.advance(50)
    assert v.set_weights([0], [1.0]) is True


def test_disable_set_weights(tmp_path):
    wallet = MockWallet("v", "h")
    chain = registered_chain(wallet)
    v = Validator(mock_config(tmp_path, ["--neuron.disable_set_weights"]), chain=chain, setup_logs=False)
    assert v.set_weights([0], [1.0]) is False and chain.weight_sets == []


def test_miner_base_writes_and_reads_back(tmp_path):
    wallet = MockWallet("v", "h")
    chain = registered_chain(wallet, start_block=7)
    miner = BaseMinerNeuron(mock_config(tmp_path, cls=BaseMinerNeuron), chain=chain, setup_logs=False)
    record = miner.write_commitment("ns/m@" + "e" * 40)
    assert (record.block, record.data) == (7, "ns/m@" + "e" * 40)
    assert miner.current_commitment() == record


def test_base_neuron_is_abstract_free_of_exit(tmp_path):
    # Library code raises; it never calls exit(). A subclass with no work still constructs.
    wallet = MockWallet("v", "h")
    chain = registered_chain(wallet)

    class Plain(BaseNeuron):
        pass

    neuron = Plain(mock_config(tmp_path, cls=BaseMinerNeuron), chain=chain, setup_logs=False)
    assert neuron.uid == 0 and neuron.block == 0


def test_flags_are_never_abbreviated(capsys):
    from template.base import BaseValidatorNeuron

    with pytest.raises(SystemExit):
        parse_config(BaseValidatorNeuron.build_parser(), ["--wallet.nam", "w"])
    assert "--wallet.nam" in capsys.readouterr().err


def test_record_log_writes_a_log_file(tmp_path):
    from loguru import logger

    from template.log import setup_logging_from_config

    config = check_config(parse_config(parser(), ["--logging.record_log", "--neuron.full_path", str(tmp_path)]))
    setup_logging_from_config(config)
    logger.info("hello from the test")
    logger.remove()
    assert "hello from the test" in (tmp_path / "logs" / "distil.log").read_text()


def run_in_thread(v, epochs):
    """run(epochs) in a daemon thread: a loop that never ends fails the test instead of hanging it."""
    import threading

    result = []
    thread = threading.Thread(target=lambda: result.append(v.run(epochs=epochs)), daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "run() did not end after the requested number of epochs"
    return result[0]


def test_failing_epochs_count_wait_for_the_next_window_and_log_one_line(tmp_path):
    from loguru import logger

    wallet = MockWallet("v", "h")
    chain = registered_chain(wallet, start_block=120)
    v = Validator(mock_config(tmp_path, ["--neuron.epoch_length", "50"]), chain=chain, fail_on={100, 150, 200}, setup_logs=False)
    lines = []
    sink = logger.add(lambda m: lines.append(m), level="INFO", format="{message}")
    try:
        assert run_in_thread(v, 2) == 2
    finally:
        logger.remove(sink)
    assert v.forwarded == [100, 150]  # one attempt per window, never a retry within a window
    failures = [str(m) for m in lines if "failed" in str(m)]
    assert len(failures) == 2 and all("RuntimeError: boom" in m and "Traceback" not in m for m in failures)


def test_a_loop_that_cannot_even_read_the_block_still_ends_after_n_attempts(tmp_path):
    wallet = MockWallet("v", "h")
    chain = registered_chain(wallet, start_block=120)
    v = Validator(mock_config(tmp_path), chain=chain, setup_logs=False)
    v.retry_delay_s = 0.01
    chain.fail_next("block", "timeout", times=1000)
    assert run_in_thread(v, 3) == 3
    assert v.forwarded == []


def test_a_corrupt_last_epoch_block_is_no_tight_loop(tmp_path):
    # issue 9 §5: "last_epoch_block": "200" gave 149,089 "epoch failed" lines in 90 s and
    # --neuron.epochs never ended it (the state now refuses it at load; the loop must hold anyway)
    wallet = MockWallet("v", "h")
    chain = registered_chain(wallet, start_block=120)
    v = Validator(mock_config(tmp_path), chain=chain, setup_logs=False)
    v.retry_delay_s = 0.01
    v.last_epoch_block = "200"
    assert run_in_thread(v, 2) == 2
    assert chain.block() < 200  # no block-by-block walk while failing
