from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import itsdangerous
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import featureflag
from featureflag.exceptions import (
    BadSignature,
    ConfigurationError,
    InvalidOverride,
    MalformedToken,
    TokenExpired,
    TokenTooLarge,
    TooManyFlags,
    WrongEnvironment,
)
from featureflag.tokens import (
    CACHE_SIZE,
    MAX_TOKEN_BYTES,
    OverrideSigner,
    VerifiedOverrides,
    check_flags,
    override_problem,
    sign_main,
)
from tests.support.clock import Clock

SECRET = "a-test-secret-that-is-long-enough-0123456789"
OLD = "the-old-secret-which-is-also-long-enough-9876"


def raw_token(payload: object, *, secret: str = SECRET, environment: str = "test") -> str:
    """Sign any payload the way featureflag does, to make tokens dumps() would refuse."""
    serializer = itsdangerous.URLSafeTimedSerializer(
        secret, salt=f"featureflag.overrides/{environment}"
    )
    return str(serializer.dumps(payload))


def payload(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "v": 1,
        "env": "test",
        "flags": {"A.b": True},
        "sub": "ana",
        "origin": "extension",
        "exp": 4_000_000_000,
    }
    base.update(changes)
    return base


def test_round_trip() -> None:
    signer = OverrideSigner(SECRET, environment="test")
    token = signer.dumps({"SomeNewFeature.is_released": True, "new-lp": "b"}, sub="ana")
    verified = signer.loads(token)
    assert verified == VerifiedOverrides(
        flags={"SomeNewFeature.is_released": True, "new-lp": "b"},
        sub="ana",
        origin="extension",
        expires_at=verified.expires_at,
    )
    assert signer.loads(token.encode()) == verified
    assert featureflag.OverrideSigner is OverrideSigner


def test_payload_format_and_salt() -> None:
    clock = Clock()
    signer = OverrideSigner(SECRET, environment="qa", clock=clock)
    token = signer.dumps({"x": "y"}, sub="bo", origin="fork:new-lp", ttl=60)
    reader = itsdangerous.URLSafeTimedSerializer(SECRET, salt="featureflag.overrides/qa")
    assert reader.loads(token) == {
        "v": 1,
        "env": "qa",
        "flags": {"x": "y"},
        "sub": "bo",
        "origin": "fork:new-lp",
        "exp": clock.now + 60,
    }
    # A token made elsewhere with the documented format and salt is accepted.
    made = raw_token(payload(env="qa"), environment="qa")
    assert signer.loads(made).flags == {"A.b": True}


def test_rotation_first_signs_all_verify() -> None:
    old_signer = OverrideSigner(OLD, environment="test")
    rotated = OverrideSigner([SECRET, OLD], environment="test")
    new_only = OverrideSigner(SECRET, environment="test")
    old_token = old_signer.dumps({"a": True}, sub="x")
    assert rotated.loads(old_token).flags == {"a": True}
    fresh = rotated.dumps({"a": False}, sub="x")
    assert new_only.loads(fresh).flags == {"a": False}
    with pytest.raises(BadSignature):
        old_signer.loads(fresh)
    with pytest.raises(BadSignature) as caught:
        new_only.loads(old_token)
    assert caught.value.reason == "bad-signature"


def test_expiry_uses_the_injected_clock_even_when_cached() -> None:
    clock = Clock()
    signer = OverrideSigner(SECRET, environment="test", clock=clock)
    token = signer.dumps({"a": True}, sub="x", ttl=60)
    assert signer.loads(token).expires_at == clock.now + 60
    clock.now += 59
    assert signer.loads(token).flags == {"a": True}  # now cached
    clock.now += 1
    with pytest.raises(TokenExpired) as caught:
        signer.loads(token)
    assert caught.value.reason == "expired"


def test_max_age_cap_bounds_every_token() -> None:
    clock = Clock()
    capped = OverrideSigner(SECRET, environment="test", clock=clock, max_age_cap=100)
    assert (
        capped.loads(capped.dumps({"a": True}, sub="x", ttl=10_000)).expires_at == clock.now + 100
    )
    # A long-lived token minted by an uncapped signer is cut by the verifier's cap.
    long = OverrideSigner(SECRET, environment="test", clock=clock).dumps(
        {"a": True}, sub="x", ttl=1e6
    )
    clock.now += 101
    with pytest.raises(TokenExpired):
        capped.loads(long)


