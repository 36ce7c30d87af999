"""The signer's own refusals."""

from __future__ import annotations

import pytest

from keys import KeyPair, generate_key, sign


@pytest.fixture
def pair() -> KeyPair:
    return generate_key("ES256")


def test_signing_refuses_non_finite_numbers(pair: KeyPair) -> None:
    # orjson would write NaN as null; the signer refuses rather than sign something else than asked.
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="NaN or infinity"):
            sign({"exp": value}, pair, typ="at+jwt")
