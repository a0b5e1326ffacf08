"""Continuation tokens: signed with HMAC-SHA256 under a key kept in Key Vault, bound to the list and its
filters, and refused with a 400 naming `continuation` whatever a client sends instead of one.

The key comes from `SigningKeys` over an in-memory vault that behaves like Key Vault where it matters here
(a new version per write, the current version on read, 409 for a name that is deleted but not purged).
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import string
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from shared.api.parsing import (
    encode_continuation,
    open_continuation,
    read_continuation,
    sign_continuation,
    verify_continuation,
)
from shared.api.problems import ApiProblem, FieldError
from shared.clients.keyvault import (
    CONTINUATION_KEY_NAME,
    SecretDeleted,
    SecretValue,
    SigningKey,
    SigningKeys,
)
from shared.errors import ActionableError

pytestmark = pytest.mark.unit

KEY = SigningKey("0123456789abcdef0123456789abcdef", b"k" * 32)
OTHER_KEY = SigningKey("fedcba9876543210fedcba9876543210", b"o" * 32)
INTEGRATION = "8f3c2a1e-0b6d-4c5e-9a7f-1d2e3f4a5b6c"
TENANT = "11111111-1111-4111-8111-111111111111"
OTHER_TENANT = "22222222-2222-4222-8222-222222222222"
DEVICES = {"kind": "devices", "i": INTEGRATION, "t": TENANT, "r": False, "s": None, "c": None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def read(token: str, *, text_only: bool = False) -> tuple[Any, list[FieldError]]:
    errors: list[FieldError] = []
    return read_continuation({"continuation": token}, errors, text_only=text_only), errors


def opened(token: str, scope: dict[str, object], key: SigningKey | None = KEY) -> tuple[Any, list[FieldError]]:
    parsed, errors = read(token)
    if parsed is None:
        return None, errors
    return open_continuation(parsed, scope, key, errors), errors


def assert_refused(errors: list[FieldError]) -> None:
    assert len(errors) == 1
    assert errors[0].field == "continuation"
    assert errors[0].code == "invalidContinuation"
    assert errors[0].action


class MemoryKeyVault:
    """Key Vault's behaviour for one secret name: versions, the current one, soft delete; `before_write`
    runs inside a write (a rival instance writing at the same moment)."""

    def __init__(self) -> None:
        self.versions: dict[str, list[SecretValue]] = {}
        self.soft_deleted: set[str] = set()
        self.reads = 0
        self.writes = 0
        self.before_write: Callable[[], Awaitable[None]] | None = None
        self._ids = itertools.count(1)

    def add(self, name: str, value: str) -> str:
        version = f"{next(self._ids):032x}"
        self.versions.setdefault(name, []).append(SecretValue(version, SecretStr(value)))
        return version

    async def read_version(self, name: str, version: str | None = None) -> SecretValue | None:
        self.reads += 1
        found = self.versions.get(name, [])
        if version is None:
            return found[-1] if found else None
        return next((v for v in found if v.version == version), None)

    async def set_secret(self, name: str, value: SecretStr, *, expires_on: Any, tags: dict[str, str],
                         content_type: str = "client-secret") -> str:
        self.writes += 1
        if self.before_write is not None:
            rival, self.before_write = self.before_write, None
            await rival()
        if name in self.soft_deleted:
            raise SecretDeleted(name)
        return self.add(name, value.get_secret_value())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the token itself -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "position",
    ["row-key", ["2026-01-01T00:00:00+00:00", INTEGRATION], {"PartitionKey": "p", "RowKey": "r"}],
)
def test_a_token_round_trips_for_its_own_query(position: Any) -> None:
    token = encode_continuation(position, DEVICES, KEY)
    assert len(token) <= 4096
    assert opened(token, DEVICES) == (position, [])


def test_the_token_holds_no_key_material() -> None:
    token = encode_continuation("row", DEVICES, KEY)
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert payload == {"k": KEY.version, "p": "row"}
    assert b64(KEY.material) not in token and "k" * 32 not in token


@pytest.mark.parametrize(
    "other",
    [
        {**DEVICES, "kind": "software"},  # another route
        {**DEVICES, "t": OTHER_TENANT},  # another tenant
        {**DEVICES, "i": OTHER_TENANT},  # another integration
        {**DEVICES, "c": "compliant"},  # other filters
        {**DEVICES, "r": True},
        {**DEVICES, "s": "laptop"},
        {"kind": "integrations"},
    ],
)
def test_a_token_of_another_list_tenant_or_filter_is_refused(other: dict[str, object]) -> None:
    token = encode_continuation("row", DEVICES, KEY)
    position, errors = opened(token, other)
    assert position is None
    assert_refused(errors)


def test_a_tampered_mac_or_payload_is_refused() -> None:
    token = encode_continuation("row-10", DEVICES, KEY)
    payload, mac = token.split(".")
    raw_mac = bytearray(base64.urlsafe_b64decode(mac + "="))
    for i in (0, 15, 31):
        flipped = bytearray(raw_mac)
        flipped[i] ^= 0x01
        assert_refused(opened(f"{payload}.{b64(bytes(flipped))}", DEVICES)[1])
    # The position changed, the MAC kept: what a client guessing a position would send.
    forged = b64(json.dumps({"k": KEY.version, "p": "row-99"}, separators=(",", ":")).encode())
    assert_refused(opened(f"{forged}.{mac}", DEVICES)[1])
    # Signed with another key that names this key's version.
    assert_refused(opened(encode_continuation("row", DEVICES, SigningKey(KEY.version, b"x" * 32)), DEVICES)[1])


def test_a_key_version_that_is_not_the_current_key_asks_to_start_again() -> None:
    token = encode_continuation("row", DEVICES, OTHER_KEY)
    position, errors = opened(token, DEVICES, key=None)
    assert position is None
    assert_refused(errors)
    assert "Start the listing again" in errors[0].action


@pytest.mark.parametrize(
    "payload",
    [
        {"k": KEY.version, "p": 5},  # a number where the store expects text
        {"k": KEY.version, "p": 5.5},
        {"k": KEY.version, "p": True},
        {"k": KEY.version, "p": None},
        {"k": KEY.version, "p": ""},
        {"k": KEY.version, "p": {"PartitionKey": 1}},
        {"k": KEY.version, "p": {"PartitionKey": {"nested": "x"}}},
        {"k": KEY.version, "p": [1, 2]},
        {"k": KEY.version, "p": [["a"]]},
        {"k": KEY.version, "p": []},
        {"k": KEY.version, "p": {}},
        {"k": KEY.version, "p": ["a"] * 9},
        {"k": 7, "p": "row"},
        {"k": None, "p": "row"},
        {"k": "../../secrets", "p": "row"},
        {"k": KEY.version},
        {"p": "row"},
        {"k": KEY.version, "p": "row", "extra": 1},
        {"v": 1, "p": "row", "b": "0123456789abcdef"},  # the shape of an unsigned token
        [KEY.version, "row"],
        "row",
        42,
        None,
    ],
)
def test_well_formed_json_of_the_wrong_shape_is_refused_even_with_a_valid_mac(payload: Any) -> None:
    # Signed with the right key for the right query: only the shape can make these fail.
    text = b64(json.dumps(payload).encode())
    mac = encode_continuation("x", DEVICES, KEY).split(".")[1]
    position, errors = read(f"{text}.{mac}")
    assert position is None
    assert_refused(errors)


def test_assets_and_per_device_lists_take_only_a_text_position() -> None:
    token = encode_continuation(["a", "b"], DEVICES, KEY)
    assert read(token)[1] == []
    assert_refused(read(token, text_only=True)[1])


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "eyJ2IjoxfQ",  # {"v":1}, unsigned
        "../../x",
        ".",
        "a.",
        ".a",
        "a" * 4097,
        "a" * 4000 + "." + "A" * 43,
        "e30." + "A" * 42,  # a MAC one character short
        "e30." + "A" * 44,
        "e30." + "A" * 43,  # {} with some MAC
        "W10." + "A" * 43,  # []
        "bnVsbA." + "A" * 43,  # null
        "TmFO." + "A" * 43,  # NaN
        b64(b"\xff\xfe\x00") + "." + "A" * 43,  # not UTF-8
        b64(b"[" * 3000) + "." + "A" * 43,  # deeper than the parser allows
        "e30=." + "A" * 43,  # padding
        "e30.A" + "+" * 42,
        "é30." + "A" * 43,
        "e30\x00." + "A" * 43,
    ],
)
def test_malformed_tokens_are_refused_without_the_key(token: str) -> None:
    position, errors = read(token)
    assert position is None
    assert_refused(errors)


def test_random_tokens_are_always_a_refusal_never_an_exception() -> None:
    rng = random.Random(20261129)
    alphabet = string.ascii_letters + string.digits + "-_.=+/%\\\"' \t\n\x00éü😀\ud800"
    mac = encode_continuation("x", DEVICES, KEY).split(".")[1]
    shapes = [
        lambda: "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200))),
        lambda: b64(rng.randbytes(rng.randint(1, 300))) + "." + b64(rng.randbytes(32)),
        lambda: b64(rng.randbytes(rng.randint(1, 300))) + "." + mac,
        lambda: b64(json.dumps({"k": KEY.version, "p": rng.choice(
            [rng.random(), rng.randint(-9, 9), [rng.random()], {"a": rng.random()}, "x" * rng.randint(1, 40)]
        )}).encode()) + "." + b64(rng.randbytes(32)),
    ]
    for _ in range(2000):
        token = rng.choice(shapes)()
        parsed, errors = read(token)
        if parsed is not None:  # well-formed by chance: the MAC decides
            assert open_continuation(parsed, DEVICES, KEY, errors) is None
        assert_refused(errors)


# --- verify and sign through the key source -------------------------------------------------------------


async def test_verify_raises_a_400_problem_naming_continuation() -> None:
    keys = SigningKeys(MemoryKeyVault())  # type: ignore[arg-type]
    token = await sign_continuation("row", DEVICES, keys)
    parsed, _ = read(token)
    assert await verify_continuation(parsed, DEVICES, keys) == "row"
    assert await verify_continuation(None, DEVICES, keys) is None
    with pytest.raises(ApiProblem) as refused:
        await verify_continuation(parsed, {**DEVICES, "t": OTHER_TENANT}, keys)
    assert refused.value.status == 400
    assert [e.field for e in refused.value.errors] == ["continuation"]


# --- the key in Key Vault -------------------------------------------------------------------------------


async def test_the_key_is_created_once_then_read_once_per_process() -> None:
    vault = MemoryKeyVault()
    first = SigningKeys(vault)  # type: ignore[arg-type]
    key = await first.current()
    assert len(key.material) >= SigningKeys.MIN_BYTES
    assert vault.writes == 1 and len(vault.versions[CONTINUATION_KEY_NAME]) == 1
    for _ in range(5):
        assert await first.current() is key
    reads = vault.reads
    # Another instance reads the same key and creates nothing.
    second = SigningKeys(vault)  # type: ignore[arg-type]
    assert (await second.current()).material == key.material
    assert vault.writes == 1 and vault.reads == reads + 1


async def test_racing_creations_converge_on_the_version_written_last() -> None:
    vault = MemoryKeyVault()
    clock = Clock()
    first = SigningKeys(vault, clock=clock)  # type: ignore[arg-type]
    second = SigningKeys(vault, clock=clock)  # type: ignore[arg-type]

    async def rival_creates_too() -> None:
        # The second instance found no key either, and writes its own version while the first writes.
        assert await second.current() is not None

    vault.before_write = rival_creates_too
    first_key = await first.current()
    second_key = await second.current()
    versions = [v.version for v in vault.versions[CONTINUATION_KEY_NAME]]
    assert len(versions) == 2
    # Each read back the version current after its own write: the rival (which wrote first) holds the older.
    assert (second_key.version, first_key.version) == (versions[0], versions[1])
    early_token = await sign_continuation("row-1", DEVICES, second)
    # The first token of the newer version brings the rival over to it, at once.
    token = await sign_continuation("row-2", DEVICES, first)
    assert await verify_continuation(read(token)[0], DEVICES, second) == "row-2"
    assert (await second.current()).version == versions[1]
    # What the rival signed with the losing version is refused where that version was never held: start again.
    with pytest.raises(ApiProblem) as refused:
        await verify_continuation(read(early_token)[0], DEVICES, first)
    assert "Start the listing again" in refused.value.errors[0].action


async def test_a_rival_key_version_is_adopted_and_tokens_cross_instances() -> None:
    vault = MemoryKeyVault()
    clock = Clock()
    vault.add(CONTINUATION_KEY_NAME, "a" * 43)
    early = SigningKeys(vault, clock=clock)  # type: ignore[arg-type]
    old = await early.current()
    newest = vault.add(CONTINUATION_KEY_NAME, "b" * 43)  # a rival's (or an operator's) later version
    late = SigningKeys(vault, clock=clock)  # type: ignore[arg-type]
    token = await sign_continuation("row", DEVICES, late)
    assert await verify_continuation(read(token)[0], DEVICES, early) == "row"
    assert (await early.current()).version == newest  # and it signs with it from now on
    # A token of the version it used before stays valid where it was known.
    assert await early.find(old.version) is not None


async def test_made_up_key_versions_cost_the_vault_one_read_per_interval() -> None:
    vault = MemoryKeyVault()
    clock = Clock()
    keys = SigningKeys(vault, clock=clock, refresh_seconds=30)  # type: ignore[arg-type]
    await keys.current()
    reads = vault.reads
    for i in range(100):
        assert await keys.find(f"{i:032x}ff") is None
        clock.now += 0.1
    assert vault.reads == reads + 1
    clock.now += 30
    assert await keys.find("deadbeef" * 4) is None
    assert await keys.find("deadbeef" * 3) is None
    assert vault.reads == reads + 2


async def test_a_key_deleted_but_not_purged_is_an_actionable_error() -> None:
    vault = MemoryKeyVault()
    vault.soft_deleted.add(CONTINUATION_KEY_NAME)
    with pytest.raises(ActionableError) as failed:
        await SigningKeys(vault).current()  # type: ignore[arg-type]
    assert CONTINUATION_KEY_NAME in failed.value.info.message
    assert "recover" in failed.value.info.action


async def test_a_key_too_short_to_sign_with_is_refused() -> None:
    vault = MemoryKeyVault()
    vault.add(CONTINUATION_KEY_NAME, "short")
    with pytest.raises(ActionableError) as failed:
        await SigningKeys(vault).current()  # type: ignore[arg-type]
    assert "short" not in failed.value.info.message.replace("shorter", "")
