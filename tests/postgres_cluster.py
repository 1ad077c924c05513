"""A throwaway PostgreSQL cluster in a temporary folder on a loopback port, with a password, for the search's
shared-study tests.

    python tests/postgres_cluster.py start FOLDER   # prints the cluster's URL
    python tests/postgres_cluster.py stop FOLDER

Runs Debian's server binaries (apt-get install postgresql); as root, as the user postgres.
"""
from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl, or None when no server is installed."""
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    return Path(found).parent if found else None


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # PostgreSQL refuses to run as root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path) -> str:
    """Initialize and start a cluster in ``folder`` (created); its URL, password included."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server is installed (Debian: apt-get install postgresql)")
    folder.mkdir(parents=True, exist_ok=True)
    password, port = secrets.token_hex(8), free_port()
    (folder / "pw").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(folder / "pw", "postgres")
    user = _as_server_user()
    subprocess.run([*user, bin_dir / "initdb", "-D", folder / "data", "-U", "cifar", f"--pwfile={folder / 'pw'}",
                    "--auth=scram-sha-256"], check=True, capture_output=True)
    subprocess.run([*user, bin_dir / "pg_ctl", "-D", folder / "data", "-w", "-l", folder / "log", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    return f"postgresql://cifar:{password}@127.0.0.1:{port}/postgres"


def stop(folder: Path) -> None:
    """Stop the cluster in ``folder`` and delete it."""
    bin_dir = binaries()
    if bin_dir is not None and (folder / "data").is_dir():
        subprocess.run([*_as_server_user(), bin_dir / "pg_ctl", "-D", folder / "data", "-m", "immediate", "stop"],
                       capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    action, where = sys.argv[1], Path(sys.argv[2])
    if action == "start":
        try:
            print(start(where))
        except (RuntimeError, subprocess.CalledProcessError) as e:
            sys.exit(f"the PostgreSQL cluster did not start: {e}")
    else:
        stop(where)
