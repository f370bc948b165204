"""Sign-in: users with argon2 password hashes, throttled authentication, signed session tokens checked against the
database on every request, personal API tokens, and the first-start admin's one-time link.

What the web layer calls (identity always comes from here, never from a request body):

    auth = AuthService(store.session_factory, secret=settings.session_secret(), session_ttl_s=settings.session_ttl_s)
    link = auth.users.ensure_admin()                       # first start: print f"{base}/auth/link?secret={link.secret}"
    user = auth.users.redeem_sign_in_link(secret, address=ip)
    user = auth.users.authenticate(name, password, address=ip)   # InvalidCredentials, SignInThrottled
    cookie = auth.sessions.issue(user)                     # HttpOnly, SameSite cookie value; Max-Age = sessions.ttl_s
    user = auth.sessions.resolve(cookie)                   # on every request; None: signed out, expired or ended
    header = auth.sessions.csrf_token(cookie)              # for the page; check_csrf(cookie, header) on each write
    secret, token = auth.tokens.create("alice", "ci", actor="alice", address=ip)   # the secret is shown once
    user = auth.tokens.resolve(bearer)                     # None: unknown, revoked or its user disabled

A session is "user id . session epoch . expiry . HMAC". Disabling a user or changing the password bumps the
user's epoch in the database, so every session issued before fails resolve() on its next request. resolve() keeps
what it found for CREDENTIAL_TTL_S (credential_cache.py); this process's own changes clear that at once, another
process's (the users CLI) take effect within it. Nothing here
logs a password, a token or a link secret (tests/backend/test_auth.py captures every log record to check).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.services.audit import Action, AuditService
from backend.services.credential_cache import CREDENTIAL_TTL_S, CredentialCache
from storage.episode_meta import validate_name
from storage.errors import ConflictError, NotFoundError
from storage.models import NAME_MAX_LEN, ApiToken, Role, User

log = logging.getLogger(__name__)

Clock = Callable[[], float]  # seconds since the epoch (time.time); tests pass helpers.FakeClock
BOOTSTRAP_ADMIN = "admin"
MIN_PASSWORD_LEN = 8
MAX_PASSWORD_LEN = 1024  # argon2 takes any length; this only bounds the work one request can ask for
TOKEN_PREFIX = "vla_"  # API tokens: recognisable in a leaked file and distinct from a session cookie
TOKEN_TOUCH_S = 60.0  # last_used_at is written at most this often per token (not one write per request)


class AuthError(Exception):
    """Sign-in refused; the message is safe to show to the client."""


class InvalidCredentials(AuthError):
    """Unknown name, wrong password, disabled user or a used/expired link: one answer, so none of them leaks."""

    def __init__(self) -> None:
        super().__init__("wrong name or password")


class SignInThrottled(AuthError):
    """Too many failed sign-ins for this name or from this address; try again after retry_after_s."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = math.ceil(retry_after_s)
        super().__init__(f"too many failed sign-ins; try again in {self.retry_after_s} s")


class PasswordPolicyError(ValueError):
    """A new password that is too short or too long."""


@dataclass(frozen=True)
class UserInfo:
    """A user as the web layer sees it (no hash, no link)."""

    id: int
    name: str
    role: Role
    active: bool
    created_at: datetime
    last_sign_in_at: datetime | None
    has_password: bool
    session_epoch: int

    @classmethod
    def of(cls, u: User) -> UserInfo:
        return cls(
            u.id,
            u.name,
            u.role,
            u.active,
            u.created_at,
            u.last_sign_in_at,
            u.password_hash is not None,
            u.session_epoch,
        )


@dataclass(frozen=True)
class SignInLink:
    user: str
    secret: str  # shown once (printed as a URL); only its sha256 is stored
    expires_at: datetime


@dataclass(frozen=True)
class ApiTokenInfo:
    id: int
    user: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_LEN <= len(password) <= MAX_PASSWORD_LEN:
        raise PasswordPolicyError(f"a password needs {MIN_PASSWORD_LEN}-{MAX_PASSWORD_LEN} characters")
    return password


