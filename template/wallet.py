"""Wallets: the real `bt.Wallet`, or a keys-only stand-in for `--mock`.

`MockWallet` holds real sr25519 keypairs derived from a URI built from the wallet and
hotkey names, so signatures (Dendrite, Axon) are real and the same names always give the
same SS58 address, with nothing written to disk.
"""

from __future__ import annotations

import bittensor as bt


class WalletError(RuntimeError):
    """A wallet that cannot be used; the message says what to do."""


class MockWallet:
    def __init__(self, name: str = "default", hotkey: str = "default"):
        self.name = name
        self.hotkey_str = hotkey
        self.hotkey = bt.Keypair.create_from_uri(f"//distil-mock/{name}/{hotkey}")
        self.coldkey = bt.Keypair.create_from_uri(f"//distil-mock/{name}")
        self.coldkeypub = self.coldkey

    def __repr__(self) -> str:
        return f"MockWallet({self.name!r}, {self.hotkey_str!r}, {self.hotkey.ss58_address})"


def mock_hotkey(name: str, hotkey: str = "default") -> str:
    """The SS58 address `MockWallet(name, hotkey)` has."""
    return MockWallet(name, hotkey).hotkey.ss58_address


def load_wallet(config) -> "bt.Wallet | MockWallet":
    """The wallet named by `--wallet.*`; in `--mock`, a `MockWallet` with the same names."""
    if config.mock:
        return MockWallet(str(config.wallet.name), str(config.wallet.hotkey))
    wallet = bt.Wallet(config=config)
    try:
        _ = wallet.hotkey.ss58_address
        _ = wallet.coldkeypub.ss58_address
    except Exception as e:  # KeyFileError and friends
        raise WalletError(
            f"cannot open wallet {config.wallet.name!r} hotkey {config.wallet.hotkey!r} under "
            f"{config.wallet.path}: {e}. Create it with `btcli wallet create` or pass "
            "--wallet.name/--wallet.hotkey/--wallet.path."
        ) from None
    return wallet
