"""Developer tasks: ``python -m nox -s tests lint typecheck bench demo soak``."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against real Redis and PostgreSQL (and the service example)."""
    session.install("-e", ".[dev,service]")
    session.run("pytest", *(session.posargs or ["-q", "-p", "no:cacheprovider"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "src")


@nox.session
def bench(session: nox.Session) -> None:
    """Run benchmarks/ (A/B against the real alternatives); table to stdout and a file."""
    session.install("-e", ".[dev,bench,service]")
    session.run("python", "benchmarks/run.py", *session.posargs, env={"PYTHONHASHSEED": "0"})


@nox.session
def demo(session: nox.Session) -> None:
    """Install ragprod in a fresh virtualenv and run the offline demo."""
    session.install(".")
    args = list(session.posargs)
    if os.environ.get("REDIS_URL") and "--redis" not in args:
        args += ["--redis", os.environ["REDIS_URL"]]
    session.run("ragprod", "demo", *args)


@nox.session
def soak(session: nox.Session) -> None:
    """Fault-injection soak of the FastAPI example (Redis killed, LLM outage); stops by itself."""
    session.install("-e", ".[service]")
    args = session.posargs or ["--duration", "60", "--clients", "16"]
    session.run("python", "benchmarks/soak.py", *args)