def _user_named(s: Session, name: str) -> User:
    user = s.scalar(select(User).where(User.name == name)) if isinstance(name, str) else None
    if user is None:
        raise NotFoundError(f"no user named {name!r}; `run.py users list` shows them")
    return user


def _keep_an_admin(s: Session, user: User, what: str) -> None:
    """Refuse to disable or demote the last active admin: nobody could administer users any more."""
    others = s.scalar(select(func.count(User.id)).where(User.role == Role.ADMIN, User.active, User.id != user.id))
    if user.role is Role.ADMIN and user.active and not others:
        raise ConflictError(f"{user.name!r} is the last active admin; {what} another admin first")


def generate_password() -> str:
    """A random password to hand out once (about 120 bits)."""
    return secrets.token_urlsafe(15)


# -- throttling --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ThrottlePolicy:
    """`max_failures` failures within `window_s` lock the key for `base_delay_s`; every further failure before the
    key has been quiet for `forget_s` locks it again for twice as long, up to `max_delay_s`."""

    max_failures: int = 5
    window_s: float = 300.0
    base_delay_s: float = 30.0
    max_delay_s: float = 900.0
    forget_s: float = 3600.0


@dataclass
class _KeyState:
    failures: deque[float] = field(default_factory=deque)
    strikes: int = 0  # locks since the key was last quiet for forget_s
    locked_until: float = 0.0
    last_failure: float = -math.inf