def test_wrong_environment_is_named() -> None:
    qa_token = OverrideSigner(SECRET, environment="qa").dumps({"a": True}, sub="x")
    production = OverrideSigner(SECRET, environment="production")
    with pytest.raises(WrongEnvironment) as caught:
        production.loads(qa_token)
    assert caught.value.reason == "wrong-environment"
    assert "'qa'" in str(caught.value) and "'production'" in str(caught.value)


def test_wrong_environment_claim_in_a_compressed_token() -> None:
    # itsdangerous compresses long payloads; the peek must still find "env".
    flags = {f"flag{i}": "same-value" for i in range(50)}
    token = OverrideSigner(SECRET, environment="qa").dumps(flags, sub="x")
    assert token.startswith(".")
    with pytest.raises(WrongEnvironment):
        OverrideSigner(SECRET, environment="production").loads(token)


def test_altered_token_is_a_bad_signature() -> None:
    signer = OverrideSigner(SECRET, environment="test")
    token = signer.dumps({"a": False}, sub="x")
    body, stamp, signature = token.rsplit(".", 2)
    forged = raw_token(payload(flags={"a": True}), secret="x" * 40).rsplit(".", 2)[0]
    with pytest.raises(BadSignature):
        signer.loads(f"{forged}.{stamp}.{signature}")
    with pytest.raises(BadSignature):
        signer.loads(f"{body}.{stamp}.{signature[:-2]}AA")


@pytest.mark.parametrize("token", ["garbage", "a.b", "a b.c.d", "", "..", "é.é.é"])
def test_malformed(token: str) -> None:
    with pytest.raises(MalformedToken) as caught:
        OverrideSigner(SECRET, environment="test").loads(token)
    assert caught.value.reason == "malformed"


def test_non_ascii_bytes_are_malformed() -> None:
    with pytest.raises(MalformedToken):
        OverrideSigner(SECRET, environment="test").loads(b"\xff\xfe.a.b")


def test_too_large_is_refused_before_any_crypto(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = OverrideSigner(SECRET, environment="test")

    def no_crypto(*args: object, **kwargs: object) -> None:
        raise AssertionError("verified a token over the limit")

    monkeypatch.setattr(signer._serializer, "loads", no_crypto)
    with pytest.raises(TokenTooLarge) as caught:
        signer.loads("a" * (MAX_TOKEN_BYTES + 1))
    assert caught.value.reason == "too-large"
    with pytest.raises(TokenTooLarge):
        signer.loads(b"a" * (MAX_TOKEN_BYTES + 1))


def test_dumps_refuses_a_token_it_could_not_read() -> None:
    signer = OverrideSigner(SECRET, environment="test")
    incompressible = {f"f{i}": os.urandom(40).hex() for i in range(150)}
    with pytest.raises(TokenTooLarge):
        signer.dumps(incompressible, sub="x")
    with pytest.raises(TooManyFlags):
        signer.dumps({f"f{i}": True for i in range(201)}, sub="x")
    with pytest.raises(InvalidOverride):
        signer.dumps({"a": 3}, sub="x")  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        signer.dumps({"a": True}, sub="x", ttl=0)


def test_too_many_flags_in_a_signed_token() -> None:
    token = raw_token(payload(flags={f"f{i}": True for i in range(201)}))
    with pytest.raises(TooManyFlags) as caught:
        OverrideSigner(SECRET, environment="test").loads(token)
    assert caught.value.reason == "too-many-flags"
    ok = raw_token(payload(flags={f"f{i}": True for i in range(200)}))
    assert len(OverrideSigner(SECRET, environment="test").loads(ok).flags) == 200


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ({"A.b": 3}, "int"),
        ({"A.b": None}, "NoneType"),
        ({"A.b": ["x"]}, "list"),
        ({"has space": True}, "Invalid flag name"),
        ({"": True}, "Invalid flag name"),
        ({"A.b": "x" * 1025}, "1024 bytes"),
    ],
)
def test_invalid_override_in_a_signed_token(flags: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidOverride) as caught:
        OverrideSigner(SECRET, environment="test").loads(raw_token(payload(flags=flags)))
    assert caught.value.reason == "invalid-override"
    assert words in str(caught.value)


