"""Sign-in on a real migrated SQLite: argon2 hashes, throttling and expiry on a fake clock, sessions that die when
the user is disabled or the password changes, API tokens, the first-start admin link, and no secret in any log."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import helpers
import pytest
from argon2 import PasswordHasher, profiles
from sqlalchemy import select

from backend.services.audit import AuditQuery
from backend.services.auth import (
    AuthService,
    InvalidCredentials,
    PasswordPolicyError,
    SignInThrottle,
    SignInThrottled,
    ThrottlePolicy,
)
from backend.settings import Settings
from storage.db import make_session_factory
from storage.errors import ConflictError, InvalidNameError, NotFoundError
from storage.models import ApiToken, Role, User

SECRET = b"s" * 32
PASSWORD = "correct horse battery"
TYPO = "my-Secret-pw-as-name"


@pytest.fixture
def sf(tmp_path):
    engine = helpers.migrated_engine(helpers.db_url(tmp_path))
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def auth(sf, clock) -> AuthService:
    # The cheapest argon2 parameters keep the suite fast; the real default is checked in test_default_hasher_is_argon2id
    fast = PasswordHasher.from_parameters(profiles.CHEAPEST)
    return AuthService(sf, secret=SECRET, session_ttl_s=600, link_ttl_s=300, clock=clock, hasher=fast)


@pytest.fixture
def alice(auth):
    return auth.users.add("alice", Role.OPERATOR, PASSWORD, actor="root", address="10.0.0.1")


def events(auth, **filters) -> list:
    return auth.audit.query(AuditQuery(**filters))[0]


# -- users and passwords -------------------------------------------------------------------------------------------
def test_default_hasher_is_argon2id(sf):
    auth = AuthService(sf, secret=SECRET)
    auth.users.add("bob", "engineer", PASSWORD, actor=None)
    with sf() as s:
        stored = s.scalar(select(User.password_hash).where(User.name == "bob"))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert auth.users.authenticate("bob", PASSWORD).name == "bob"


def test_authenticate_right_and_wrong_password(auth, alice, clock):
    assert alice.role is Role.OPERATOR and alice.active and alice.has_password and alice.last_sign_in_at is None
    clock.advance(5)
    user = auth.users.authenticate("alice", PASSWORD, address="10.0.0.2")
    assert user.name == "alice" and user.last_sign_in_at.timestamp() == clock()
    with pytest.raises(InvalidCredentials):
        auth.users.authenticate("alice", PASSWORD + "!", address="10.0.0.2")
    with pytest.raises(InvalidCredentials):
        auth.users.authenticate("nobody", PASSWORD, address="10.0.0.2")
    (failed_unknown, failed_alice, signed_in, added) = events(auth)
    assert (added.action, added.actor, added.object_id, added.detail) == (
        "user.add",
        "root",
        "alice",
        {"role": "operator"},
    )
    assert (signed_in.action, signed_in.actor, signed_in.address) == ("auth.sign_in", "alice", "10.0.0.2")
    assert (failed_alice.action, failed_alice.actor, failed_alice.object_id) == ("auth.sign_in_failed", None, "alice")
    assert failed_alice.detail["reason"] == "wrong_password"
    # an unknown name is not kept: it may be a password typed into the wrong field
    assert failed_unknown.object_id is None and failed_unknown.detail["reason"] == "unknown_user"


def test_disabled_user_is_refused_with_the_same_answer(auth, alice):
    auth.users.disable("alice", actor="root")
    with pytest.raises(InvalidCredentials, match="wrong name or password"):
        auth.users.authenticate("alice", PASSWORD)
    assert events(auth, action="auth.sign_in_failed")[0].detail["reason"] == "disabled"
    auth.users.enable("alice", actor="root")
    assert auth.users.authenticate("alice", PASSWORD).active


def test_user_without_password_cannot_sign_in_with_one(auth):
    auth.users.add("carol", Role.MANAGER, None, actor="root")
    with pytest.raises(InvalidCredentials):
        auth.users.authenticate("carol", "")
    with pytest.raises(InvalidCredentials):
        auth.users.authenticate("carol", "anything-at-all")


def test_names_and_passwords_are_checked(auth, alice):
    with pytest.raises(ConflictError):
        auth.users.add("Alice", Role.ADMIN, PASSWORD, actor=None)  # same name ignoring case
    with pytest.raises(InvalidNameError):
        auth.users.add("bad name", Role.ADMIN, PASSWORD, actor=None)
    with pytest.raises(PasswordPolicyError):
        auth.users.add("dave", Role.ADMIN, "short", actor=None)
    with pytest.raises(ValueError):
        auth.users.add("dave", "superuser", PASSWORD, actor=None)
    for name, password in (("x" * 100_000, PASSWORD), ("alice", "p" * 100_000), (None, None), (3, [PASSWORD])):
        with pytest.raises(InvalidCredentials):
            auth.users.authenticate(name, password)
    with pytest.raises(NotFoundError):
        auth.users.disable("nobody", actor=None)
    assert [u.name for u in auth.users.list()] == ["alice"]


def test_last_active_admin_stays(auth):
    auth.users.add("root", Role.ADMIN, PASSWORD, actor=None)
    with pytest.raises(ConflictError, match="last active admin"):
        auth.users.disable("root", actor="root")
    with pytest.raises(ConflictError, match="last active admin"):
        auth.users.set_role("root", Role.ENGINEER, actor="root")
    auth.users.add("second", Role.ADMIN, PASSWORD, actor="root")
    assert not auth.users.disable("root", actor="second").active
    with pytest.raises(ConflictError):  # root is disabled: second is now the last active admin
        auth.users.set_role("second", Role.ENGINEER, actor="second")
    auth.users.enable("root", actor="second")
    assert auth.users.set_role("second", "engineer", actor="root").role is Role.ENGINEER


# -- throttling ----------------------------------------------------------------------------------------------------
def test_five_failures_lock_the_name_for_a_growing_delay(auth, alice, clock):
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            auth.users.authenticate("alice", "wrong-password", address="10.0.0.9")
    with pytest.raises(SignInThrottled) as locked:  # even the right password is not checked while locked
        auth.users.authenticate("alice", PASSWORD, address="10.0.0.3")
    assert locked.value.retry_after_s == 30
    clock.advance(29)
    with pytest.raises(SignInThrottled):
        auth.users.authenticate("alice", PASSWORD)
    clock.advance(1.5)
    with pytest.raises(InvalidCredentials):  # one more failure after the lock: locked again, twice as long
        auth.users.authenticate("alice", "wrong-password")
    with pytest.raises(SignInThrottled) as locked:
        auth.users.authenticate("alice", PASSWORD)
    assert locked.value.retry_after_s == 60
    clock.advance(61)
    assert auth.users.authenticate("alice", PASSWORD).name == "alice"  # success clears the name's count
    with pytest.raises(InvalidCredentials):
        auth.users.authenticate("alice", "wrong-password")
    assert auth.users.authenticate("alice", PASSWORD).name == "alice"
    assert len(events(auth, action="auth.sign_in_failed", limit=1000)) == 7  # throttled refusals are not rows


def test_failures_outside_the_window_do_not_add_up(clock):
    throttle = SignInThrottle(clock)
    for _ in range(4):
        throttle.failed("alice", "a")
    clock.advance(301)
    for _ in range(4):
        throttle.failed("alice", "a")
    assert throttle.retry_after("alice", "a") == 0
    throttle.failed("alice", "a")
    assert throttle.retry_after("alice", "a") == 30


def test_delay_doubles_up_to_the_cap_and_is_forgotten_after_quiet(clock):
    policy = ThrottlePolicy(max_failures=1, base_delay_s=30, max_delay_s=100, forget_s=3600)
    throttle = SignInThrottle(clock, per_name=policy)
    delays = []
    for _ in range(4):
        throttle.failed("alice", None)
        delays.append(throttle.retry_after("alice", None))
        clock.advance(delays[-1])
    assert delays == [30, 60, 100, 100]
    clock.advance(3601)
    throttle.failed("alice", None)
    assert throttle.retry_after("alice", None) == 30


def test_one_address_guessing_many_names_is_locked(auth, alice):
    for i in range(20):
        with pytest.raises(InvalidCredentials):
            auth.users.authenticate(f"guess{i}", "x" * 8, address="203.0.113.7")
    with pytest.raises(SignInThrottled):
        auth.users.authenticate("alice", PASSWORD, address="203.0.113.7")
    assert auth.users.authenticate("alice", PASSWORD, address="10.0.0.2").name == "alice"  # other addresses may


# -- sessions ------------------------------------------------------------------------------------------------------
def test_session_round_trip_tamper_and_expiry(auth, alice, clock, sf):
    cookie = auth.sessions.issue(alice)
    assert auth.sessions.resolve(cookie).name == "alice"
    uid, epoch, expires, mac = cookie.split(".")
    for forged in (
        f"{uid}.{epoch}.{int(expires) + 10_000}.{mac}",  # a later expiry
        f"{int(uid) + 1}.{epoch}.{expires}.{mac}",  # someone else
        cookie[:-1] + ("A" if cookie[-1] != "A" else "B"),
        "",
        "1.1.1",
        None,
        "x" * 5000,
    ):
        assert auth.sessions.resolve(forged) is None, forged
    other_secret = AuthService(sf, secret=b"t" * 32, clock=clock).sessions
    assert other_secret.resolve(cookie) is None
    clock.advance(599)
    assert auth.sessions.resolve(cookie) is not None
    clock.advance(1)
    assert auth.sessions.resolve(cookie) is None  # expired at issue + ttl


def test_disable_and_reset_end_sessions_at_once(auth, alice):
    cookie = auth.sessions.issue(alice)
    assert auth.sessions.resolve(cookie).name == "alice"  # now remembered in the credential cache
    auth.users.disable("alice", actor="root")
    assert auth.sessions.resolve(cookie) is None
    auth.users.enable("alice", actor="root")
    assert auth.sessions.resolve(cookie) is None  # enabling again does not revive old sessions
    fresh = auth.sessions.issue(auth.users.authenticate("alice", PASSWORD))
    assert auth.sessions.resolve(fresh).name == "alice" and auth.sessions.resolve(fresh).name == "alice"
    auth.users.reset_password("alice", "a brand new password", actor="root")
    assert auth.sessions.resolve(fresh) is None
    with pytest.raises(InvalidCredentials):
        auth.users.authenticate("alice", PASSWORD)
    assert auth.users.authenticate("alice", "a brand new password").name == "alice"
    assert [e.action for e in events(auth, object_type="user", actor="root")] == [
        "user.reset_password",
        "user.enable",
        "user.disable",
        "user.add",
    ]


def test_role_change_shows_on_the_next_request(auth, alice):
    cookie = auth.sessions.issue(alice)
    assert auth.sessions.resolve(cookie).role is Role.OPERATOR
    auth.users.set_role("alice", Role.ENGINEER, actor="root")
    assert auth.sessions.resolve(cookie).role is Role.ENGINEER


def test_csrf_token_is_bound_to_its_session(auth, alice):
    mine, other = (
        auth.sessions.issue(alice),
        auth.sessions.issue(auth.users.add("bob", "operator", PASSWORD, actor=None)),
    )
    token = auth.sessions.csrf_token(mine)
    assert auth.sessions.check_csrf(mine, token)
    assert not auth.sessions.check_csrf(other, token)
    assert not auth.sessions.check_csrf(mine, None) and not auth.sessions.check_csrf(None, token)
    assert not auth.sessions.check_csrf(mine, mine.rsplit(".", 1)[1])  # the session's own MAC is not its CSRF token


# -- API tokens ----------------------------------------------------------------------------------------------------
def test_api_token_create_use_revoke(auth, alice, sf, clock):
    secret, info = auth.tokens.create("alice", "ci", actor="alice", address="10.0.0.4")
    assert secret.startswith("vla_") and info.user == "alice" and info.last_used_at is None
    with sf() as s:
        (row,) = s.scalars(select(ApiToken)).all()
        assert row.token_hash != secret and secret not in row.token_hash and len(row.token_hash) == 64
    clock.advance(1)
    assert auth.tokens.resolve(secret).name == "alice"
    assert auth.tokens.list("alice")[0].last_used_at.timestamp() == clock()
    assert auth.tokens.resolve(secret[:-1] + "x") is None and auth.tokens.resolve("vla_") is None
    assert auth.tokens.resolve(None) is None

    with pytest.raises(NotFoundError):  # a user may revoke only their own
        auth.tokens.revoke(info.id, actor="bob", owner="bob")
    revoked = auth.tokens.revoke(info.id, actor="alice", owner="alice")
    assert revoked.revoked_at is not None and auth.tokens.resolve(secret) is None
    assert auth.tokens.revoke(info.id, actor="alice").revoked_at == revoked.revoked_at  # idempotent
    assert [e.action for e in events(auth, object_type="api_token")] == ["token.revoke", "token.create"]


def test_api_token_of_a_disabled_user_stops_working(auth, alice):
    secret, _ = auth.tokens.create("alice", "script", actor="root")
    assert auth.tokens.resolve(secret).name == "alice"
    auth.users.disable("alice", actor="root")
    assert auth.tokens.resolve(secret) is None
    auth.users.enable("alice", actor="root")
    assert auth.tokens.resolve(secret).name == "alice"


def test_another_process_s_change_takes_effect_within_the_cache_ttl(auth, alice, sf, clock):
    """The users CLI is another process with its own AuthService: this one learns of its change when the resolved
    identity expires (CREDENTIAL_TTL_S), not before, and a burst of requests in between costs no lookup."""
    cookie = auth.sessions.issue(alice)
    secret, _ = auth.tokens.create("alice", "script", actor="alice")
    assert auth.sessions.resolve(cookie).name == "alice" and auth.tokens.resolve(secret).name == "alice"
    cli = AuthService(sf, secret=SECRET, clock=clock, hasher=auth.users._hasher)
    cli.users.disable("alice", actor="root")
    assert auth.sessions.resolve(cookie).name == "alice"  # still the remembered identity
    clock.advance(auth.credentials.ttl_s)
    assert auth.sessions.resolve(cookie) is None and auth.tokens.resolve(secret) is None
    assert len(auth.credentials) == 0  # refusals are not remembered


def test_credential_cache_is_bounded(clock):
    from backend.services.credential_cache import CredentialCache

    cache = CredentialCache(clock, ttl_s=5, max_entries=3)
    for i in range(3):
        cache.put(f"k{i}", i)
    assert cache.get("k2") == 2 and len(cache) == 3
    cache.put("k3", 3)  # full: it starts over rather than grow
    assert len(cache) == 1 and cache.get("k0") is None and cache.get("k3") == 3
    clock.advance(5)
    assert cache.get("k3") is None
    assert CredentialCache(clock, ttl_s=0).put("x", 1) is None and len(CredentialCache(clock, ttl_s=0)) == 0


# -- first start -----------------------------------------------------------------------------------------------------
def test_first_start_admin_link_is_single_use(auth, clock):
    link = auth.users.ensure_admin()
    assert link is not None and link.user == "admin"
    (admin,) = auth.users.list()
    assert admin.role is Role.ADMIN and not admin.has_password
    user = auth.users.redeem_sign_in_link(link.secret, address="127.0.0.1")
    assert user.name == "admin" and user.last_sign_in_at is not None
    with pytest.raises(InvalidCredentials):
        auth.users.redeem_sign_in_link(link.secret)  # used
    assert auth.users.ensure_admin() is None  # claimed: no more links
    signed_in = events(auth, action="auth.sign_in")[0]
    assert (signed_in.actor, signed_in.detail) == ("admin", {"via": "link"})
    assert events(auth, action="auth.sign_in_failed")[0].detail == {"via": "link", "reason": "bad_link"}


def test_unclaimed_admin_gets_a_fresh_link_each_start_and_links_expire(auth, clock):
    first = auth.users.ensure_admin()
    second = auth.users.ensure_admin()  # the server restarted before anyone clicked
    assert second.secret != first.secret and len(auth.users.list()) == 1
    with pytest.raises(InvalidCredentials):
        auth.users.redeem_sign_in_link(first.secret)
    clock.advance(300)
    with pytest.raises(InvalidCredentials):
        auth.users.redeem_sign_in_link(second.secret)  # expired
    third = auth.users.ensure_admin()
    assert auth.users.redeem_sign_in_link(third.secret).name == "admin"


def test_no_link_when_users_exist(auth, alice):
    assert auth.users.ensure_admin() is None
    assert [u.name for u in auth.users.list()] == ["alice"]


# -- secrets never in logs -------------------------------------------------------------------------------------------
def test_no_password_or_token_in_any_log(auth, caplog):
    caplog.set_level(logging.DEBUG)  # every logger...
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # ...SQLAlchemy's statements and parameters included
    link = auth.users.ensure_admin()
    auth.users.redeem_sign_in_link(link.secret, address="127.0.0.1")
    auth.users.add("alice", Role.OPERATOR, PASSWORD, actor="admin")
    auth.users.authenticate("alice", PASSWORD, address="10.0.0.1")
    for wrong in ("wrong password 1", "wrong password 2"):
        with pytest.raises(InvalidCredentials):
            auth.users.authenticate("alice", wrong)
    with pytest.raises(InvalidCredentials):
        auth.users.authenticate(TYPO, TYPO)  # a password typed into the name field
    new_password = "another secret pw"
    auth.users.reset_password("alice", new_password, actor="admin")
    cookie = auth.sessions.issue(auth.users.authenticate("alice", new_password))
    auth.sessions.resolve(cookie)
    token, info = auth.tokens.create("alice", "ci", actor="alice")
    auth.tokens.resolve(token)
    auth.tokens.revoke(info.id, actor="alice")

    text = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "INSERT INTO users" in text and "signed in" in text  # the capture saw SQL and our own messages
    for secret in (PASSWORD, "wrong password 1", "wrong password 2", new_password, token, link.secret, cookie):
        assert secret not in text
    # A password typed as the name reaches only the user lookup's SQL parameters (when SQL echo is on), never our
    # own messages nor the audit log.
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("sqlalchemy"))
    assert TYPO not in ours and all(TYPO not in repr(e) for e in events(auth, limit=1000))


# -- the secret key ----------------------------------------------------------------------------------------------------
def test_secret_key_file_is_made_once_with_mode_0600(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data")
    key = settings.session_secret()
    path = tmp_path / "data" / "secret_key"
    assert len(key) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Settings(data_dir=tmp_path / "data").session_secret() == key  # a restart keeps sessions valid
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no temp file left
    given = Settings(data_dir=tmp_path / "other", secret_key="k" * 40)
    assert given.session_secret() == b"k" * 40 and not (tmp_path / "other").exists()
    path.write_text("short")
    with pytest.raises(ValueError, match="shorter than 32"):
        Settings(data_dir=tmp_path / "data").session_secret()
    with pytest.raises(ValueError):
        Settings(secret_key="too short")