class _Limiter:
    MAX_KEYS = 10_000  # memory bound: a flood of invented names cannot grow the table without end

    def __init__(self, policy: ThrottlePolicy, clock: Clock) -> None:
        self.policy, self._clock = policy, clock
        self._keys: dict[str, _KeyState] = {}

    def retry_after(self, key: str) -> float:
        state = self._keys.get(key)
        return max(0.0, state.locked_until - self._clock()) if state else 0.0

    def failed(self, key: str) -> None:
        p, now = self.policy, self._clock()
        state = self._keys.setdefault(key, _KeyState())
        if now - state.last_failure > p.forget_s:
            state.strikes = 0
        state.last_failure = now
        state.failures.append(now)
        while state.failures and state.failures[0] <= now - p.window_s:
            state.failures.popleft()
        if state.strikes or len(state.failures) >= p.max_failures:
            state.strikes += 1
            state.locked_until = now + min(p.base_delay_s * 2 ** (state.strikes - 1), p.max_delay_s)
            state.failures.clear()
        if len(self._keys) > self.MAX_KEYS:
            self._prune(now)

    def forget(self, key: str) -> None:
        self._keys.pop(key, None)

    def _prune(self, now: float) -> None:
        stale = [k for k, s in self._keys.items() if now - s.last_failure > self.policy.forget_s]
        for k in stale or sorted(self._keys, key=lambda k: self._keys[k].last_failure)[: len(self._keys) // 2]:
            del self._keys[k]


class SignInThrottle:
    """Failed sign-ins counted per user name and per client address (in memory: a restart forgets them). An
    address gets more tries than a name, since a whole lab may share one NAT address."""

    def __init__(
        self,
        clock: Clock = time.time,
        per_name: ThrottlePolicy = ThrottlePolicy(),
        per_address: ThrottlePolicy = ThrottlePolicy(max_failures=20),
    ) -> None:
        self._name, self._address = _Limiter(per_name, clock), _Limiter(per_address, clock)

    def retry_after(self, name: str, address: str | None) -> float:
        """Seconds until this name and address may try again; 0 when they may now."""
        return max(self._name.retry_after(name), self._address.retry_after(address) if address else 0.0)

    def failed(self, name: str, address: str | None) -> None:
        self._name.failed(name)
        if address:
            self._address.failed(address)

    def succeeded(self, name: str) -> None:
        """A correct password clears the name's count (not the address's: one known account must not reset it)."""
        self._name.forget(name)


# -- users -------------------------------------------------------------------------------------------------------------
class UserService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        audit: AuditService,
        *,
        clock: Clock = time.time,
        hasher: PasswordHasher | None = None,
        throttle: SignInThrottle | None = None,
        link_ttl_s: float = 3600.0,
        credentials: CredentialCache | None = None,
    ) -> None:
        self._sf, self._audit, self._clock = session_factory, audit, clock
        self._credentials = credentials  # cleared on every change, so a disabled user is out at once
        self._hasher = hasher or PasswordHasher()
        self.throttle = throttle or SignInThrottle(clock)
        self.link_ttl_s = link_ttl_s
        # Verified against when the name is unknown, so a wrong name takes as long as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- administration (every change is audited in the same transaction) ------------------------------------------
    def add(
        self, name: str, role: Role | str, password: str | None, *, actor: str | None, address: str | None = None
    ) -> UserInfo:
        """A new active user; password None: no password sign-in until one is set (e.g. via a sign-in link)."""
        validate_name(name, "user name")
        role = Role(role)
        password_hash = None if password is None else self._hasher.hash(_check_password(password))
        try:
            with self._sf.begin() as s:
                clash = s.scalar(select(User.name).where(func.lower(User.name) == name.lower()))
                if clash is not None:
                    raise ConflictError(f"a user named {clash!r} exists already (names are compared ignoring case)")
                user = User(name=name, role=role, password_hash=password_hash, active=True, created_at=self._now())
                s.add(user)
                s.flush()
                self._audit.record(
                    actor, Action.USER_ADD, "user", name, address=address, detail={"role": role}, session=s
                )
                return UserInfo.of(user)
        except IntegrityError as error:  # a second add of the same name committed between our check and insert
            raise ConflictError(f"a user named {name!r} exists already") from error

    def list(self) -> list[UserInfo]:
        with self._sf() as s:
            return [UserInfo.of(u) for u in s.scalars(select(User).order_by(User.name))]

    def get(self, name: str) -> UserInfo:
        with self._sf() as s:
            return UserInfo.of(_user_named(s, name))

    def _change(
        self,
        name: str,
        action: Action,
        actor: str | None,
        address: str | None,
        apply: Callable[[Session, User], None],
        detail: dict | None = None,
    ) -> UserInfo:
        """Apply one change to the user and audit it, in one transaction."""
        with self._sf.begin() as s:
            user = _user_named(s, name)
            apply(s, user)
            self._audit.record(actor, action, "user", name, address=address, detail=detail, session=s)
            info = UserInfo.of(user)
        if self._credentials is not None:
            self._credentials.clear()
        return info

    def disable(self, name: str, *, actor: str | None, address: str | None = None) -> UserInfo:
        """Lock the user out; their sessions end at once (epoch bump) and their API tokens stop working."""

        def apply(s: Session, user: User) -> None:
            _keep_an_admin(s, user, "add or enable")
            user.active = False
            user.session_epoch += 1

        return self._change(name, Action.USER_DISABLE, actor, address, apply)

    def enable(self, name: str, *, actor: str | None, address: str | None = None) -> UserInfo:
        return self._change(name, Action.USER_ENABLE, actor, address, lambda s, user: setattr(user, "active", True))

    def reset_password(
        self, name: str, new_password: str, *, actor: str | None, address: str | None = None
    ) -> UserInfo:
        """Set a new password; every session of the user ends at once (API tokens stay: revoke them separately)."""
        password_hash = self._hasher.hash(_check_password(new_password))

        def apply(s: Session, user: User) -> None:
            user.password_hash = password_hash
            user.session_epoch += 1
            user.sign_in_link_hash = user.sign_in_link_expires_at = None

        return self._change(name, Action.USER_RESET_PASSWORD, actor, address, apply)

    def set_role(self, name: str, role: Role | str, *, actor: str | None, address: str | None = None) -> UserInfo:
        """Change the role; takes effect on the next request (roles are read from the database every time)."""
        role = Role(role)

        def apply(s: Session, user: User) -> None:
            if role is not Role.ADMIN:
                _keep_an_admin(s, user, "make")
            user.role = role

        return self._change(name, Action.USER_SET_ROLE, actor, address, apply, detail={"role": role})

    # -- sign-in -----------------------------------------------------------------------------------------------------
    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    def authenticate(self, name: str, password: str, *, address: str | None = None) -> UserInfo:
        """The user if `password` is theirs and they are active; else InvalidCredentials (audited), or
        SignInThrottled while this name or address is locked (not checked, not counted)."""
        # No name is longer than NAME_MAX_LEN: cutting one char past it keeps a long name unknown and the
        # throttle's keys small.
        name = name[: NAME_MAX_LEN + 1] if isinstance(name, str) else ""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LEN:
            password = ""
        wait = self.throttle.retry_after(name, address)
        if wait > 0:
            log.warning("sign-in refused from %s: throttled for %.0f s", address, wait)
            raise SignInThrottled(wait)
        info = None
        with self._sf.begin() as s:
            user = s.scalar(select(User).where(User.name == name))
            known = user is not None
            correct = self._verify(user.password_hash if user else None, password)
            if known and correct and user.active:
                if self._hasher.check_needs_rehash(user.password_hash):
                    user.password_hash = self._hasher.hash(password)  # new hasher parameters take effect
                user.last_sign_in_at = self._now()
                via = {"via": "password"}
                self._audit.record(name, Action.SIGN_IN, "user", name, address=address, detail=via, session=s)
                info = UserInfo.of(user)
        if info is not None:
            self.throttle.succeeded(name)
            log.info("user %r signed in from %s", name, address)
            return info
        self.throttle.failed(name, address)
        # The attempted name is kept only when it is a user's: an unknown name may be a password typed a field early.
        reason = "disabled" if correct else ("wrong_password" if known else "unknown_user")
        target = ("user", name) if known else (None, None)
        detail = {"via": "password", "reason": reason}
        self._audit.record(None, Action.SIGN_IN_FAILED, *target, address=address, detail=detail)
        log.warning("failed sign-in (%s) from %s", reason, address)
        raise InvalidCredentials()

    def issue_sign_in_link(self, name: str, *, actor: str | None, address: str | None = None) -> SignInLink:
        """A one-time sign-in secret for the user (replaces any earlier one), valid for link_ttl_s."""
        secret = secrets.token_urlsafe(32)
        expires_at = self._now() + timedelta(seconds=self.link_ttl_s)
        with self._sf.begin() as s:
            user = _user_named(s, name)
            user.sign_in_link_hash, user.sign_in_link_expires_at = _sha256(secret), expires_at
        return SignInLink(name, secret, expires_at)

    def redeem_sign_in_link(self, secret: str, *, address: str | None = None) -> UserInfo:
        """Sign in with a link secret: once only, before it expires, for an active user; else InvalidCredentials."""
        digest = _sha256(secret) if isinstance(secret, str) else ""
        now = self._now()
        with self._sf.begin() as s:
            # A conditional UPDATE: of two requests racing with the same secret exactly one matches a row.
            user_id = s.scalar(
                update(User)
                .where(User.sign_in_link_hash == digest, User.sign_in_link_expires_at > now, User.active)
                .values(sign_in_link_hash=None, sign_in_link_expires_at=None, last_sign_in_at=now)
                .returning(User.id)
            )
            if user_id is not None:
                user = s.get(User, user_id, populate_existing=True)
                via = {"via": "link"}
                self._audit.record(user.name, Action.SIGN_IN, "user", user.name, address=address, detail=via, session=s)
                return UserInfo.of(user)
        self._audit.record(None, Action.SIGN_IN_FAILED, address=address, detail={"via": "link", "reason": "bad_link"})
        log.warning("failed sign-in (unknown, used or expired link) from %s", address)
        raise InvalidCredentials()

    def ensure_admin(self) -> SignInLink | None:
        """First start: with no users, create `admin` (no password) and return a one-time link for it. While that
        admin has neither signed in nor got a password, every start returns a fresh link (the old one dies)."""
        with self._sf() as s:
            empty = not s.scalar(select(func.count(User.id)))
        if empty:
            try:
                with self._sf.begin() as s:
                    s.add(User(name=BOOTSTRAP_ADMIN, role=Role.ADMIN, active=True, created_at=self._now()))
                    s.flush()
                    detail = {"role": Role.ADMIN, "via": "first start"}
                    self._audit.record(None, Action.USER_ADD, "user", BOOTSTRAP_ADMIN, detail=detail, session=s)
            except IntegrityError:
                pass  # another process starting at the same moment made it
        with self._sf() as s:
            admin = s.scalar(select(User).where(User.name == BOOTSTRAP_ADMIN))
            if admin is None or not admin.active or admin.password_hash is not None or admin.last_sign_in_at:
                return None
        return self.issue_sign_in_link(BOOTSTRAP_ADMIN, actor=None)


