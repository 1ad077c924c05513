"""Where a search's study lives: an embedded file for one machine, or a database a team's machines share.

The URL comes from ``--storage``, else the environment variable CIFAR_RESNET_STORAGE, else a Colab secret or a
Kaggle secret of that name; with none, the study is a journal file in the search's folder (no server; several
processes on one machine may share it). A database gets heartbeats: a trial whose worker vanished (SIGKILL, a
Colab runtime that disconnected) is marked FAIL once its heartbeat is older than the grace period, and the next
worker to start a trial queues a retry of it. A URL is only ever shown with its password masked.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import CifarResnetError

STORAGE_VARIABLE = "CIFAR_RESNET_STORAGE"  # the environment variable, Colab secret or Kaggle secret
HEARTBEAT_SECONDS = 60  # Optuna's FAQ: a heartbeat every minute, a trial stale after two
JOURNAL_FILE = "study.journal"
SCHEMES = {"postgresql": "'psycopg[binary]'", "mysql": "PyMySQL (and write mysql+pymysql://)",
           "sqlite": None}  # scheme -> the driver to install
MAX_RETRIES = 3  # retries of one vanished trial before the study gives up on it


class StorageError(CifarResnetError):
    """The study's storage cannot be used; the message names it without its password."""


@dataclass(frozen=True)
class StudyStorage:
    """A study's storage as the search uses it: the Optuna storage and how to name it on screen."""

    optuna_storage: object
    shown_as: str  # the URL with its password masked, or the journal file's path
    heartbeat: bool


def storage_url(given: str | None) -> str | None:
    """The database URL: ``given``, else $CIFAR_RESNET_STORAGE, else a Colab or Kaggle secret; None for embedded."""
    return given or os.environ.get(STORAGE_VARIABLE) or _colab_secret() or _kaggle_secret()


def _colab_secret() -> str | None:
    try:
        from google.colab import userdata
    except ImportError:
        return None
    try:
        return userdata.get(STORAGE_VARIABLE)
    except Exception:  # no such secret, or the notebook was not granted access to it
        return None


def _kaggle_secret() -> str | None:
    try:
        from kaggle_secrets import UserSecretsClient
    except ImportError:
        return None
    try:
        return UserSecretsClient().get_secret(STORAGE_VARIABLE)
    except Exception:  # no such secret attached to this notebook
        return None


def masked(url: str) -> str:
    """``url`` with its password replaced by ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://..." if "://" in url else "(an unreadable storage URL)"


def scrubbed(text: str, url: str) -> str:
    """``text`` without the password of ``url`` anywhere in it."""
    from urllib.parse import quote, unquote

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        password = url.split("://", 1)[-1].split("@", 1)[0].partition(":")[2] or None
    if password:
        for form in {password, quote(password, safe=""), unquote(password)}:
            text = text.replace(form, "***")
    return text


def retry_callback():
    """Queue a retry of a trial whose worker vanished; the retry keeps its parameters and attributes."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)


def open_storage(url: str | None, folder: Path, heartbeat_seconds: int = HEARTBEAT_SECONDS) -> StudyStorage:
    """The storage at ``url``, or the embedded journal file in ``folder`` when ``url`` is None."""
    import optuna

    if url is None:
        from optuna.storages.journal import JournalFileBackend

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / JOURNAL_FILE
        return StudyStorage(optuna.storages.JournalStorage(JournalFileBackend(str(path))), str(path), heartbeat=False)
    shown = masked(url)
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise StorageError(f"unknown storage scheme {scheme or url[:20]!r} in {shown}: use postgresql://, mysql:// or "
                           f"sqlite:///, or leave --storage out for an embedded study file")
    try:
        with warnings.catch_warnings():  # heartbeats are 'experimental' in Optuna since 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat_seconds, grace_period=2 * heartbeat_seconds,
                heartbeat_stale_trial_callback=retry_callback(),
                engine_kwargs={"pool_pre_ping": True} if scheme != "sqlite" else None)
    except ImportError as e:  # Optuna's, from SQLAlchemy's ModuleNotFoundError
        missing = getattr(e.__cause__, "name", None) or getattr(e, "name", None) or "its driver"
        raise StorageError(f"{shown} needs the {scheme} driver {missing}, which is not installed: "
                           f"pip install {SCHEMES[scheme]}") from None
    except Exception as e:  # SQLAlchemy's OperationalError and friends: the driver's reason, without the password
        reason = scrubbed(str(getattr(e, "orig", None) or e), url).strip().splitlines()
        raise StorageError(f"cannot reach the study database {shown}: {reason[0] if reason else type(e).__name__}; "
                           f"check the host, port, user and password (a hosted database may need "
                           f"?sslmode=require)") from None
    return StudyStorage(storage, shown, heartbeat=True)