def test_value_of_exactly_one_kib_is_fine() -> None:
    token = raw_token(payload(flags={"A.b": "é" * 512}))
    assert OverrideSigner(SECRET, environment="test").loads(token).flags == {"A.b": "é" * 512}


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"exp": "soon"},
        {"exp": True},
        {"sub": None},
        {"flags": ["A.b"]},
    ],
)
def test_signed_but_not_our_format(changes: dict[str, object]) -> None:
    with pytest.raises(MalformedToken):
        OverrideSigner(SECRET, environment="test").loads(raw_token(payload(**changes)))


def test_signed_payload_claiming_another_environment() -> None:
    # Same salt, but the payload names another environment: refused, never trusted.
    token = raw_token(payload(env="production"))
    with pytest.raises(WrongEnvironment):
        OverrideSigner(SECRET, environment="test").loads(token)


@pytest.mark.parametrize("secret", ["short", "x" * 31, ["x" * 40, "short"], []])
def test_short_secret_is_a_configuration_error(secret: str | list[str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        OverrideSigner(secret, environment="test")
    assert "secrets.token_urlsafe(32)" in str(caught.value)


def test_from_env() -> None:
    signer = OverrideSigner.from_env({"FEATUREFLAG_SECRET": f"{SECRET}, {OLD}"})
    assert signer.environment == "development"
    old = OverrideSigner(OLD, environment="development").dumps({"a": True}, sub="x")
    assert signer.loads(old).flags == {"a": True}
    qa = OverrideSigner.from_env({"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_ENVIRONMENT": "qa"})
    assert qa.environment == "qa"
    with pytest.raises(ConfigurationError) as caught:
        OverrideSigner.from_env({})
    assert "FEATUREFLAG_SECRET" in str(caught.value)


def test_cache_skips_verification_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = OverrideSigner(SECRET, environment="test")
    token = signer.dumps({"a": True}, sub="x")
    calls: list[str] = []
    verify = signer._verify

    def counting(t: str) -> object:
        calls.append(t)
        return verify(t)

    monkeypatch.setattr(signer, "_verify", counting)
    for _ in range(3):
        signer.loads(token)
    assert calls == [token]
    for i in range(CACHE_SIZE + 10):
        signer.loads(signer.dumps({"a": True}, sub=str(i)))
    assert len(signer._cache) == CACHE_SIZE


def test_refusals_are_cached_and_raised_fresh() -> None:
    signer = OverrideSigner(SECRET, environment="test")
    errors = []
    for _ in range(2):
        with pytest.raises(BadSignature) as caught:
            signer.loads("abc.def.ghi")
        errors.append(caught.value)
    assert errors[0] is not errors[1]
    assert errors[1].__context__ is None


def test_sign_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FEATUREFLAG_SECRET", SECRET)
    monkeypatch.setenv("FEATUREFLAG_ENVIRONMENT", "qa")
    monkeypatch.setenv("USER", "ana")
    argv = ["--flag", "SomeNewFeature.is_released=true", "--flag", "new-lp=b", "--flag", "x=False"]
    assert sign_main(argv) == 0
    token = capsys.readouterr().out.strip()
    verified = OverrideSigner(SECRET, environment="qa").loads(token)
    assert verified.flags == {"SomeNewFeature.is_released": True, "new-lp": "b", "x": "False"}
    assert verified.sub == "ana"
    assert verified.origin == "cli"


def test_sign_main_explains_problems(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FEATUREFLAG_SECRET", raising=False)
    assert sign_main(["--flag", "a=true"]) == 2
    assert "FEATUREFLAG_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("FEATUREFLAG_SECRET", SECRET)
    assert sign_main(["--flag", "has space=true"]) == 2
    assert "Invalid flag name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sign_main(["--flag", "no-equals-sign"])
    assert "NAME=VALUE" in capsys.readouterr().err


def test_python_m_featureflag_sign() -> None:
    env = {**os.environ, "FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_ENVIRONMENT": "qa"}
    done = subprocess.run(
        [sys.executable, "-m", "featureflag", "sign", "--flag", "new-lp=b", "--ttl", "60"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert OverrideSigner(SECRET, environment="qa").loads(done.stdout.strip()).flags == {
        "new-lp": "b"
    }


def test_signed_but_unreadable_payload_is_malformed() -> None:
    # Only a holder of the secret can make one; still a refusal, never a crash.
    signer = itsdangerous.TimestampSigner(SECRET, salt="featureflag.overrides/test")
    token = signer.sign(b"bm90anNvbg").decode()  # base64 of "notjson"
    with pytest.raises(MalformedToken):
        OverrideSigner(SECRET, environment="test").loads(token)


# -- the expiry without a round trip, the check without signing, the one wording --------


@pytest.mark.parametrize("cap", [None, 50.0, 3600.0, 7200.0])
@pytest.mark.parametrize("now", [1_800_000_000.0, 1_800_000_000.75, 1_800_000_123.4567])
def test_dumps_with_expiry_says_what_loads_will_say(cap: float | None, now: float) -> None:
    clock = Clock(now)
    signer = OverrideSigner(SECRET, environment="test", max_age_cap=cap, clock=clock)
    token, expires_at = signer.dumps_with_expiry({"A.b": True}, sub="ana", ttl=3600)
    assert expires_at == signer.loads(token).expires_at
    expected = round(now + min(3600, cap or 3600), 3)
    if cap is not None:
        expected = min(expected, int(now) + cap)  # the cap counts from the whole second
    assert expires_at == expected


def test_dumps_is_dumps_with_expiry_without_the_expiry() -> None:
    signer = OverrideSigner(SECRET, environment="test", clock=Clock())
    token, _ = signer.dumps_with_expiry({"A.b": "x"}, sub="ana", origin="cli", ttl=60)
    assert signer.dumps({"A.b": "x"}, sub="ana", origin="cli", ttl=60) == token


def test_check_predicts_the_token_length_and_refuses_what_dumps_refuses() -> None:
    # Around the 4 KiB limit, compressible and not: check() and dumps() agree exactly.
    clock = Clock()
    signer = OverrideSigner(SECRET, environment="test", clock=clock)
    seen = {"fits": 0, "too-large": 0}
    for count in range(1, 200, 3):
        for flags in (
            {f"f{i}": os.urandom(24).hex() for i in range(count)},
            {f"Flag.number_{i}": i % 2 == 0 for i in range(count)},
        ):
            try:
                token = signer.dumps(flags, sub="fork:x", origin="fork:x")
            except TokenTooLarge:
                with pytest.raises(TokenTooLarge):
                    signer.check(flags, sub="fork:x", origin="fork:x")
                seen["too-large"] += 1
            else:
                assert signer.check(flags, sub="fork:x", origin="fork:x") == len(token)
                seen["fits"] += 1
    assert seen["fits"] and seen["too-large"]


def test_check_signs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = OverrideSigner(SECRET, environment="test")
    signer.check({"A.b": True}, sub="x")  # measures the signature length once

    def refuse(*args: object) -> bytes:
        raise AssertionError("check() computed a signature")

    monkeypatch.setattr(itsdangerous.Signer, "get_signature", refuse)
    assert signer.check({"A.b": True, "c": "d"}, sub="x") > 0
    with pytest.raises(InvalidOverride):
        signer.check({"A.b": 3}, sub="x")  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("name", "value", "declared", "words"),
    [
        ("has space", True, {}, "Invalid flag name"),
        ("A.b", 3, {}, "the override 3 is a int; send true, false or a string."),
        ("A.b", "x" * 1025, {}, "longer than 1024 bytes"),
        ("A.b", "on", {"type": "bool"}, "Flag 'A.b' is declared `-> bool` but the override is"),
        ("A.b", True, {"type": "str"}, "is declared `-> str` but the override is bool True"),
        ("A.b", "c", {"type": "str", "choices": ["a", "b"]}, "accepts only 'a', 'b'"),
    ],
)
def test_override_problem_is_the_one_wording(
    name: str, value: object, declared: dict[str, Any], words: str
) -> None:
    problem = override_problem(name, value, **declared)
    assert problem is not None and words in problem
    if not declared:
        with pytest.raises(InvalidOverride) as caught:
            check_flags({name: value})
        assert str(caught.value) == problem


@pytest.mark.parametrize(
    ("value", "declared"),
    [(True, {}), ("x", {}), (False, {"type": "bool"}), ("b", {"type": "str", "choices": ["b"]})],
)
def test_override_problem_accepts_what_fits(value: object, declared: dict[str, Any]) -> None:
    assert override_problem("A.b", value, **declared) is None


def test_the_middleware_rejects_a_wrong_type_in_the_same_words() -> None:
    # featureflag's own evaluation refuses an override with override_problem's sentence.
    from featureflag._registry import Flag

    flag = Flag("A.b", kind="trap", type="bool")
    assert flag.problem("on") == override_problem("A.b", "on", type="bool")


# --- the routes claim (forks of microservices) ---------------------------------------

ROUTES = {"recommendations": "http://recs-pr-12.preview.svc.cluster.local:8080/v2"}


def test_routes_travel_in_the_token() -> None:
    signer = OverrideSigner(SECRET, environment="test")
    token = signer.dumps({"a": True}, sub="ci", routes=ROUTES)
    verified = signer.loads(token)
    assert verified.routes == ROUTES
    assert verified.route_problems == {}
    assert verified.flags == {"a": True}


def test_a_token_without_routes_has_no_claim_and_no_routes() -> None:
    signer = OverrideSigner(SECRET, environment="test")
    token = signer.dumps({"a": True}, sub="ci")
    assert "routes" not in itsdangerous.URLSafeTimedSerializer(
        SECRET, salt="featureflag.overrides/test"
    ).loads(token)
    assert signer.loads(token).routes == {}


def test_the_cap_keeps_the_routes() -> None:
    signer = OverrideSigner(SECRET, environment="test", max_age_cap=10)
    verified = signer.loads(signer.dumps({}, sub="ci", ttl=3600, routes=ROUTES))
    assert verified.routes == ROUTES


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({"recommendations": "ftp://recs.internal"}, "routes.recommendations: a route is"),
        ({"recommendations": "http://u:p@recs.internal"}, "no user, password"),
        ({"recommendations": "http://recs.internal?x=1"}, "query or fragment"),
        ({"recommendations": "http://recs。internal"}, "ASCII host"),
        ({"recommendations": "http://recs.internal:0"}, "a route is"),
        ({"recs/v2": "http://recs.internal"}, "a service name is"),
        ({"recommendations": 42}, "a route is"),
        ({f"s{i}": "http://recs.internal" for i in range(51)}, "the limit is 50"),
        (["http://recs.internal"], "routes: send an object"),
    ],
)
def test_a_malformed_route_is_refused_when_signing(routes: object, message: str) -> None:
    signer = OverrideSigner(SECRET, environment="test")
    with pytest.raises(MalformedToken) as caught:
        signer.dumps({}, sub="ci", routes=routes)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_a_malformed_route_in_a_signed_token_is_dropped_and_reported() -> None:
    # Signed with the secret (a buggy service), so only the claim's shape protects us.
    payload = {
        "v": 1,
        "env": "test",
        "flags": {"a": True},
        "sub": "ci",
        "origin": "fork:pr-1",
        "exp": 4102444800,
        "routes": {"good": "http://127.0.0.1:8080", "bad": "http://a@evil.example"},
    }
    verified = OverrideSigner(SECRET, environment="test").loads(raw_token(payload))
    assert verified.flags == {"a": True}  # the flags still apply
    assert verified.routes == {"good": "http://127.0.0.1:8080"}
    assert list(verified.route_problems) == ["bad"]
    assert "no user, password" in verified.route_problems["bad"]


def test_a_routes_claim_that_is_not_an_object_is_dropped_whole() -> None:
    payload = {"v": 1, "env": "test", "flags": {}, "sub": "ci", "origin": "x", "exp": 4102444800}
    verified = OverrideSigner(SECRET, environment="test").loads(
        raw_token({**payload, "routes": ["http://127.0.0.1"]})
    )
    assert verified.routes == {}
    assert list(verified.route_problems) == ["*"]


# Issue 17, item 2: a lone surrogate (a JSON "\ud800" escape without its other half)
# used to escape as UnicodeEncodeError from dumps/check/override_problem (a 500 in the
# service). Each place a string enters a token now refuses it with a TokenError.

_LONE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_WITH_LONE = st.tuples(st.text(max_size=20), _LONE, st.text(max_size=20)).map("".join)


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"flags": {"x": "\ud800"}}, InvalidOverride, "Flag 'x': the override '\\ud800'"),
        ({"flags": {"x": "ok \udc00 ok"}}, InvalidOverride, "U+DC00 at position 3"),
        ({"flags": {"x\ud800": True}}, InvalidOverride, "lone surrogates"),
        ({"flags": {"x": True}, "sub": "ana\ud800"}, MalformedToken, "sub 'ana\\ud800'"),
        ({"flags": {"x": True}, "origin": "\udfff"}, MalformedToken, "origin '\\udfff'"),
        ({"flags": {"x": True}, "routes": {"a": "http://h\ud800"}}, MalformedToken, "routes.a"),
        ({"flags": {"x": True}, "routes": {"a\ud800": "http://h"}}, MalformedToken, "routes."),
    ],
)
def test_a_lone_surrogate_is_a_token_error_naming_the_fix(
    arguments: dict[str, Any], error: type[Exception], words: str
) -> None:
    signer = OverrideSigner(SECRET, environment="test")
    arguments = {"sub": "ana", **arguments}
    flags = arguments.pop("flags")
    for method in (signer.dumps, signer.dumps_with_expiry, signer.check):
        with pytest.raises(error) as caught:
            method(flags, **arguments)
        assert words in str(caught.value)
        # The message itself can go into a JSON body or a log line.
        str(caught.value).encode()