# -- sessions ----------------------------------------------------------------------------------------------------------
_SESSION_RE = re.compile(r"(\d{1,18})\.(\d{1,18})\.(\d{1,18})\.([A-Za-z0-9_-]{43})")


def _derive(secret: bytes, purpose: bytes) -> bytes:
    """One key per purpose from the one secret, so a session MAC can never pass as a CSRF token or the reverse."""
    return hmac.new(secret, b"vla-dashboard " + purpose, hashlib.sha256).digest()


def _mac(key: bytes, message: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, message.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()


class SessionService:
    """Stateless signed session tokens; resolve() checks the user's active flag and epoch in the database."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        secret: bytes,
        *,
        ttl_s: float,
        clock: Clock = time.time,
        credentials: CredentialCache | None = None,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret needs at least 32 bytes")
        self._sf, self._clock, self.ttl_s = session_factory, clock, ttl_s
        self._credentials = credentials
        self._session_key, self._csrf_key = _derive(secret, b"session v1"), _derive(secret, b"csrf v1")

    def issue(self, user: UserInfo) -> str:
        body = f"{user.id}.{user.session_epoch}.{int(self._clock() + self.ttl_s)}"
        return f"{body}.{_mac(self._session_key, body)}"

    def resolve(self, token: str | None) -> UserInfo | None:
        """The signed-in user, or None: no token, a forged or expired one, or one the user's epoch has moved past
        (disabled, password changed), or a disabled user."""
        match = _SESSION_RE.fullmatch(token) if isinstance(token, str) else None
        if match is None:
            return None
        user_id, epoch, expires, mac = match.groups()
        if not hmac.compare_digest(mac, _mac(self._session_key, f"{user_id}.{epoch}.{expires}")):
            return None
        if int(expires) <= self._clock():
            return None
        cached = self._credentials.get(token) if self._credentials is not None else None
        if cached is not None:
            return cached
        with self._sf() as s:
            user = s.get(User, int(user_id))
            if user is None or not user.active or user.session_epoch != int(epoch):
                return None
            info = UserInfo.of(user)
        if self._credentials is not None:
            self._credentials.put(token, info)
        return info

    def csrf_token(self, token: str) -> str:
        """The CSRF token bound to this session (send it in a header with every state-changing request)."""
        return _mac(self._csrf_key, token)

    def check_csrf(self, token: str | None, csrf: str | None) -> bool:
        if not isinstance(token, str) or not isinstance(csrf, str):
            return False
        return hmac.compare_digest(csrf.encode(), self.csrf_token(token).encode())


# -- API tokens --------------------------------------------------------------------------------------------------------
class TokenService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        audit: AuditService,
        *,
        clock: Clock = time.time,
        credentials: CredentialCache | None = None,
    ) -> None:
        self._sf, self._audit, self._clock = session_factory, audit, clock
        self._credentials = credentials

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    @staticmethod
    def _info(t: ApiToken, user: str) -> ApiTokenInfo:
        return ApiTokenInfo(t.id, user, t.name, t.created_at, t.last_used_at, t.revoked_at)

    def create(
        self, user: str, name: str, *, actor: str | None, address: str | None = None
    ) -> tuple[str, ApiTokenInfo]:
        """A new token for `user`: (the secret, shown this once; its info). Only the secret's sha256 is kept."""
        validate_name(name, "token name")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._sf.begin() as s:
            owner = _user_named(s, user)
            token = ApiToken(user_id=owner.id, name=name, token_hash=_sha256(secret), created_at=self._now())
            s.add(token)
            s.flush()
            detail = {"user": user, "name": name}
            self._audit.record(
                actor, Action.TOKEN_CREATE, "api_token", token.id, address=address, detail=detail, session=s
            )
            return secret, self._info(token, user)

    def list(self, user: str | None = None) -> list[ApiTokenInfo]:
        """Every token (of `user` if given), revoked ones included, oldest first."""
        stmt = select(ApiToken, User.name).join(User, ApiToken.user_id == User.id).order_by(ApiToken.id)
        if user is not None:
            stmt = stmt.where(User.name == user)
        with self._sf() as s:
            return [self._info(t, owner) for t, owner in s.execute(stmt)]

    def revoke(
        self, token_id: int, *, actor: str | None, address: str | None = None, owner: str | None = None
    ) -> ApiTokenInfo:
        """Revoke a token (idempotent). With `owner`, only that user's token is found (users revoke their own)."""
        stmt = select(ApiToken, User.name).join(User, ApiToken.user_id == User.id).where(ApiToken.id == token_id)
        if owner is not None:
            stmt = stmt.where(User.name == owner)
        with self._sf.begin() as s:
            row = s.execute(stmt).one_or_none()
            if row is None:
                raise NotFoundError(f"no API token with id {token_id}")
            token, user = row
            if token.revoked_at is None:
                token.revoked_at = self._now()
                detail = {"user": user, "name": token.name}
                self._audit.record(
                    actor, Action.TOKEN_REVOKE, "api_token", token.id, address=address, detail=detail, session=s
                )
            info = self._info(token, user)
        if self._credentials is not None:
            self._credentials.clear()
        return info

    def resolve(self, secret: str | None) -> UserInfo | None:
        """The token's user, or None: malformed, unknown, revoked, or its user disabled."""
        if not isinstance(secret, str) or not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
            return None
        digest = _sha256(secret)
        cached = self._credentials.get(digest) if self._credentials is not None else None
        if cached is not None:
            return cached  # last_used_at is touched on the lookups between hits, far more often than TOKEN_TOUCH_S
        now = self._now()
        with self._sf.begin() as s:
            live = (ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None), User.active)
            row = s.execute(select(ApiToken, User).join(User, ApiToken.user_id == User.id).where(*live)).one_or_none()
            if row is None:
                return None
            token, user = row
            if token.last_used_at is None or (now - token.last_used_at).total_seconds() >= TOKEN_TOUCH_S:
                token.last_used_at = now
            info = UserInfo.of(user)
        if self._credentials is not None:
            self._credentials.put(digest, info)
        return info


# -- all of it -------------------------------------------------------------------------------------------------------
class AuthService:
    """Users, sessions, API tokens and the audit log on one session factory and one clock (what create_app keeps)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        secret: bytes,
        session_ttl_s: float = 12 * 3600,
        link_ttl_s: float = 3600,
        clock: Clock = time.time,
        hasher: PasswordHasher | None = None,
        throttle: SignInThrottle | None = None,
        credential_ttl_s: float = CREDENTIAL_TTL_S,
    ) -> None:
        self.audit = AuditService(session_factory, now=lambda: datetime.fromtimestamp(clock(), UTC))
        self.credentials: CredentialCache[UserInfo] = CredentialCache(clock, credential_ttl_s)
        self.users = UserService(
            session_factory,
            self.audit,
            clock=clock,
            hasher=hasher,
            throttle=throttle,
            link_ttl_s=link_ttl_s,
            credentials=self.credentials,
        )
        self.sessions = SessionService(
            session_factory, secret, ttl_s=session_ttl_s, clock=clock, credentials=self.credentials
        )
        self.tokens = TokenService(session_factory, self.audit, clock=clock, credentials=self.credentials)
