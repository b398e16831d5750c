"""The composition root: ``build_services(settings)`` builds every service once, in one place.

The web app (``vault.app``), every command of the ``vault`` command line and the benchmarks take
their services from here and build none themselves, so that they all run the same objects with the
same configuration. Building is cheap and does no I/O beyond reading the keyring: connections to
the database, the object store and clamd are opened when first used.

Importing this module also registers every domain's tables on ``SQLModel.metadata``, so that
foreign keys between domains resolve whichever entry point runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

import vault.alerts.models
import vault.auth.models
import vault.counter.models
import vault.gdpr.models
import vault.oidc.models
import vault.storage.models  # noqa: F401  (the six imports above register every table)
from vault import crypto
from vault.alerts.service import AlertService
from vault.auth.franceconnect import FranceConnectLogin
from vault.auth.passkeys import PasskeyService
from vault.auth.passwords import Hasher
from vault.auth.service import AccountService
from vault.counter.assist import AssistService
from vault.counter.enrolment import EnrolmentService
from vault.counter.records import MandateRecords
from vault.counter.service import CounterService
from vault.crypto.rotation import KekRotation
from vault.db import make_engine
from vault.gdpr import audit
from vault.gdpr.audit import AppLogins, AuditTrail
from vault.gdpr.proconnect import ProConnectLogin
from vault.gdpr.service import GdprService
from vault.gdpr.staff import StaffService
from vault.mail import Mailer, MailQueue, make_mailer, make_transport
from vault.oidc.keys import KeyStore
from vault.oidc.service import OpenIDService
from vault.settings import Settings
from vault.storage.antivirus import ClamdScanner, NoScanner, Scanner
from vault.storage.blobs import BlobStore, make_blob_store
from vault.storage.service import DocumentService
from vault.storage.sharing import ShareService


@dataclass(frozen=True)
class Services:
    """Every service of one process, built from one ``Settings``."""

    settings: Settings
    engine: Engine
    keys: crypto.KeyProvider  # wraps citizen keys, signing keys and service secrets
    blob_store: BlobStore
    scanner: Scanner
    mailer: MailQueue  # outgoing mail, queued in the caller's transaction (vault.mail)
    mail_transport: Mailer  # what delivers the queue: SMTP, or the development folder
    keystore: KeyStore  # token signing keys and service secrets
    accounts: AccountService
    franceconnect: FranceConnectLogin  # "S'identifier avec FranceConnect" (off unless configured)
    passkeys: PasskeyService  # WebAuthn: adding passkeys, logging in with one
    alerts: AlertService  # alert mails to the citizen and their switches
    documents: DocumentService
    shares: ShareService  # share links to chosen documents
    oidc: OpenIDService
    gdpr: GdprService
    staff: StaffService
    proconnect: ProConnectLogin  # staff login through ProConnect (off unless configured)
    counter: CounterService  # the town hall's counter: mandates and their journal
    assist: AssistService  # assisted sessions: an agent logs into an app for a citizen (oidc's Delegations)
    enrolments: EnrolmentService  # accounts opened at the counter, their activation letters
    kek: KekRotation  # KEK rotation: every value wrapped by the KEK, re-wrapped in batches
    audit: AuditTrail  # the audit log's keys and signed checkpoints (vault.gdpr.audit)


def build_services(settings: Settings, *, engine: Engine | None = None) -> Services:
    """Build every service. ``engine``: an existing database engine (tests share one); else one is
    made from the settings. Raises ``crypto.KeyProviderError`` when the keyring cannot be opened."""
    settings.make_data_dir_private()
    keys = crypto.load_key_provider(settings)
    blob_store = make_blob_store(settings)
    # Settings.check() requires the address with clamd on; unchecked, ClamdScanner refuses the empty one.
    scanner: Scanner = (ClamdScanner(settings.clamd_address or "", timeout=settings.clamd_timeout_seconds)
                        if settings.antivirus == "clamd" else NoScanner())
    mailer = make_mailer(settings)
    keystore = KeyStore(keys)
    hasher = Hasher(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib,
                    concurrency=settings.argon2_concurrency, wait=settings.argon2_wait_seconds,
                    max_waiting=settings.argon2_max_waiting)
    accounts = AccountService(
        settings=settings,
        hasher=hasher,
        mailer=mailer,
        keys=keys,
        secrets=keystore,
    )
    alerts = AlertService(settings=settings, mailer=mailer, secrets=keystore)
    documents = DocumentService(settings=settings, keys=keys, store=blob_store, scanner=scanner, alerts=alerts)
    shares = ShareService(hasher=hasher, alerts=alerts, accounts=accounts)
    staff = StaffService(accounts)
    oidc = OpenIDService(settings=settings, keystore=keystore, accounts=accounts, documents=documents, alerts=alerts,
                         logins=AppLogins(keystore))
    gdpr = GdprService(settings=settings, keystore=keystore, accounts=accounts, oidc=oidc, documents=documents,
                       shares=shares, alerts=alerts, records=[MandateRecords()])
    counter = CounterService(gdpr=gdpr)
    assist = AssistService(settings=settings, counter=counter)
    accounts.app_grants.append(oidc)  # a password reset or "log out everywhere" ends the apps' tokens too
    oidc.delegations = assist  # the provider asks the counter who acts for whom (vault.oidc.delegation)
    staff.logout_listeners.append(assist)  # an agent's logout ends their assisted sessions
    engine = engine or make_engine(settings.effective_database_url)
    kek = KekRotation(keys=keys, engine=engine, columns=[
        *documents.wrapped_columns(), *keystore.wrapped_columns(), *accounts.wrapped_columns(),
        *staff.wrapped_columns()])
    trail = AuditTrail(secrets=keystore, store=blob_store, every_entries=settings.audit_checkpoint_entries,
                       every_seconds=settings.audit_checkpoint_seconds)
    audit.attach(engine, trail)  # every audit.record(db, …) through this engine is keyed and checkpointed
    return Services(
        settings=settings,
        engine=engine,
        keys=keys,
        blob_store=blob_store,
        scanner=scanner,
        mailer=mailer,
        mail_transport=make_transport(settings),
        keystore=keystore,
        accounts=accounts,
        franceconnect=FranceConnectLogin(settings=settings, accounts=accounts),
        passkeys=PasskeyService(settings=settings, accounts=accounts),
        alerts=alerts,
        documents=documents,
        shares=shares,
        oidc=oidc,
        gdpr=gdpr,
        staff=staff,
        proconnect=ProConnectLogin(settings=settings, staff=staff),
        counter=counter,
        assist=assist,
        enrolments=EnrolmentService(accounts=accounts, gdpr=gdpr),
        kek=kek,
        audit=trail,
    )