@settings(max_examples=200, deadline=None)
@given(_WITH_LONE)
def test_any_lone_surrogate_is_a_problem_never_an_encode_error(text: str) -> None:
    signer = OverrideSigner(SECRET, environment="test")
    assert override_problem("flag", text) is not None
    assert override_problem(text, True) is not None
    assert override_problem(text, "x", type="string") is not None
    for flags in ({"flag": text}, {text: "x"}):
        with pytest.raises(InvalidOverride):
            check_flags(flags)
        with pytest.raises(InvalidOverride):
            signer.check(flags, sub="ana")
        with pytest.raises(InvalidOverride):
            signer.dumps(flags, sub="ana")
    for claim in ("sub", "origin"):
        with pytest.raises(MalformedToken):
            signer.dumps({"x": True}, **{"sub": "ana", claim: text})


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_valid_text_still_signs(text: str) -> None:
    # Well-formed Unicode (hypothesis leaves surrogates out of text()) is untouched.
    signer = OverrideSigner(SECRET, environment="test")
    assert signer.loads(signer.dumps({"flag": text}, sub=text, origin=text)).flags == {"flag": text}


def test_a_surrogate_pair_written_as_two_escapes_is_one_character() -> None:
    # What a browser sends for an emoji: JSON joins the halves; only a lone half fails.
    emoji = json.loads('"\\ud83d\\ude00"')
    assert override_problem("flag", emoji) is None
    assert override_problem("flag", json.loads('"\\ud83d"')) is not None


@pytest.mark.parametrize(
    "changes",
    [
        {"flags": {"A.b": "\ud800"}},
        {"flags": {"\udc00": True}},
        {"sub": "\ud800"},
        {"origin": "fork:\udc00"},
    ],
)
def test_a_signed_token_carrying_a_lone_surrogate_is_refused(changes: dict[str, object]) -> None:
    # Signed by whoever holds the secret (another SDK, a service without the fix):
    # json.dumps escapes the surrogate as \ud800, so it signs; loads must refuse it
    # rather than hand app code a string that crashes whatever encodes it.
    serializer = itsdangerous.URLSafeTimedSerializer(
        SECRET, salt="featureflag.overrides/test", serializer=json
    )
    token = str(serializer.dumps(payload(**changes)))
    signer = OverrideSigner(SECRET, environment="test")
    with pytest.raises(MalformedToken):
        signer.loads(token)


def test_a_secret_or_environment_with_a_lone_surrogate_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not valid text"):
        OverrideSigner("s" * 40 + "\ud800", environment="test")
    with pytest.raises(ConfigurationError, match="lone surrogate"):
        OverrideSigner(SECRET, environment="qa\ud800")


def test_capped_lowers_the_cap_on_a_copy_with_its_own_cache() -> None:
    # Issue 17, item 15: what the middleware's max_token_age uses.
    clock = Clock()
    signer = OverrideSigner(SECRET, environment="test", clock=clock)
    token = signer.dumps({"a": True}, sub="x", ttl=30 * 86400)
    assert signer.loads(token).expires_at == clock.now + 30 * 86400  # cached uncapped
    capped = signer.capped(100)
    assert capped is not signer and capped.max_age_cap == 100 and signer.max_age_cap is None
    assert capped.loads(token).expires_at == clock.now + 100
    assert capped.capped(500) is capped  # already stricter
    assert capped.capped(50).max_age_cap == 50
    assert signer.capped(float("inf")) is signer
    clock.now += 100
    with pytest.raises(TokenExpired, match="at most 100 s after signing"):
        capped.loads(token)
    assert signer.loads(token).flags == {"a": True}
